"""`requests_session(conn)`: a requests.Session whose every request goes through the worker.

Everything `requests` does before a request leaves (merging the session's headers, params and
auth, preparing the body) runs as usual; then `WorkerAdapter.send`, where requests' own
`HTTPAdapter` would open a socket, hands the request to the worker instead. The session sends to
the instance's origin only, whatever adapter a client mounts: one that mounts a requests
`HTTPAdapter` with a `Retry` (pysnc does) gives its retry policy to the worker adapter, which
applies it as urllib3 would.
"""

from __future__ import annotations

import http
import io
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import requests
import requests.adapters
from requests.structures import CaseInsensitiveDict
from requests.utils import default_user_agent, get_encoding_from_headers
from urllib3 import HTTPHeaderDict, HTTPResponse
from urllib3.exceptions import MaxRetryError, ProtocolError, ReadTimeoutError
from urllib3.util.retry import Retry

from snworker.adapters import Call, Fetched, Translator, deadline
from snworker.adapters.sync import fetch, request_body
from snworker.errors import ApiRequestError, RequestTimeoutError

if TYPE_CHECKING:
    from snworker.connection import ServiceNowConnection

logger = logging.getLogger("snworker")


def requests_session(conn: ServiceNowConnection) -> requests.Session:
    """A `requests.Session` that sends the instance's requests through `conn`'s worker.

    Give it to code written for requests: `pysnc.ServiceNowClient(conn.instance_url,
    auth=snworker.requests_session(conn))`. Requests to any other origin are refused with
    InvalidRequestError before anything is sent. Headers requests adds itself are left out;
    a credential the client sets (Authorization, Cookie, `session.auth`) is dropped with one
    WARNING, since the worker authenticates every request. Redirects to another origin are not
    followed: the 3xx comes back as the response. Any status comes back as a response; retries
    are the client's (a `Retry` mounted on the session), never the worker's on top of them.

    Args:
        conn: a connection from `snworker.connect()` or `snworker.attach()`.
    """
    return WorkerSession(conn)


class WorkerAdapter(requests.adapters.BaseAdapter):
    """Sends prepared requests through the worker, and answers with real `requests.Response`s."""

    def __init__(self, conn: ServiceNowConnection) -> None:
        super().__init__()
        self.conn = conn
        self.translator = Translator(conn.instance_url, (default_user_agent(),))
        self.max_retries: Retry = Retry(0, read=False)  # requests' HTTPAdapter default

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Mapping[str, str] | None = None) -> requests.Response:
        """Send `request` through the worker (TLS, proxies and certificates are the worker's)."""
        method = request.method or "GET"
        url = request.url or ""
        call = self.translator.call(method, url, _header_items(request.headers),
                                    request_body(request.body), _seconds(timeout))
        retries = self.max_retries
        if call.body is not None and not isinstance(call.body, bytes):
            # A file or an iterator streams up once and cannot be sent again: no retries.
            retries = Retry(0, read=False)
        while True:
            try:
                fetched = fetch(self.conn, call, stream)
            except ApiRequestError as exc:
                if exc.status is not None:
                    raise
                retries = self._after_failure(retries, call, url, exc, request)
                continue
            response = self._response(fetched, request, url)
            if not retries.is_retry(call.method, fetched.status,
                                    "retry-after" in response.headers):
                return response
            raw = HTTPResponse(body=b"", headers=HTTPHeaderDict(fetched.headers),
                               status=fetched.status, preload_content=False)
            try:
                retries = retries.increment(call.method, url, response=raw)
            except MaxRetryError as exc:
                if retries.raise_on_status:
                    response.close()
                    raise requests.exceptions.RetryError(exc, request=request) from None
                return response
            response.close()
            retries.sleep(raw)

    @staticmethod
    def _after_failure(retries: Retry, call: Call, url: str, failure: ApiRequestError,
                       request: requests.PreparedRequest) -> Retry:
        """The retries left after a transport failure, as urllib3 counts them; else raise."""
        timed_out = isinstance(failure, RequestTimeoutError)
        error: Exception = (ReadTimeoutError(None, url, str(failure))  # type: ignore[arg-type]
                            if timed_out else ProtocolError(str(failure)))
        try:
            retries = retries.increment(call.method, url, error=error)
        except (MaxRetryError, ReadTimeoutError, ProtocolError):
            if timed_out:
                raise requests.exceptions.ReadTimeout(str(failure), request=request) \
                    from failure
            raise requests.exceptions.ConnectionError(str(failure), request=request) \
                from failure
        retries.sleep()
        return retries

    def _response(self, fetched: Fetched, request: requests.PreparedRequest,
                  url: str) -> requests.Response:
        response = requests.Response()
        response.status_code = fetched.status
        response.headers = headers = _headers(fetched.headers)
        content_type = headers.get("content-type")
        encoding = _ENCODINGS.get(content_type)
        if encoding is None:
            encoding = _ENCODINGS[content_type] = get_encoding_from_headers(headers) or ""
            if len(_ENCODINGS) > 64:
                _ENCODINGS.clear()
        response.encoding = encoding or None
        response.reason = _reason(fetched.status)
        response.url = url
        response.request = request
        response.connection = self  # type: ignore[assignment]  # requests types it HTTPAdapter
        if fetched.content is not None:
            # The body is whole: requests reads it from `_content` as if it had been read.
            response.raw = io.BytesIO(fetched.content)
            response._content = fetched.content
            response._content_consumed = True  # type: ignore[attr-defined]
        else:
            response.raw = _ChunkReader(fetched)
        return response

    def close(self) -> None:
        """Nothing to release: the connection belongs to the caller."""


class WorkerSession(requests.Session):
    """A Session whose only transport is the worker, for the instance's origin only."""

    def __init__(self, conn: ServiceNowConnection) -> None:
        super().__init__()
        self._retry_prefix = 0  # the length of the prefix whose adapter's retries are used
        self._worker_adapter = WorkerAdapter(conn)
        # No ~/.netrc credentials, no proxy or CA settings from the environment: the worker
        # decides how the instance is reached.
        self.trust_env = False
        self.adapters.clear()
        super().mount("https://", self._worker_adapter)
        super().mount("http://", self._worker_adapter)

    def mount(self, prefix: str | bytes, adapter: requests.adapters.BaseAdapter) -> None:
        """Keep the worker as the transport; adopt a mounted HTTPAdapter's retry policy."""
        ours: WorkerAdapter | None = getattr(self, "_worker_adapter", None)
        if ours is None:  # requests' own __init__ mounting its defaults
            return
        retries = getattr(adapter, "max_retries", None)
        text = prefix.decode() if isinstance(prefix, bytes) else prefix
        instance = ours.conn.instance_url.lower()
        if isinstance(retries, Retry) and instance.startswith(text.lower()[:len(instance)]):
            # As requests picks the adapter of the longest prefix, the most specific mount's
            # policy holds: "https://" after the instance's own does not replace it.
            if len(text) < self._retry_prefix:
                return
            self._retry_prefix = len(text)
            ours.max_retries = retries
            logger.debug("snworker: the session keeps sending through the worker, with the "
                         "retry policy of the adapter mounted for %s", prefix)
        else:
            logger.debug("snworker: an adapter mounted for %s is not used: this session "
                         "sends through the worker", prefix)

    def merge_environment_settings(  # type: ignore[override]  # the stubs' TypedDict
            self, url: str | bytes | None, proxies: Any, stream: bool | None, verify: Any,
            cert: Any) -> dict[str, Any]:
        """Only `stream` matters here: proxies, TLS and certificates are the worker's.

        (requests would merge each with the session's, a quarter of its own work per request.)
        """
        return {"proxies": {}, "stream": self.stream if stream is None else stream,
                "verify": True, "cert": None}

    def get_adapter(self, url: str) -> requests.adapters.BaseAdapter:
        """The worker adapter, for every URL (it refuses other origins)."""
        return self._worker_adapter

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        """Redirects are followed on the instance only; another origin's 3xx is the answer."""
        target = super().get_redirect_target(resp)
        if target is None:
            return None
        from urllib.parse import urljoin

        if not self._worker_adapter.translator.same_origin(urljoin(resp.url, target)):
            return None
        return target


class _ChunkReader(io.RawIOBase):
    """A streamed body as the file-like `raw` that requests reads.

    The stream is released once: when it has been read to its end, or closed, or when requests
    releases the connection (`Response.close()` after the body was read) - as urllib3 does.
    """

    def __init__(self, fetched: Fetched) -> None:
        self._fetched: Fetched | None = fetched
        self._chunks = fetched.chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and self._chunks is not None:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._chunks = None
                self.release_conn()
                break
            self._pending = chunk
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def release_conn(self) -> None:
        fetched, self._fetched = self._fetched, None
        if fetched is not None:
            fetched.close()

    def close(self) -> None:
        self.release_conn()
        super().close()


def _seconds(timeout: Any) -> float | None:
    """requests' timeout (None, seconds, (connect, read), or a urllib3 Timeout) as one."""
    if timeout is None:
        return None
    if isinstance(timeout, tuple):
        return deadline(*timeout)
    connect = getattr(timeout, "connect_timeout", None)
    if connect is not None or hasattr(timeout, "read_timeout"):
        return deadline(_number(connect), _number(getattr(timeout, "read_timeout", None)))
    return float(timeout)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


# Encodings by Content-Type, as requests finds them (its parsing costs a few µs per response).
_ENCODINGS: dict[str | None, str] = {}
_REASONS = {status.value: status.phrase for status in http.HTTPStatus}


def _headers(pairs: list[tuple[str, str]]) -> CaseInsensitiveDict[str]:
    """requests' case-insensitive headers, repeated names joined as urllib3 joins them."""
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    # Its store filled directly costs a fifth of item by item; item by item if it changes.
    store = getattr(headers, "_store", None)
    if not isinstance(store, dict):
        for name, value in pairs:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return headers
    for name, value in pairs:
        lower = name.lower()
        seen = store.get(lower)
        store[lower] = (name, value) if seen is None else (seen[0], f"{seen[1]}, {value}")
    return headers


def _header_items(headers: Any) -> Any:
    """The (name, value) pairs of requests' headers: from its store when it has one (a third
    of the cost of its mapping interface, which lower-cases every name on every lookup)."""
    store = getattr(headers, "_store", None)
    return store.values() if isinstance(store, dict) else headers.items()


def _reason(status: int) -> str:
    return _REASONS.get(status, "")
