"""The sync adapters' one way to the worker: a `Call` in, the instance's answer out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from snworker.adapters import Call, Fetched, fetched
from snworker.errors import InvalidRequestError

if TYPE_CHECKING:
    from snworker.connection import ServiceNowConnection


def fetch(conn: ServiceNowConnection, call: Call, stream: bool) -> Fetched:
    """Send `call` through `conn`'s worker, any status back, one attempt.

    This is the single place where the adapters get a body. With `stream` the client reads the
    body as it comes (requests' `stream=True`); until the connection can stream a response,
    the body arrives whole either way and `chunks` is left unset.
    """
    del stream  # the body comes whole until the connection can stream it
    return fetched(call, conn.execute_api_request(**call.keywords()))


def request_body(body: object) -> bytes | None:
    """The body a client gave, for the worker: the single place an upload is taken.

    bytes and str (UTF-8, as urllib3 encodes it) go as they are; a file or an iterator of
    bytes is read whole here, until the connection can stream a body up.
    """
    if body is None or isinstance(body, bytes):
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
