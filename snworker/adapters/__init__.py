"""Code that already exists, through the worker: what the requests and httpx adapters share.

    client (pysnc, an MCP server, httpx) --request--> adapter --Call--> conn.execute_api_request
                                                                        (the worker's rules)
    client <--requests.Response / httpx.Response-- adapter <--status, headers, body--

This module does no I/O and imports neither HTTP library: `Translator.call` turns what a client
asked for into a `Call` (a path on the instance, the headers worth forwarding, the body, a
deadline), whose `keywords()` are `execute_api_request`'s, sync or async; `fetched()` turns the
answer into a `Fetched` (status, headers a client can trust, body). The adapters of
`for_requests` and `for_httpx`, and the asyncio driver's httpx transport, are thin I/O around
it: `sync.fetch` is where the sync ones call the worker. The worker still
checks everything (path, method, headers, body): the adapters add no rules of their own, they
only refuse other origins before anything is sent and leave out what the HTTP library added.

Choices, and why:
- A credential the client set (Authorization, Proxy-Authorization, Cookie, X-UserToken, a user
  and password in the URL) is dropped with one WARNING per header name and adapter, not
  refused: a client configured with Basic auth, or one that keeps a cookie jar, then works
  unmodified, and the credential never leaves the process. The worker sends its own token.
- Calls use the client's retry behaviour, not the worker's: the worker makes one attempt
  (`retry=False`) and the client's own policy (a `requests` Retry mounted on the session, or
  none) decides, so retries never stack. An access token the instance refuses is still
  renewed and the request resent once: no client could do that itself.
- Any status comes back as a response (`raise_for_status=False`), its body redacted as always.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from snworker.errors import InvalidRequestError
from snworker.messages import Pairs

if TYPE_CHECKING:
    from snworker.response import ApiResponse

logger = logging.getLogger("snworker")

# Request headers an HTTP library adds on its own: they frame or route the request, and the
# worker frames its own. Dropped without a word. A User-Agent is dropped only when it is the
# library's default (see `Translator`).
LIBRARY_HEADERS = frozenset({
    "accept-encoding", "connection", "content-length", "host", "keep-alive",
    "proxy-connection", "te", "transfer-encoding",
})
# Credentials the client set: never forwarded (the worker authenticates every request).
CREDENTIAL_HEADERS = {name.lower(): name for name in (
    "Authorization", "Proxy-Authorization", "Cookie", "X-UserToken")}
# Response headers that described the bytes on the worker's connection, not the body it passes on
# (which it has already decoded and read whole).
_HOP_RESPONSE_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding"})

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Call:
    """One request for the worker, as `execute_api_request` takes it."""

    method: str
    path: str  # the path and query on the instance, as the client encoded them
    headers: dict[str, str]
    body: Any = field(default=None, repr=False)  # bytes, or None
    timeout: float | None = None  # None: the connection's request_timeout

    def keywords(self) -> dict[str, Any]:
        """Keyword arguments for `execute_api_request` (sync or async)."""
        return {"path": self.path, "http_method": self.method, "data": self.body,
                "headers": self.headers, "timeout": self.timeout,
                "raise_for_status": False, "retry": False}


@dataclass(slots=True)
class Fetched:
    """The instance's answer: its body whole in `content`, or as `chunks` until `close()`."""

    status: int
    headers: list[tuple[str, str]]
    content: bytes | None = field(default=None, repr=False)
    chunks: Iterator[bytes] | None = field(default=None, repr=False)
    close: Callable[[], None] = lambda: None


def fetched(call: Call, answer: ApiResponse[Any]) -> Fetched:
    """The answer to `call` from `execute_api_request`, its body whole."""
    content = answer.content
    return Fetched(answer.status,
                   response_headers(answer._header_pairs, call.method, len(content)), content)


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of `url`, with the scheme's default port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1  # not a port: matches no instance
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


class Translator:
    """Client requests to `Call`s for one instance; remembers which credentials it warned of."""

    def __init__(self, instance_url: str, library_user_agents: Iterable[str] = ()) -> None:
        self.instance_url = instance_url
        self._origin = origin(instance_url)
        self._prefix = instance_url + "/"  # the common case, recognised without parsing
        self._library_user_agents = frozenset(library_user_agents)
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def same_origin(self, url: str) -> bool:
        """True when `url` is on the instance (scheme, host and port)."""
        return origin(url) == self._origin

    def call(self, method: str, url: str, headers: Iterable[tuple[str, str]], body: Any,
             timeout: float | None) -> Call:
        """The Call for a client's request; InvalidRequestError for another origin."""
        dropped: list[str] = []
        if url.startswith(self._prefix):
            path = url[len(self.instance_url):].partition("#")[0]
        else:
            parts = urlsplit(url)
            if origin(url) != self._origin:
                shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
                raise InvalidRequestError(
                    f"{shown} is not the instance: this session sends only to "
                    f"{self.instance_url}, through the worker; nothing was sent")
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            if parts.username or parts.password:
                dropped.append("URL user and password")
        forwarded: dict[str, str] = {}
        names: dict[str, str] = {}  # lower case -> as given, to join repeated headers
        for name, value in headers:
            lower = name.lower()
            if lower in LIBRARY_HEADERS:
                continue
            if lower in CREDENTIAL_HEADERS:
                dropped.append(CREDENTIAL_HEADERS[lower])
                continue
            if lower == "user-agent" and value in self._library_user_agents:
                continue
            # Repeated headers are joined as RFC 9110 allows; the worker refuses doubles.
            given = names.get(lower)
            if given is not None:
                forwarded[given] += ", " + value
            else:
                names[lower] = name
                forwarded[name] = value
        if dropped:
            self._warn(dropped)
        return Call(method.upper(), path, forwarded, body, timeout)

    def _warn(self, names: list[str]) -> None:
        with self._lock:
            fresh = [n for n in names if n.lower() not in self._warned]
            self._warned.update(n.lower() for n in fresh)
        if fresh:
            logger.warning(
                "snworker: %s set by the client %s dropped: requests to %s go through the "
                "worker, which authenticates them with its own token (said once)",
                ", ".join(fresh), "was" if len(fresh) == 1 else "were", self.instance_url)


def deadline(*parts: float | None) -> float | None:
    """One deadline for the whole call from a client's timeouts (connect, read, ...)."""
    given = [p for p in parts if p is not None]
    return float(sum(given)) if given else None


def response_headers(pairs: Pairs, method: str,
                     body_length: int | None) -> list[tuple[str, str]]:
    """The worker's response headers, for a body already decoded (whole, or `body_length`
    None: streamed, its decoded length unknown).

    Content-Encoding goes (the worker decoded the body) and Content-Length then says the
    decoded length, or goes too; hop-by-hop headers go; repeated names are kept as pairs.
    """
    kept: list[tuple[str, str]] = []
    decoded = False
    for name, value in pairs:
        lower = name.lower()
        if lower in _HOP_RESPONSE_HEADERS:
            continue
        if lower == "content-encoding":
            decoded = True
            continue
        kept.append((name, value))
    if decoded:
        kept = [(name, value) for name, value in kept if name.lower() != "content-length"]
        if method != "HEAD" and body_length is not None:
            kept.append(("Content-Length", str(body_length)))
    return kept
