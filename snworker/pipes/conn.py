"""Framing with a connection's own `send_bytes`/`recv_bytes`: any OS, Windows' named pipes too.

A message is one frame (PREFIX, head, body) when it is small, or two (PREFIX and head, then the
body) when the body is large, so a large body is never copied to be joined. Every read names
the most it accepts, so a frame that claims more is refused before anything is allocated.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from snworker.messages import (
    MAX_BODY,
    MAX_HEAD,
    PREFIX,
    Message,
    ProtocolError,
    build,
    encode,
    read_head,
    sizes,
)
from snworker.pipes import Ended, Received

if TYPE_CHECKING:
    import asyncio

_JOIN_LIMIT = 1 << 16
_MAX_FIRST = PREFIX.size + MAX_HEAD + _JOIN_LIMIT


class Connection(Protocol):
    """What this framing needs of a `multiprocess` (or `multiprocessing`) connection."""

    def send_bytes(self, buf: bytes) -> None: ...

    def recv_bytes(self, maxlength: int | None = None) -> bytes: ...

    def close(self) -> None: ...


Wait = Callable[[Sequence[Any], float | None], list[Any]]


class ConnPipe:
    """One end of the pipe, framed with send_bytes/recv_bytes. One thread reads at a time."""

    def __init__(self, conn: Connection, wait: Wait | None = None) -> None:
        self._conn = conn
        self._wait = wait

    @property
    def buffered(self) -> bool:
        """Always False: the connection keeps nothing read ahead."""
        return False

    def send(self, message: Message) -> None:
        """Write `message`. The caller holds the pipe's send lock."""
        head, body = encode(message)
        size = 0 if body is None else len(body)
        prefix = PREFIX.pack(len(head), size)
        if body is not None and size + len(head) > _JOIN_LIMIT:
            self._conn.send_bytes(prefix + head)
            self._conn.send_bytes(body)
        else:
            self._conn.send_bytes(prefix + head + body if body else prefix + head)

    def receive(self) -> Message:
        """The next message; EOFError when the peer is gone."""
        try:
            frame = self._conn.recv_bytes(_MAX_FIRST)
        except OSError as exc:
            if "bad message length" in str(exc):
                raise ProtocolError("a frame over the size limit") from None
            raise
        if len(frame) < PREFIX.size:
            raise ProtocolError("a frame shorter than its prefix")
        head_size, body_size = sizes(frame[:PREFIX.size])
        head_end = PREFIX.size + head_size
        if len(frame) < head_end:
            raise ProtocolError("a frame shorter than its head")
        values = read_head(frame[PREFIX.size:head_end])
        if not values[1]:
            if body_size or len(frame) != head_end:
                raise ProtocolError("a body where the head says none")
            return build(values, None)
        if len(frame) == head_end + body_size:
            return build(values, frame[head_end:])
        if len(frame) != head_end:
            raise ProtocolError("a frame whose length disagrees with its prefix")
        body = self._conn.recv_bytes(MAX_BODY)
        if len(body) != body_size:
            raise ProtocolError("a body whose length disagrees with its prefix")
        return build(values, body)

    def waiter(self, sentinel: int | None) -> _ConnWaiter:
        """Waits for this pipe and `sentinel` with the connection package's wait()."""
        if self._wait is None:
            raise RuntimeError("this end of the pipe was opened without a wait function")
        return _ConnWaiter(self._conn, sentinel, self._wait)

    def watch(self, loop: asyncio.AbstractEventLoop, sentinel: int | None,
              received: Received, ended: Ended) -> _ThreadReader:
        """Read in a thread of its own and hand what it reads to `loop`.

        A named pipe's handle cannot be waited on by an event loop's selector, so a thread
        reads and passes each batch of messages on with `call_soon_threadsafe`.
        """
        return _ThreadReader(self, loop, sentinel, received, ended)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def hang_up(self) -> None:
        """Nothing: a connection's writes have no deadline here, so none is left hanging."""


class _ThreadReader:
    """A thread that reads the pipe for an event loop."""

    _BATCH = 64  # at most this many messages per hand-over to the loop

    def __init__(self, pipe: ConnPipe, loop: asyncio.AbstractEventLoop, sentinel: int | None,
                 received: Received, ended: Ended) -> None:
        self._pipe = pipe
        self._loop = loop
        self._received = received
        self._ended = ended
        self._closed = False  # by close(): hand nothing more to the loop
        self._waiter = pipe.waiter(sentinel) if pipe._wait is not None else None
        threading.Thread(target=self._run, name="snworker-aio-reader", daemon=True).start()

    def _run(self) -> None:
        waiter, pipe = self._waiter, self._pipe
        error: Exception | None = None
        try:
            while not self._closed:
                if waiter is not None:
                    readable, exited = waiter.wait(None)
                    if not readable:
                        if exited:
                            break
                        continue
                batch: list[Message] = [pipe.receive()]
                while len(batch) < self._BATCH and (waiter is None or waiter.wait(0)[0]):
                    if waiter is None:
                        break
                    batch.append(pipe.receive())
                self._hand(self._received, batch)
        except (EOFError, OSError):
            pass
        except Exception as exc:  # a malformed frame: the stream can no longer be trusted
            error = exc
        finally:
            if waiter is not None:
                waiter.close()
        self._hand(self._ended, error)

    def _hand(self, callback: Callable[[Any], None], value: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._deliver, callback, value)
        except RuntimeError:  # the loop is closed: nobody waits any more
            self._closed = True

    def _deliver(self, callback: Callable[[Any], None], value: Any) -> None:
        if not self._closed:
            callback(value)

    def close(self) -> None:
        """Stop handing messages to the loop; the thread ends with the pipe."""
        self._closed = True


class _ConnWaiter:
    def __init__(self, conn: Connection, sentinel: int | None, wait: Wait) -> None:
        self._objects: list[Any] = [conn] if sentinel is None else [conn, sentinel]
        self._wait = wait

    def wait(self, timeout: float | None) -> tuple[bool, bool]:
        ready = self._wait(self._objects, None if timeout is None else max(timeout, 0.0))
        fired = any(isinstance(item, int) for item in ready)  # the sentinel is the int
        return len(ready) > fired, fired

    def close(self) -> None:
        pass
