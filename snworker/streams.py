"""Bodies in pieces across the pipe, parent side: what does no I/O, and the sync stream response.

    answer (down)  Request(window=WINDOW) -> Head, Chunk, Chunk, ..., Chunk(last)   [or Error]
                   the parent returns a Credit for each Chunk its reader takes, so the worker
                   is never more than WINDOW bytes ahead of the reader
    upload (up)    Request(upload=length | UNKNOWN_LENGTH) -> the worker grants a Credit,
                   the parent sends Chunks within it, the worker grants more as it sends on

Neither process holds more of a body than its window and a piece. `Download` and `Upload` keep
the accounts and make the messages; a driver (the sync one here, or an async one) moves them.
Bodies cross as raw bytes, never pickled.
"""

from __future__ import annotations

import io
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from snworker.errors import ApiRequestError, InvalidRequestError, ServiceNowError
from snworker.messages import UNKNOWN_LENGTH, Chunk, Credit, Error, Head, Pairs, Result

if TYPE_CHECKING:
    from snworker.channel import Call, Channel

# The most of an answer's body the worker may send ahead of the reader.
WINDOW = 1 << 22
# An upload is read from its source and sent this much at a time.
PIECE = 1 << 18
# How long closing a stream early waits for the worker to end it (see Channel.close_call).
CLOSE_DRAIN = 2.0


# --- upload ---------------------------------------------------------------------------------


def is_stream(data: object) -> bool:
    """True for a body that streams up: a binary file object, or an iterator of bytes."""
    return hasattr(data, "read") or isinstance(data, Iterator)


class Upload:
    """A body read from a file object or an iterator of bytes, sent within the worker's credit.

    Its first piece is read before the request is sent, so a text file or an iterator of str
    is refused with nothing sent. A file whose size can be known (seekable) is sent with that
    length; anything else is sent chunked.
    """

    def __init__(self, source: Any) -> None:
        self._credit = 0
        self._read_total = 0
        self._eof = False
        self._finished = False
        self.length = UNKNOWN_LENGTH
        if hasattr(source, "read"):
            self.length = _remaining_size(source)
            self._read: Callable[[int], bytes] = _file_reader(source)
        else:
            self._read = _iterator_reader(source)
        self._ahead = self._take(PIECE)  # read before anything is sent: errors surface here

    @property
    def finished(self) -> bool:
        """The last piece was made."""
        return self._finished

    def grant(self, credit: Credit) -> None:
        """The worker may take `credit.size` more bytes."""
        if isinstance(credit.size, int) and credit.size > 0:
            self._credit += credit.size

    def chunks(self, ident: int) -> Iterator[Chunk]:
        """The pieces the credit allows now; the last one says so."""
        while not self._finished and self._credit > 0:
            if not self._ahead and not self._eof:
                self._ahead = self._take(PIECE)
            piece, self._ahead = self._ahead[:self._credit], self._ahead[self._credit:]
            self._credit -= len(piece)
            if not self._ahead and not self._eof:
                self._ahead = self._take(PIECE)  # to know whether this piece is the last
            self._finished = self._eof and not self._ahead
            yield Chunk(ident, self._finished, piece)

    def _take(self, size: int) -> bytes:
        known = self.length != UNKNOWN_LENGTH
        wanted = min(size, self.length - self._read_total) if known else size
        piece = self._read(wanted) if wanted > 0 else b""
        self._read_total += len(piece)
        if known and len(piece) < wanted:
            raise ApiRequestError(f"the body ended after {self._read_total} of the "
                                  f"{self.length} bytes its file had when the request began; "
                                  "the request was stopped")
        self._eof = self._read_total == self.length if known else not piece
        return piece


def _remaining_size(source: Any) -> int:
    try:
        if source.seekable():
            position = source.tell()
            end = source.seek(0, os.SEEK_END)
            source.seek(position)
            return max(0, int(end) - int(position))
    except (AttributeError, OSError, ValueError, TypeError):
        pass
    return UNKNOWN_LENGTH


def _file_reader(source: Any) -> Callable[[int], bytes]:
    if isinstance(source, io.TextIOBase):
        raise InvalidRequestError("the body's file is open in text mode; open it with 'rb'")

    def read(size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            piece = source.read(size - len(out))
            if not piece:
                break
            if not isinstance(piece, bytes | bytearray | memoryview):
                raise InvalidRequestError("the body's file gave str, not bytes; open it with 'rb'")
            out += piece
        return bytes(out)

    return read


def _iterator_reader(source: Iterator[Any]) -> Callable[[int], bytes]:
    """Reads at most `size` bytes: an item as it is when it fits; b"" only at the end."""
    pending = memoryview(b"")

    def read(size: int) -> bytes:
        nonlocal pending
        while not pending:
            try:
                item = next(source)
            except StopIteration:
                return b""
            if not isinstance(item, bytes | bytearray | memoryview):
                raise InvalidRequestError(
                    f"an iterator body must yield bytes, not {type(item).__name__}")
            if type(item) is bytes and 0 < len(item) <= size:
                return item  # no copy
            pending = memoryview(item).cast("B")
        piece, pending = bytes(pending[:size]), pending[size:]
        return piece

    return read


# --- download -------------------------------------------------------------------------------


class Download:
    """The reader's side of an answer's window: the Credit to return as Chunks are taken.

    Credit goes back a quarter of the window at a time: the worker, never more than the
    window ahead, is woken four times per window rather than once per piece.
    """

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self.peak_buffered = 0  # the most body bytes waiting for the reader at once
        self._owed = 0

    def taken(self, ident: int, chunk: Chunk, waiting: int) -> Credit | None:
        """`chunk` went to the reader, `waiting` bytes still queued: the credit to return."""
        self.peak_buffered = max(self.peak_buffered, waiting + len(chunk.body))
        if chunk.last:
            return None
        self._owed += len(chunk.body)
        if self._owed < self.window // 4:
            return None
        owed, self._owed = self._owed, 0
        return Credit(ident, owed)


class StreamState:
    """What a streamed answer knows and does without waiting: the half both drivers share.

    A driver (the sync `StreamResponse`, the asyncio one) waits for the call's next message
    its own way and hands it to `_take`, which returns the body's piece and the credit to send.
    """

    _finalizer: weakref.finalize[Any, Any]

    def __init__(self, head: Head, timeout: float, on_error: Callable[[Error], ServiceNowError],
                 whole: bytes | None) -> None:
        self.status = head.status
        self._header_pairs: Pairs = head.headers
        self._headers: Mapping[str, str] | None = None
        self._timeout = timeout
        self._on_error = on_error
        self._download = Download()
        self._whole = whole  # a body that came whole: nothing more to read from the worker
        self._finished = whole is not None
        self._closed = False
        self._consumed = False

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
        return self._closed or (self._whole is not None and self._consumed)

    @property
    def peak_buffered(self) -> int:
        """The most body bytes this process held for this stream at once, unread."""
        return self._download.peak_buffered

    def _start_reading(self, chunk_size: int | None) -> None:
        if self._consumed:
            raise RuntimeError("the body of a stream can be read once")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size <= 0):
            raise ValueError("chunk_size must be a positive number of bytes")
        self._consumed = True

    def _whole_body(self) -> bytes:
        """The body that came whole (empty when it was); the stream is then closed."""
        self._closed = True
        return self._whole or b""

    def _take(self, message: object, call: Any) -> tuple[bytes, Credit | None]:
        """The body's piece in `message` (None: the wait timed out) and the credit to return.

        Raises:
            RequestTimeoutError: `message` is None.
            ServiceNowError: the worker's Error, mapped.
        """
        if message is None:
            self._closed = True
            from snworker.errors import RequestTimeoutError

            raise RequestTimeoutError(f"no more of the body came within {self._timeout:g} s")
        if type(message) is Chunk:
            waiting = sum(len(m.body) for m in call.inbox if type(m) is Chunk)
            credit = self._download.taken(call.ident, message, waiting)
            if message.last:
                self._finished = self._closed = True
                self._finalizer.detach()
            return message.body, credit
        if type(message) is Error:
            self._finished = self._closed = True
            self._finalizer.detach()
            raise self._on_error(message)
        return b"", None  # anything else (a stray Credit) is not for a download


# --- the sync driver -------------------------------------------------------------------------


class StreamResponse(StreamState):
    """A streamed answer: status and headers now, the body in pieces as it is read.

    Use it as a context manager. Closing it before the body's end tells the worker, which
    closes the HTTP response; nothing more of it is sent.
    """

    def __init__(self, channel: Channel, call: Call, head: Head, timeout: float,
                 on_error: Callable[[Error], ServiceNowError], whole: bytes | None = None,
                 ) -> None:
        super().__init__(head, timeout, on_error, whole)
        self._channel = channel
        self._call = call
        # Dropped without close(): the worker is still told, and what it sent is read off
        # the pipe, from a thread of its own (a finalizer may run where this one holds a lock).
        self._finalizer = weakref.finalize(self, _close_dropped, channel, call)
        self._finalizer.atexit = False
        if whole is not None:
            self._finalizer.detach()

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[bytes]:
        """The body's pieces as they come (or re-cut to `chunk_size` bytes); once only.

        Raises:
            RequestTimeoutError: no piece came within the timeout.
            ApiRequestError: the worker or the network failed mid-stream.
            WorkerCrashedError: the worker died.
        """
        self._start_reading(chunk_size)
        pieces = self._pieces()
        return pieces if chunk_size is None else _recut(pieces, chunk_size)

    def read(self) -> bytes:
        """The rest of the body, whole."""
        return b"".join(self.iter_bytes())

    def _pieces(self) -> Iterator[bytes]:
        if self._whole is not None:
            if whole := self._whole_body():
                yield whole
            return
        channel, call = self._channel, self._call
        try:
            while not self._finished:
                if self._closed:
                    raise ValueError("the stream is closed")
                piece, credit = self._take(
                    channel.next(call, time.monotonic() + self._timeout), call)
                if credit is not None:
                    channel.send_quietly(credit)
                if piece:
                    yield piece
        finally:
            if not self._finished:
                self.close()

    def close(self) -> None:
        """Stop reading: the worker closes the HTTP response; idempotent."""
        self._closed = True
        if self._finalizer.detach() is not None and not self._finished:
            self._channel.close_call(self._call, CLOSE_DRAIN)

    def __enter__(self) -> StreamResponse:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<StreamResponse [{self.status}] {state}>"


def _close_dropped(channel: Channel, call: Call) -> None:
    threading.Thread(target=channel.close_call, args=(call, CLOSE_DRAIN),
                     name="snworker-stream-close", daemon=True).start()


def _recut(pieces: Iterator[bytes], size: int) -> Iterator[bytes]:
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def send_upload(channel: Channel, call: Call, upload: Upload | None, deadline: float | None,
                ) -> Result | Head | Error | None:
    """Wait for the answer to `call`, sending the upload's pieces as the worker grants credit.

    The answer: a Result or an Error, or for a stream its Head; None when `deadline` passed.
    """
    while True:
        message = channel.next(call, deadline)
        if message is None:
            return None
        if type(message) is Credit:
            if upload is not None:
                upload.grant(message)
                for chunk in upload.chunks(call.ident):  # a bad piece raises: call closed
                    try:
                        channel.send(chunk)
                    except (OSError, ValueError):
                        upload = None  # the worker is gone: reading the pipe shows it
                        break
            continue
        if type(message) in (Result, Head, Error):
            return message  # type: ignore[return-value]
