"""Carrying out a `RequestPlan`: connect, send, follow the pages, write what came back.

The connection is the agent's that SNWORKER_AGENT names when it serves the instance asked for
(no consent then), else a worker of the command's own. Bodies are bytes from end to end: a JSON
body is shown pretty-printed on stdout; any other body, and every body written with -o, goes
out as the bytes the instance sent, never decoded.
"""

from __future__ import annotations

import contextlib
import http
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import snworker
from snworker import agent as agents
from snworker import checks
from snworker.cli_arguments import ENV_CLIENT_ID, ENV_INSTANCE, RequestPlan, UsageError
from snworker.connection import ServiceNowConnection
from snworker.response import ApiResponse
from snworker.table import link_targets

logger = logging.getLogger("snworker.cli")

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters that would act on a terminal rather than show on it.
_TERMINAL_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class PagingError(Exception):
    """An answer --all cannot page through: no list of records, or a next link to elsewhere."""


class Output:
    """Where the answer goes: the file -o names (opened on first write), else stdout."""

    def __init__(self, name: str | None) -> None:
        self.name = name
        self._file: BinaryIO | None = None

    @property
    def shown(self) -> bool:
        """True when bodies are shown (JSON pretty-printed), False when written as they came."""
        return self.name is None

    def write(self, data: bytes) -> None:
        """Write `data`, flushed."""
        if self._file is None:
            self._file = sys.stdout.buffer if self.name in (None, "-") else self._open(self.name)
        self._file.write(data)
        self._file.flush()

    @staticmethod
    def _open(name: str) -> BinaryIO:
        try:
            return open(name, "wb")
        except OSError as exc:
            raise UsageError(f"-o: cannot write {name!r}: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Close the file, if one was opened."""
        if self._file is not None and self._file is not sys.stdout.buffer:
            self._file.close()


def run_request(plan: RequestPlan) -> int:
    """Connect, send, and write the answer; raises the library's errors, and PagingError."""
    output = Output(plan.output)
    try:
        with stdout_kept_from_browsers():
            conn = _connection(plan)
        with conn:
            sender = _Sender(conn, plan)
            if plan.every_page:
                _every_page(sender, plan, output)
            else:
                _one(sender, plan, output)
    except snworker.ApiRequestError as exc:
        _report_failure(exc, plan.include, one_line=plan.json_lines)
        raise
    finally:
        output.close()
    return 0


def _connection(plan: RequestPlan) -> ServiceNowConnection:
    """The agent's connection when it serves this instance, else one through a worker."""
    if plan.agent is not None:
        conn = _attach(plan.agent, plan)
        if conn is not None:
            return conn
    if plan.instance is None:
        raise UsageError(f"no instance: give --instance or set {ENV_INSTANCE}")
    if plan.client_id is None:
        raise UsageError(f"no client id: give --client-id or set {ENV_CLIENT_ID}")
    return snworker.connect(plan.instance, plan.client_id, redirect_uri=plan.redirect_uris,
                            authorization_timeout=plan.authorization_timeout,
                            request_timeout=plan.request_timeout, grant=plan.grant)


def _attach(address: str, plan: RequestPlan) -> ServiceNowConnection | None:
    """A connection served by the agent at `address`; None when it cannot serve this one."""
    try:
        status = agents.control(address, "status")
        serves = (status.get("instance"), status.get("client_id"))
        if (plan.instance or serves[0], plan.client_id or serves[1]) != serves:
            logger.info("snworker: the agent at %s serves %s (client id %s), not what this "
                        "request names; using a worker of its own", address, *serves)
            return None
        return agents.attach(address, authorization_timeout=plan.authorization_timeout,
                             request_timeout=plan.request_timeout)
    except (snworker.WorkerError, snworker.RequestTimeoutError, OSError, ValueError) as exc:
        if plan.instance is None or plan.client_id is None:
            raise snworker.WorkerStartError(
                f"{exc}; give --instance and --client-id to use a worker of its own") from None
        print(f"snworker: {exc}; using a worker of its own", file=sys.stderr, flush=True)
        return None


@contextlib.contextmanager
def stdout_kept_from_browsers() -> Iterator[None]:
    """Point file descriptor 1 at stderr while a consent may start a browser.

    A browser started now inherits it and may outlive this command; were it stdout, the
    reader of `$(snworker ...)` or `snworker ... | jq` would wait for the browser to close.
    """
    sys.stdout.flush()
    try:
        kept = os.dup(1)
    except OSError:  # no stdout: nothing to keep
        yield
        return
    try:
        with contextlib.suppress(OSError):  # no stderr: stdout it stays
            os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(kept, 1)
        os.close(kept)


class _Sender:
    """Sends the command's requests; a grant that ended is asked for again, once.

    A grant revoked at the instance, or an agent's that ran out, raises AuthTokenExpiredError
    before anything reached the instance with a valid token; as `conn.reconnect()` does in a
    program, the command then asks for consent once and sends again.
    """

    def __init__(self, conn: ServiceNowConnection, plan: RequestPlan) -> None:
        self.conn = conn
        self._plan = plan
        self._renewed = False

    def send(self, path: str, method: str, body: bytes | None,
             params: Mapping[str, list[str]] | None) -> ApiResponse[Any]:
        try:
            return self._send(path, method, body, params)
        except snworker.AuthTokenExpiredError as exc:
            if self._renewed:
                raise
            self._renewed = True
            print(f"snworker: the grant has ended ({_without_advice(exc)}); asking for consent "
                  "again", file=sys.stderr, flush=True)
            with stdout_kept_from_browsers():
                self.conn.reconnect()
        return self._send(path, method, body, params)

    def _send(self, path: str, method: str, body: bytes | None,
              params: Mapping[str, list[str]] | None) -> ApiResponse[Any]:
        return self.conn.execute_api_request(path, method, body, headers=self._plan.headers,
                                             params=params)


def _without_advice(exc: Exception) -> str:
    """The error's text without the advice meant for a program ("; call conn.reconnect()")."""
    return str(exc).split("; call conn.reconnect()")[0]


def _one(sender: _Sender, plan: RequestPlan, output: Output) -> None:
    resp = sender.send(plan.path, plan.method, plan.body, plan.params)
    if plan.include:
        _write_head(resp.status, resp.headers)
    if resp.content:
        _write_body(resp.content, output)


def _write_body(content: bytes, output: Output) -> None:
    if not output.shown:
        output.write(content)
        return
    parsed = _parsed(content)
    if parsed is not _NOT_JSON:
        output.write(_pretty(parsed))
    elif sys.stdout.isatty() and not _is_text(content):
        print(f"snworker: the body is {len(content)} bytes of binary data, not written to the "
              "terminal; use -o FILE (or -o - to write it anyway)", file=sys.stderr)
    else:
        output.write(content)


def _every_page(sender: _Sender, plan: RequestPlan, output: Output) -> None:
    """Follow the next links from the first page, writing every page's records."""
    conn = sender.conn
    path: str = plan.path
    params: Mapping[str, list[str]] | None = plan.params
    records: list[Any] = []
    seen = {path}
    progress = _Progress()
    while True:
        resp = sender.send(path, "GET", None, params)
        if plan.include:
            _write_head(resp.status, resp.headers)
        page = _records(resp, progress.pages + 1)
        if plan.json_lines:
            output.write(b"".join(_compact(record) + b"\n" for record in page))
        else:
            records += page
        progress.update(len(page), resp.headers.get("X-Total-Count"))
        following = _next_path(resp.headers, conn.instance_url + path)
        if following is None:
            break
        if following in seen:
            raise PagingError(f"the next link of page {progress.pages} leads back to a page "
                              f"already read: {following}")
        seen.add(following)
        path, params = following, None  # the link carries the parameters
    progress.done()
    if not plan.json_lines:
        output.write(_pretty(records))


def _records(resp: ApiResponse[Any], page: int) -> list[Any]:
    records = resp.data
    if not isinstance(records, list):
        raise PagingError(f"page {page} holds no list of records (--all pages through lists, "
                          "such as /api/now/table/<table>)")
    return records


def _next_path(headers: Mapping[str, str], current: str) -> str | None:
    """The path of the Link header's next page, which must be on the same instance."""
    link = headers.get("Link")
    target = link_targets(link).get("next") if link else None
    if target is None:
        return None
    url = urljoin(current, target)
    parts = urlsplit(url)
    if _origin(url) != _origin(current):
        raise PagingError(f"the next page's link leaves the instance: {url}")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        return checks.check_path(path)
    except snworker.InvalidRequestError as exc:
        raise PagingError(f"the next page's link is not a path snworker sends: {exc}") from None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        raise PagingError(f"the next page's link has a bad port: {url}") from None
    return scheme, (parts.hostname or "").lower(), port


class _Progress:
    """A line on stderr per page (rewritten in place on a terminal)."""

    def __init__(self) -> None:
        self.pages = 0
        self.records = 0
        self._total: str | None = None
        self._in_place = sys.stderr.isatty()

    def update(self, records: int, total: str | None) -> None:
        self.pages += 1
        self.records += records
        self._total = self._total or total
        of = f" of {self._total}" if self._total else ""
        line = f"snworker: page {self.pages}: {self.records}{of} records"
        print(f"\r{line}" if self._in_place else line, end="" if self._in_place else "\n",
              file=sys.stderr, flush=True)

    def done(self) -> None:
        if self._in_place and self.pages:
            print(file=sys.stderr)


def _write_head(status: int, headers: Mapping[str, str]) -> None:
    """The status line and headers on stderr, as -i shows them."""
    try:
        phrase = f" {http.HTTPStatus(status).phrase}"
    except ValueError:
        phrase = ""
    lines = [f"HTTP {status}{phrase}", *(f"{name}: {value}" for name, value in headers.items())]
    print("\n".join(lines) + "\n", file=sys.stderr, flush=True)


def _report_failure(exc: snworker.ApiRequestError, include: bool, *, one_line: bool) -> None:
    """The platform's error envelope on stdout (and the head with -i), as the instance sent it.

    In a JSON-lines stream (`--all --jsonl`) it is one line, like every record before it.
    """
    if exc.status is None:
        return
    if include:
        _write_head(exc.status, exc.headers)
    envelope = {"error": {"message": exc.message, "detail": exc.detail}, "status": "failure"}
    sys.stdout.buffer.write(_compact(envelope) + b"\n" if one_line else _pretty(envelope))
    sys.stdout.buffer.flush()


_NOT_JSON: Any = object()


def _parsed(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _pretty(value: Any) -> bytes:
    # A lone surrogate (a JSON "\ud800") cannot be UTF-8; backslashreplace writes it back as the
    # same JSON escape.
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode(
        "utf-8", "backslashreplace")


def _compact(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "backslashreplace")


def _is_text(content: bytes) -> bool:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not _TERMINAL_CONTROLS.search(text)
