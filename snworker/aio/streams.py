"""Bodies in pieces for asyncio: the sync driver's windows (`snworker.streams`), awaited.

`Download` (the Credits a reader returns) and `Upload` (the pieces sent within the worker's
credit) are the sync driver's, unchanged; only the waiting differs. An upload's source (a file,
an iterator of bytes) is read in a thread, so a slow disk never stalls the loop.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable
from types import TracebackType

from snworker.aio.channel import AsyncChannel, StreamCall
from snworker.errors import ServiceNowError
from snworker.messages import Chunk, Credit, Error, FromWorker, Head, Result
from snworker.streams import StreamState, Upload


class AsyncStreamResponse(StreamState):
    """A streamed answer: status and headers now, the body in pieces as it is read.

    Use it with `async with`. Closing it before the body's end tells the worker, which closes
    the HTTP response; nothing more of it is sent.
    """

    def __init__(self, channel: AsyncChannel, call: StreamCall, head: Head, timeout: float,
                 on_error: Callable[[Error], ServiceNowError],
                 whole: bytes | None = None) -> None:
        super().__init__(head, timeout, on_error, whole)
        self._channel = channel
        self._call = call
        # Dropped unread: the worker is still told, from the loop's thread.
        self._finalizer = weakref.finalize(self, _close_dropped, channel, call)
        self._finalizer.atexit = False
        if whole is not None:
            self._finalizer.detach()

    def aiter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """The body's pieces as they come (or re-cut to `chunk_size` bytes); once only.

        Raises:
            RequestTimeoutError: no piece came within the timeout.
            ApiRequestError: the worker or the network failed mid-stream.
            WorkerCrashedError: the worker died.
        """
        self._start_reading(chunk_size)
        pieces = self._pieces()
        return pieces if chunk_size is None else _recut(pieces, chunk_size)

    async def aread(self) -> bytes:
        """The rest of the body, whole."""
        return b"".join([piece async for piece in self.aiter_bytes()])

    async def _pieces(self) -> AsyncIterator[bytes]:
        if self._whole is not None:
            if whole := self._whole_body():
                yield whole
            return
        channel, call = self._channel, self._call
        try:
            while not self._finished:
                if self._closed:
                    raise ValueError("the stream is closed")
                piece, credit = self._take(await channel.next(call, self._timeout), call)
                if credit is not None:
                    channel.send_quietly(credit)
                if piece:
                    yield piece
        finally:
            if not self._finished:
                await self.aclose()

    async def aclose(self) -> None:
        """Stop reading: the worker closes the HTTP response; idempotent."""
        self._closed = True
        if self._finalizer.detach() is not None and not self._finished:
            self._channel.close_call(self._call)

    async def __aenter__(self) -> AsyncStreamResponse:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<AsyncStreamResponse [{self.status}] {state}>"


async def send_upload(channel: AsyncChannel, call: StreamCall, upload: Upload | None,
                      timeout: float) -> FromWorker | None:
    """Await the answer to `call`, sending the upload's pieces as the worker grants credit.

    The answer: a Result or an Error, or for a stream its Head; None when `timeout` s passed
    without a message.
    """
    loop = asyncio.get_running_loop()
    while True:
        message = await channel.next(call, timeout)
        if message is None:
            return None
        if type(message) is Credit:
            if upload is not None:
                upload.grant(message)
                # Reading the source may wait on a disk or a generator: not on the loop.
                chunks = await loop.run_in_executor(None, _pieces, upload, call.ident)
                for chunk in chunks:
                    try:
                        await channel.send_body(chunk)
                    except (OSError, ValueError):
                        upload = None  # the worker is gone: the pipe's end shows it
                        break
            continue
        if type(message) in (Result, Head, Error):
            return message


def _pieces(upload: Upload, ident: int) -> list[Chunk]:
    return list(upload.chunks(ident))


def _close_dropped(channel: AsyncChannel, call: StreamCall) -> None:
    try:
        channel.call_soon(channel.close_call, call)
    except RuntimeError:  # the loop is closed: the worker ends the stream with the pipe
        pass


async def _recut(pieces: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    buffer = bytearray()
    async for piece in pieces:
        buffer += piece
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)
