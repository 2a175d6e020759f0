"""`httpx_transport(conn)`: an httpx transport whose every request goes through the worker.

`httpx_call`, `httpx_response` and `transport_errors` are the translation both transports use,
this sync one and the asyncio driver's: only how the body is read and how the worker is called
differ between them.
"""

from __future__ import annotations

import http
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx

from snworker.adapters import Call, Fetched, Translator, deadline
from snworker.adapters.sync import fetch
from snworker.errors import ApiRequestError, RequestTimeoutError

if TYPE_CHECKING:
    from snworker.connection import ServiceNowConnection

# What httpx sends as User-Agent when the client sets none.
LIBRARY_USER_AGENT = f"python-httpx/{httpx.__version__}"


def httpx_transport(conn: ServiceNowConnection) -> WorkerTransport:
    """An `httpx.BaseTransport` that sends the instance's requests through `conn`'s worker.

    `httpx.Client(base_url=conn.instance_url, transport=snworker.httpx_transport(conn))`.
    The rules of `requests_session` apply: another origin is refused with InvalidRequestError
    before anything is sent (so a client that follows redirects stops at one to another
    origin), headers httpx adds itself are left out, a credential the client sets is dropped
    with one WARNING, any status comes back as a response, and the worker does not retry (an
    httpx transport has no retry policy of its own unless the client adds one).

    Args:
        conn: a connection from `snworker.connect()` or `snworker.attach()`.
    """
    return WorkerTransport(conn)


class WorkerTransport(httpx.BaseTransport):
    """Sends httpx requests through the worker."""

    def __init__(self, conn: ServiceNowConnection) -> None:
        self.conn = conn
        self.translator = Translator(conn.instance_url, (LIBRARY_USER_AGENT,))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` through the worker; its answer, any status."""
        # A body of bytes is there already; one from an iterator streams up as it comes.
        body: Any = request.read() if isinstance(request.stream, httpx.ByteStream) \
            else iter(request.stream)  # type: ignore[arg-type]
        call = httpx_call(self.translator, request, body)
        with transport_errors(request):
            fetched = fetch(self.conn, call, stream=True)
        return httpx_response(fetched, request)


def httpx_call(translator: Translator, request: httpx.Request, body: Any) -> Call:
    """The Call for an httpx request: its body read (bytes), or an iterator of bytes."""
    timeouts: Any = request.extensions.get("timeout") or {}
    seconds = deadline(timeouts.get("connect"), timeouts.get("read")) \
        if isinstance(timeouts, dict) else None
    has_body = bool(body) or request.method in ("POST", "PUT", "PATCH")
    return translator.call(request.method, str(request.url), request.headers.multi_items(),
                           body if has_body else None, seconds)


def httpx_response(fetched: Fetched, request: httpx.Request,
                   stream: httpx.AsyncByteStream | None = None) -> httpx.Response:
    """An httpx.Response of the worker's answer: its body whole (served to sync and async
    reads), the sync pieces of `fetched.chunks`, or an async `stream` of pieces."""
    body: httpx.SyncByteStream | httpx.AsyncByteStream | httpx.ByteStream = (
        stream if stream is not None
        else httpx.ByteStream(fetched.content) if fetched.content is not None
        else _Chunks(fetched))
    return httpx.Response(fetched.status, headers=fetched.headers, stream=body,
                          request=request,
                          extensions={"http_version": b"HTTP/1.1",
                                      "reason_phrase": _reason(fetched.status)})


@contextmanager
def transport_errors(request: httpx.Request) -> Iterator[None]:
    """A network failure or deadline as the httpx error a client expects."""
    try:
        yield
    except RequestTimeoutError as exc:
        raise httpx.ReadTimeout(str(exc), request=request) from exc
    except ApiRequestError as exc:
        if exc.status is not None:
            raise
        raise httpx.ConnectError(str(exc), request=request) from exc


class _Chunks(httpx.SyncByteStream):
    """A streamed body, released when httpx closes the response."""

    def __init__(self, fetched: Fetched) -> None:
        self._fetched = fetched

    def __iter__(self) -> Iterator[bytes]:
        yield from self._fetched.chunks or ()

    def close(self) -> None:
        self._fetched.close()


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""
