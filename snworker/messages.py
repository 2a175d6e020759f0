"""The typed messages that cross the pipe between the parent and the worker, and their framing.

A message is one frame holding a stdlib pickle of a tuple of builtins: the message's tag, whether
a body frame follows, then its fields in order. A body (request or response payload) travels as a
second, raw frame so that it is never copied into or out of a pickle. Frames are decoded by an
unpickler that refuses every global: a compromised parent cannot make the worker run code by
sending it a crafted pickle, and nothing but plain data can cross either way.
"""

from __future__ import annotations

import io
import pickle
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
    """The part of a `multiprocess` connection the framing uses."""

    def send_bytes(self, buf: bytes, offset: int = ..., size: int | None = ...) -> None: ...
    def recv_bytes(self, maxlength: int | None = ...) -> bytes: ...


def encode(message: Message) -> tuple[bytes, bytes | None]:
    """The frames for `message`: the pickled head, and the body if the message has one."""
    codec = _BY_CLASS[type(message)]
    body: bytes | None = message.body if codec.has_body else None  # type: ignore[union-attr]
    head = pickle.dumps((message.TAG, body is not None, *codec.head(message)), protocol=5)
    return head, body


def send(conn: Connection, message: Message) -> None:
    """Write `message` to `conn`. The caller holds the connection's send lock."""
    head, body = encode(message)
    conn.send_bytes(head)
    if body is not None:
        conn.send_bytes(body)


class _PlainData(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused global {module}.{name} in a message")


def receive(conn: Connection) -> Message:
    """Read one message from `conn`; raises EOFError when the peer is gone."""
    values = _PlainData(io.BytesIO(conn.recv_bytes())).load()
    try:
        codec = _BY_TAG[values[0]]
        body = conn.recv_bytes() if values[1] else None
        fields_ = values[2:]
        message: Message = codec.cls(*fields_, body) if codec.has_body else codec.cls(*fields_)
    except (KeyError, IndexError, TypeError) as exc:
        raise pickle.UnpicklingError(f"malformed message: {exc}") from None
    return message
