"""The sync adapters' one way to the worker: a `Call` in, the instance's answer out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from snworker.adapters import Call, Fetched, fetched, response_headers
from snworker.errors import InvalidRequestError
from snworker.streams import is_stream

if TYPE_CHECKING:
    from snworker.connection import ServiceNowConnection


def fetch(conn: ServiceNowConnection, call: Call, stream: bool) -> Fetched:
    """Send `call` through `conn`'s worker, any status back, one attempt.

    This is the single place where the adapters get a body. With `stream` the client reads the
    body as it comes (requests' `stream=True`, httpx's responses): `stream_api_request`, its
    pieces in `chunks` until `close()`; a body that ended within the worker's first piece
    comes whole in `content`.
    """
    if not stream:
        return fetched(call, conn.execute_api_request(**call.keywords()))
    keywords = call.keywords()
    response = conn.stream_api_request(keywords.pop("path"), **keywords)
    whole = response._whole
    if whole is not None:
        return Fetched(response.status,
                       response_headers(response._header_pairs, call.method, len(whole)), whole)
    return Fetched(response.status,
                   response_headers(response._header_pairs, call.method, None),
                   chunks=response.iter_bytes(), close=response.close)


def request_body(body: object) -> Any:
    """The body a client gave, for the worker: the single place an upload is taken.

    bytes and str (UTF-8, as urllib3 encodes it) go as they are; a binary file or an iterator
    of bytes goes as it is, for the connection to stream up within a window.
    """
    if body is None or isinstance(body, bytes) or is_stream(body):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    read = getattr(body, "read", None)
    if callable(read):
        data = read()
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if isinstance(body, Iterable):
        return b"".join(c.encode("utf-8") if isinstance(c, str) else bytes(c) for c in body)
    raise InvalidRequestError(f"a request body of type {type(body).__name__} cannot be sent")
