"""Bodies in pieces for asyncio: the sync driver's windows (`snworker.streams`), awaited.

`Download` (the Credits a reader returns) and `Upload` (the pieces sent within the worker's
credit) are the sync driver's, unchanged; only the waiting differs. An upload's source (a file,
an iterator of bytes) is read in a thread, so a slow disk never stalls the loop.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType

from snworker.aio.channel import AsyncChannel, StreamCall
from snworker.errors import RequestTimeoutError, ServiceNowError
from snworker.messages import Chunk, Credit, Error, FromWorker, Head, Pairs, Result
from snworker.streams import Download, Upload


class AsyncStreamResponse:
    """A streamed answer: status and headers now, the body in pieces as it is read.

    Use it with `async with`. Closing it before the body's end tells the worker, which closes
    the HTTP response; nothing more of it is sent.
    """

    def __init__(self, channel: AsyncChannel, call: StreamCall, head: Head, timeout: float,
                 on_error: Callable[[Error], ServiceNowError],
                 whole: bytes | None = None) -> None:
        self.status = head.status
        self._header_pairs: Pairs = head.headers
        self._headers: Mapping[str, str] | None = None
        self._channel = channel
        self._call = call
        self._timeout = timeout
        self._on_error = on_error
        self._download = Download()
        self._whole = whole  # a body that came whole: nothing more to read from the worker
        self._finished = whole is not None
        self._closed = False
        self._consumed = False
        # Dropped unread: the worker is still told, from the loop's thread.
        self._finalizer = weakref.finalize(self, _close_dropped, channel, call)
        self._finalizer.atexit = False
        if whole is not None:
            self._finalizer.detach()

    @property
    def headers(self) -> Mapping[str, str]:
        """Response headers, case-insensitive."""
        if self._headers is None:
            from requests.structures import CaseInsensitiveDict

            self._headers = CaseInsensitiveDict(self._header_pairs)
        return self._headers

    @property
    def closed(self) -> bool:
        """True once closed, or read to its end."""
        return self._closed

    @property
    def peak_buffered(self) -> int:
        """The most body bytes this process held for this stream at once, unread."""
        return self._download.peak_buffered

    def aiter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """The body's pieces as they come (or re-cut to `chunk_size` bytes); once only.

        Raises:
            RequestTimeoutError: no piece came within the timeout.
            ApiRequestError: the worker or the network failed mid-stream.
            WorkerCrashedError: the worker died.
        """
        if self._consumed:
            raise RuntimeError("the body of a stream can be read once")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size <= 0):
            raise ValueError("chunk_size must be a positive number of bytes")
        self._consumed = True
        pieces = self._pieces()
        return pieces if chunk_size is None else _recut(pieces, chunk_size)

    async def aread(self) -> bytes:
        """The rest of the body, whole."""
        return b"".join([piece async for piece in self.aiter_bytes()])

    async def _pieces(self) -> AsyncIterator[bytes]:
        if self._whole is not None:
            self._closed = True
            if self._whole:
                yield self._whole
            return
        channel, call = self._channel, self._call
        try:
            while not self._finished:
                if self._closed:
                    raise ValueError("the stream is closed")
                message = await channel.next(call, self._timeout)
                if message is None:
                    self._closed = True
                    raise RequestTimeoutError(
                        f"no more of the body came within {self._timeout:g} s")
                if type(message) is Chunk:
                    waiting = sum(len(m.body) for m in call.inbox if type(m) is Chunk)
                    credit = self._download.taken(call.ident, message, waiting)
                    if credit is not None:
                        channel.send_quietly(credit)
                    if message.last:
                        self._finished = self._closed = True
                        self._finalizer.detach()
                    if message.body:
                        yield message.body
                elif type(message) is Error:
                    self._finished = self._closed = True
                    self._finalizer.detach()
                    raise self._on_error(message)
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
