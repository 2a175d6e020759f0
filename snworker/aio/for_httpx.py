"""`snworker.aio.httpx_transport(aconn)`: httpx's AsyncClient through the worker.

The translation is the sync transport's (`snworker.adapters.for_httpx`): the same rules, the
same Call, the same response; only the calls to the worker are awaited. Bodies stream down as
they come (`stream_api_request`). Cancelling the task that awaits a request cancels it in the
worker, which aborts the HTTP exchange in flight.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx

from snworker.adapters import Fetched, Translator, response_headers
from snworker.adapters.for_httpx import (
    LIBRARY_USER_AGENT,
    httpx_call,
    httpx_response,
    transport_errors,
)

if TYPE_CHECKING:
    from snworker.aio.connection import AsyncServiceNowConnection
    from snworker.aio.streams import AsyncStreamResponse


def httpx_transport(aconn: AsyncServiceNowConnection) -> AsyncWorkerTransport:
    """An `httpx.AsyncBaseTransport` that sends the instance's requests through `aconn`'s worker.

    `httpx.AsyncClient(base_url=aconn.instance_url, transport=snworker.aio.httpx_transport(aconn))`,
    and so pysnc's asyncio client. The rules of `snworker.httpx_transport` apply: another origin
    is refused with InvalidRequestError before anything is sent, headers httpx adds itself are
    left out, a credential the client sets is dropped with one WARNING, any status comes back
    as a response, and the worker does not retry.

    Args:
        aconn: a connection from `snworker.aio.connect()` or `snworker.aio.attach()`.
    """
    return AsyncWorkerTransport(aconn)


class AsyncWorkerTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through the worker, from an event loop."""

    def __init__(self, aconn: AsyncServiceNowConnection) -> None:
        self.aconn = aconn
        self.translator = Translator(aconn.instance_url, (LIBRARY_USER_AGENT,))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` through the worker; its answer, any status, its body as it comes."""
        call = httpx_call(self.translator, request, await request.aread())
        keywords = call.keywords()
        with transport_errors(request):
            answer = await self.aconn.stream_api_request(keywords.pop("path"), **keywords)
        whole = answer._whole
        if whole is not None:  # it ended within the worker's first piece
            return httpx_response(Fetched(answer.status, response_headers(
                answer._header_pairs, call.method, len(whole)), whole), request)
        return httpx_response(
            Fetched(answer.status, response_headers(answer._header_pairs, call.method, None)),
            request, _Pieces(answer, request))


class _Pieces(httpx.AsyncByteStream):
    """A streamed body, closed in the worker when httpx closes the response."""

    def __init__(self, answer: AsyncStreamResponse, request: httpx.Request) -> None:
        self._answer = answer
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with transport_errors(self._request):
            async for piece in self._answer.aiter_bytes():
                yield piece

    async def aclose(self) -> None:
        await self._answer.aclose()
