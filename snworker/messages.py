"""The typed messages that cross the pipe between the parent and the worker, and their framing.

A message is one frame: a 12-byte prefix (head length, body length), the head, then the body.
The head is a stdlib pickle of a tuple of builtins: the message's tag, whether it has a body,
then its other fields in order. A body (request or response payload) is raw bytes, never copied
into or out of a pickle. Heads are decoded by an unpickler that refuses every global: a
compromised parent cannot make the worker run code by sending it a crafted pickle, and nothing
but plain data can cross either way.

Framing is done here on the pipe's file descriptor rather than with the connection's own
send_bytes/recv_bytes: a small message then costs one write and usually one read, where the
connection's framing costs two reads per frame and two frames per message with a body.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any, ClassVar, Protocol, TypeAlias

Pairs: TypeAlias = tuple[tuple[str, str], ...]


# --- parent to worker -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connect:
    """Start the authorization flow; answered by `OpenBrowser`, then `Connected` or `Error`."""

    id: int
    instance_url: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    authorization_timeout: float
    request_timeout: float
    policy: tuple[Any, ...]
    log_level: int
    TAG: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request to the instance; answered by `Result` or `Error` with the same id."""

    id: int
    method: str
    path: str
    params: Pairs
    headers: Pairs
    suppress_response_body: bool
    timeout: float
    body: bytes | None = field(default=None, repr=False)
    TAG: ClassVar[int] = 2


@dataclass(frozen=True, slots=True)
class Cancel:
    """The caller stopped waiting for request `id`: stop retrying it and drop its answer."""

    id: int
    TAG: ClassVar[int] = 3


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Revoke the grant within `timeout` seconds, wipe the tokens and exit."""

    id: int
    timeout: float
    TAG: ClassVar[int] = 4


# --- worker to parent -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenBrowser:
    """Ask the parent to show the consent page at `url` to the user."""

    id: int
    url: str
    TAG: ClassVar[int] = 5


@dataclass(frozen=True, slots=True)
class Connected:
    """Authorization finished; `user` is the signed-in sys_user record, if readable."""

    id: int
    instance_url: str
    user: dict[str, str] | None
    TAG: ClassVar[int] = 6


@dataclass(frozen=True, slots=True)
class Result:
    """The instance's answer to request `id` (any status the caller should see)."""

    id: int
    status: int
    headers: Pairs
    body: bytes | None = field(default=None, repr=False)
    TAG: ClassVar[int] = 7


@dataclass(frozen=True, slots=True)
class Error:
    """Request `id` failed; the parent rebuilds the exception from `kind` (see errors.py)."""

    id: int
    kind: str
    message: str
    status: int | None = None
    detail: str | None = None
    headers: Pairs = ()
    TAG: ClassVar[int] = 8


@dataclass(frozen=True, slots=True)
class Log:
    """A log record from the worker, already redacted, for the parent's `logging`."""

    id: int
    level: int
    logger: str
    message: str
    TAG: ClassVar[int] = 9


ToWorker: TypeAlias = Connect | Request | Cancel | Disconnect
FromWorker: TypeAlias = OpenBrowser | Connected | Result | Error | Log
Message: TypeAlias = ToWorker | FromWorker

_TYPES: tuple[type[Any], ...] = (
    Connect, Request, Cancel, Disconnect, OpenBrowser, Connected, Result, Error, Log
)


class _Codec:
    __slots__ = ("cls", "has_body", "head")

    def __init__(self, cls: type[Any]) -> None:
        names = [f.name for f in fields(cls)]
        self.cls = cls
        self.has_body = "body" in names
        head = [n for n in names if n != "body"]
        # attrgetter of one name returns the value, not a 1-tuple: keep the shape uniform.
        getter = attrgetter(*head)
        self.head = getter if len(head) > 1 else (lambda m: (getter(m),))


_BY_CLASS: dict[type[Any], _Codec] = {cls: _Codec(cls) for cls in _TYPES}
_BY_TAG: dict[int, _Codec] = {cls.TAG: _BY_CLASS[cls] for cls in _TYPES}


class Connection(Protocol):
    """The part of a `multiprocess` connection the framing uses: its file descriptor."""

    def fileno(self) -> int: ...


_PREFIX = struct.Struct("!IQ")  # head length, body length
# Below this, prefix, head and body are joined and written at once; above it the copy would
# cost more than a second write.
_JOIN_LIMIT = 1 << 16
_READ_SIZE = 1 << 16
MAX_HEAD = 1 << 20


def encode(message: Message) -> tuple[bytes, bytes | None]:
    """The pickled head of `message`, and its body if it has one."""
    codec = _BY_CLASS[type(message)]
    body: bytes | None = message.body if codec.has_body else None  # type: ignore[union-attr]
    head = pickle.dumps((message.TAG, body is not None, *codec.head(message)), protocol=5)
    return head, body


def send(conn: Connection, message: Message) -> None:
    """Write `message` to `conn`. The caller holds the connection's send lock."""
    head, body = encode(message)
    size = 0 if body is None else len(body)
    prefix = _PREFIX.pack(len(head), size)
    fd = conn.fileno()
    if size + len(head) <= _JOIN_LIMIT:
        frame = prefix + head + body if body else prefix + head
        written = os.write(fd, frame)
        if written < len(frame):  # only when a signal interrupts a write already under way
            _write_all(fd, [frame[written:]])
    else:
        _write_all(fd, [prefix + head, body or b""])


def _write_all(fd: int, buffers: list[bytes]) -> None:
    views = [memoryview(b) for b in buffers if b]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


class _PlainData(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused global {module}.{name} in a message")


def _message(values: Any, body: bytes | None) -> Message:
    try:
        codec = _BY_TAG[values[0]]
        fields_ = values[2:]
        message: Message = codec.cls(*fields_, body) if codec.has_body else codec.cls(*fields_)
    except (KeyError, IndexError, TypeError) as exc:
        raise pickle.UnpicklingError(f"malformed message: {exc}") from None
    return message


class Reader:
    """Reads framed messages from one end of the pipe.

    With `read_ahead`, one read takes whatever the pipe holds (often several small messages),
    kept in a buffer for the next call. Not thread-safe: one thread reads at a time.
    """

    def __init__(self, conn: Connection, read_ahead: bool = True) -> None:
        self._fd = conn.fileno()
        self._read_ahead = read_ahead
        self._buffer = bytearray()
        self._start = 0

    @property
    def buffered(self) -> bool:
        """True when bytes read ahead wait in the buffer (select() would not see them)."""
        return len(self._buffer) > self._start

    def receive(self) -> Message:
        """The next message; raises EOFError when the peer is gone."""
        head_size, body_size = _PREFIX.unpack(self._take(_PREFIX.size))
        if head_size > MAX_HEAD:
            raise pickle.UnpicklingError("a message head over the size limit")
        values = _PlainData(io.BytesIO(self._take(head_size))).load()
        if not isinstance(values, tuple) or len(values) < 2:
            raise pickle.UnpicklingError("a message head that is not a tuple")
        if values[1]:
            body: bytes | None = self._take(body_size)
        elif body_size:
            raise pickle.UnpicklingError("a body where the head says none")
        else:
            body = None
        return _message(values, body)

    def _take(self, size: int) -> bytes:
        buffer = self._buffer
        missing = size - (len(buffer) - self._start)
        if missing > 0:
            if missing > _READ_SIZE:
                return self._take_large(size)
            while missing > 0:
                data = os.read(self._fd, _READ_SIZE if self._read_ahead else missing)
                if not data:
                    raise EOFError
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
        # Read straight into one buffer of the right size: no growing, no re-copying.
        out = bytearray(size)
        view = memoryview(out)
        filled = len(self._buffer) - self._start
        view[:filled] = self._buffer[self._start:]
        self._buffer.clear()
        self._start = 0
        while filled < size:
            count = os.readv(self._fd, [view[filled:]])
            if not count:
                raise EOFError
            filled += count
        view.release()
        return bytes(out)


def receive(conn: Connection) -> Message:
    """Read exactly one message from `conn` (no read-ahead: for one-off reads)."""
    return Reader(conn, read_ahead=False).receive()
