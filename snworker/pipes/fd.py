"""POSIX framing: messages written and read on the pipe's file descriptor.

A frame is PREFIX (head length, body length), the head, then the raw body. A small message
costs one write and usually one read: reads take whatever the pipe holds, kept in a buffer for
the next call. A connection's own send_bytes/recv_bytes would cost two reads per frame and two
frames per message with a body.

A large frame grows as its bytes arrive, never from the length its prefix announces: a peer
that announces a gigabyte and stalls holds only what it sent. An agent's client pipe also has
a budget (what the client may hold in flight) and a read deadline once a frame has begun.
"""

from __future__ import annotations

import sys

assert sys.platform != "win32"  # file descriptors frame the pipe on POSIX only

import os
import select
import selectors
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from snworker.messages import PREFIX, Message, ProtocolError, build, encode, read_head, sizes
from snworker.pipes import Ended, Received, Waiter

if TYPE_CHECKING:
    import asyncio

# Below this, prefix, head and body are joined and written at once; above it the copy would
# cost more than a second write.
_JOIN_LIMIT = 1 << 16
_READ_SIZE = 1 << 16
# A large frame's first piece; each next one is as large as what has arrived so far.
_FIRST_PIECE = 1 << 20


class FrameBudget(Protocol):
    """What one peer may hold in frames being read (an agent's client)."""

    stall: float  # seconds a begun frame may go without a byte arriving
    most: int  # the largest frame the peer may send

    def take(self, size: int) -> bool:
        """Reserve `size` bytes more, waiting up to `stall` seconds; False when refused."""
        ...


class FrameStalled(ProtocolError):
    """A frame that began and then stopped arriving for longer than its deadline."""


class FrameRefused(ProtocolError):
    """A frame larger than what its peer may hold in flight."""


class FdPipe:
    """One end of the pipe, framed on its file descriptor. One thread reads at a time."""

    def __init__(self, fd: int, close: Callable[[], None] | None = None,
                 read_ahead: bool = True, budget: FrameBudget | None = None) -> None:
        self._fd = fd
        _widen(fd)
        self._close = close if close is not None else (lambda: os.close(fd))
        self._read_ahead = read_ahead
        self._buffer = bytearray()
        self._start = 0
        self._budget = budget
        self._begun = False  # a byte of the frame being read has arrived
        self._scratch = bytearray()

    def fileno(self) -> int:
        """The descriptor the frames travel on."""
        return self._fd

    @property
    def buffered(self) -> bool:
        """True when bytes read ahead wait in the buffer (select() would not see them)."""
        return len(self._buffer) > self._start

    def send(self, message: Message) -> None:
        """Write `message`. The caller holds the pipe's send lock."""
        head, body = encode(message)
        size = 0 if body is None else len(body)
        prefix = PREFIX.pack(len(head), size)
        fd = self._fd
        if size + len(head) <= _JOIN_LIMIT:
            frame = prefix + head + body if body else prefix + head
            written = os.write(fd, frame)
            if written < len(frame):  # only when a signal interrupts a write already under way
                _write_all(fd, [frame[written:]])
        else:
            _write_all(fd, [prefix + head, body or b""])

    def receive(self) -> Message:
        """The next message; EOFError when the peer is gone."""
        self._begun = self.buffered
        head_size, body_size = sizes(self._take(PREFIX.size))
        values = read_head(self._take(head_size))
        if not values[1] and body_size:
            raise ProtocolError("a body where the head says none")
        return build(values, self._take(body_size) if values[1] else None)

    def waiter(self, sentinel: int | None) -> Waiter:
        """Waits for this pipe and `sentinel` together: epoll on Linux, selectors elsewhere."""
        if sys.platform == "linux":
            return _EpollWaiter(self._fd, sentinel)
        return _SelectorWaiter(self._fd, sentinel)

    def watch(self, loop: asyncio.AbstractEventLoop, sentinel: int | None,
              received: Received, ended: Ended) -> _LoopReader:
        """Read on `loop` whenever the descriptor is readable (`add_reader`): no thread."""
        reader = _LoopReader(self._fd, loop, sentinel, received, ended)
        if self.buffered:  # read ahead by a blocking reader earlier: decode it first
            reader.decoder.feed(bytes(self._buffer[self._start:]))
            self._buffer.clear()
            self._start = 0
        return reader

    def close(self) -> None:
        """Close the descriptor."""
        self._close()

    def hang_up(self) -> None:
        """End a socket's traffic both ways: its reader wakes to EOF. (Not for a pipe.)"""
        try:
            sock = socket.socket(fileno=self._fd)
        except OSError:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            sock.detach()

    def _take(self, size: int) -> bytes:
        buffer = self._buffer
        missing = size - (len(buffer) - self._start)
        if missing > 0:
            if missing > _READ_SIZE:
                return self._take_large(size)
            while missing > 0:
                self._wait_for_bytes()
                data = os.read(self._fd, _READ_SIZE if self._read_ahead else missing)
                if not data:
                    raise EOFError
                self._begun = True
                buffer += data
                missing -= len(data)
        start = self._start
        end = self._start = start + size
        chunk = bytes(buffer[start:end])
        if end == len(buffer):
            buffer.clear()
            self._start = 0
        return chunk

    def _take_large(self, size: int) -> bytes:
        # Read into pieces that grow with what has arrived (each as large as all before it),
        # then join them once: a few pieces for any size, and never more held than twice
        # what the peer really sent. The first piece starts with what the buffer holds.
        budget = self._budget
        if budget is not None and size > budget.most:
            raise FrameRefused(f"a frame of {size} bytes is more than this peer may hold in "
                               f"flight ({budget.most})")
        if size <= _FIRST_PIECE:
            return self._take_piece(size)
        pieces: list[bytearray] = []
        filled = 0
        while filled < size:
            piece = min(size - filled, max(_FIRST_PIECE, filled))
            if budget is not None and not budget.take(piece):
                raise FrameRefused(f"a frame of {size} bytes is more than this peer may hold "
                                   "in flight")
            out = bytearray(piece)
            view = memoryview(out)
            got = 0
            if not pieces:
                got = len(self._buffer) - self._start
                view[:got] = self._buffer[self._start:]
                self._buffer.clear()
                self._start = 0
            while got < piece:
                self._wait_for_bytes()
                count = os.readv(self._fd, [view[got:]])
                if not count:
                    raise EOFError
                self._begun = True
                got += count
            view.release()
            pieces.append(out)
            filled += piece
        return bytes(pieces[0]) if len(pieces) == 1 else b"".join(pieces)

    def _take_piece(self, size: int) -> bytes:
        # A frame of one piece (a stream's pieces are) is read into a buffer kept for the
        # next one: a fresh buffer per piece would make the allocator hand its pages back to
        # the system and fault them in again each time (on a virtual machine, most of what a
        # stream costs). What the buffer held is read first.
        budget = self._budget
        if budget is not None and not budget.take(size):
            raise FrameRefused(f"a frame of {size} bytes is more than this peer may hold "
                               "in flight")
        if len(self._scratch) < size:
            self._scratch = bytearray(size)
        view = memoryview(self._scratch)[:size]
        got = len(self._buffer) - self._start
        view[:got] = self._buffer[self._start:]
        self._buffer.clear()
        self._start = 0
        try:
            while got < size:
                self._wait_for_bytes()
                count = os.readv(self._fd, [view[got:]])
                if not count:
                    raise EOFError
                self._begun = True
                got += count
            return bytes(view)
        finally:
            view.release()

    def _wait_for_bytes(self) -> None:
        """Within a begun frame, wait for bytes no longer than the budget's deadline allows."""
        if self._budget is None or not self._begun:
            return
        poll = select.poll()
        poll.register(self._fd, select.POLLIN)
        if not poll.poll(self._budget.stall * 1000):
            raise FrameStalled(f"a frame stopped arriving for {self._budget.stall:g} s")


# A socket's buffers, asked for as large as a stream's window: a worker that writes a piece of
# a body then rarely waits for the parent to read (the kernel may grant less: wmem_max).
_SOCKET_BUFFER = 1 << 20


def _widen(fd: int) -> None:
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return  # not a socket (a plain pipe): nothing to widen
    try:
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
    except OSError:
        pass
    finally:
        sock.close()


class FrameDecoder:
    """Frames to messages, from bytes fed in pieces of any size (no I/O)."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        """The messages complete once `data` is added; ProtocolError for a malformed frame."""
        buffer = self._buffer
        buffer += data
        messages: list[Message] = []
        start, size = 0, len(buffer)
        while size - start >= PREFIX.size:
            head_size, body_size = sizes(bytes(buffer[start:start + PREFIX.size]))
            head_end = start + PREFIX.size + head_size
            end = head_end + body_size
            if size < end:
                break
            values = read_head(bytes(buffer[start + PREFIX.size:head_end]))
            if not values[1] and body_size:
                raise ProtocolError("a body where the head says none")
            messages.append(build(values, bytes(buffer[head_end:end]) if values[1] else None))
            start = end
        if start:
            del buffer[:start]
        return messages


class _LoopReader:
    """Reads the pipe on an event loop's thread when it is readable; never blocks the loop.

    A readable descriptor answers a read at once with what it holds, so the descriptor stays
    blocking (sends from other threads rely on that) and each readiness costs one read.
    """

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop, sentinel: int | None,
                 received: Received, ended: Ended) -> None:
        self._fd = fd
        self._loop = loop
        self._sentinel = sentinel
        self._received = received
        self._ended = ended
        self._open = True
        self.decoder = FrameDecoder()
        loop.add_reader(fd, self._readable)
        if sentinel is not None:
            loop.add_reader(sentinel, self._exited)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, _LOOP_READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._end(None)
            return
        try:
            messages = self.decoder.feed(data)
        except ProtocolError as exc:
            self._end(exc)
            return
        if messages:
            self._received(messages)

    def _exited(self) -> None:
        # The worker exited. Whatever it wrote before is still in the pipe: read it out first
        # (a process the worker started could hold the pipe open, so no EOF may come).
        self._loop.remove_reader(self._sentinel)  # type: ignore[arg-type]
        self._sentinel = None
        while self._open and select.select([self._fd], [], [], 0)[0]:
            self._readable()
        self._end(None)

    def _end(self, error: Exception | None) -> None:
        if self._open:
            self.close()
            self._ended(error)

    def close(self) -> None:
        """Stop reading (the descriptor stays open)."""
        if not self._open:
            return
        self._open = False
        try:
            self._loop.remove_reader(self._fd)
            if self._sentinel is not None:
                self._loop.remove_reader(self._sentinel)
        except (RuntimeError, ValueError, OSError):  # the loop is closed already
            pass


_LOOP_READ_SIZE = 1 << 18


def _write_all(fd: int, buffers: list[bytes]) -> None:
    views = [memoryview(b) for b in buffers if b]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


if sys.platform == "linux":

    class _EpollWaiter:
        def __init__(self, fd: int, sentinel: int | None) -> None:
            self._sentinel = sentinel
            self._poll = select.epoll()
            self._poll.register(fd, select.EPOLLIN)
            if sentinel is not None:
                self._poll.register(sentinel, select.EPOLLIN)

        def wait(self, timeout: float | None) -> tuple[bool, bool]:
            ready = self._poll.poll(-1.0 if timeout is None else max(timeout, 0.0))
            fired = any(fd == self._sentinel for fd, _ in ready)
            return len(ready) > fired, fired

        def close(self) -> None:
            self._poll.close()


class _SelectorWaiter:
    def __init__(self, fd: int, sentinel: int | None) -> None:
        self._sentinel = sentinel
        self._selector = selectors.DefaultSelector()
        self._selector.register(fd, selectors.EVENT_READ)
        if sentinel is not None:
            self._selector.register(sentinel, selectors.EVENT_READ)

    def wait(self, timeout: float | None) -> tuple[bool, bool]:
        ready = self._selector.select(None if timeout is None else max(timeout, 0.0))
        fired = any(key.fd == self._sentinel for key, _ in ready)
        return len(ready) > fired, fired

    def close(self) -> None:
        self._selector.close()
