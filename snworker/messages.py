"""The typed messages that cross the pipe between the parent and the worker, and their encoding.

A message is a head and, for requests and results, a body. The head is a stdlib pickle of a
tuple of builtins: the message's tag, whether it has a body, then its other fields in order. A
body (request or response payload) is raw bytes, never copied into or out of a pickle. Heads are
decoded by an unpickler that refuses every global: a compromised parent cannot make the worker
run code by sending it a crafted pickle, and nothing but plain data can cross either way.

How a head and a body are framed on the pipe is the business of `snworker.pipes`: each framing
writes `PREFIX` (head length, body length), the head, then the body.
"""

from __future__ import annotations

import io
import pickle
import struct
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any, ClassVar, TypeAlias

Pairs: TypeAlias = tuple[tuple[str, str], ...]


# --- parent to worker -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connect:
    """Start the authorization flow; answered by `OpenBrowser`, then `Connected` or `Error`."""

    id: int
    instance_url: str
    client_id: str
    redirect_uris: tuple[str, ...]  # registered loopback URLs; the first free port is used
    scopes: tuple[str, ...]
    authorization_timeout: float
    request_timeout: float
    policy: tuple[Any, ...]
    log_level: int
    proxy: str | None = None
    ca_bundle: str | None = None
    grant: tuple[Any, ...] = ()  # an unattended grant (grants.py), else the browser consent
    access: tuple[Any, ...] = ()  # the access Policy the worker enforces; () for none
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
    raise_for_status: bool = True  # False: a 4xx/5xx answer comes back as a Result too
    retry: bool = True  # False: one attempt, no retries in the worker (the caller has its own)
    # 0: the answer is one Result (or Error). Above 0: a Head, then the body in Chunks, at most
    # `window` bytes ahead of the Credits the parent returns as it consumes them.
    window: int = 0
    # None: the body, if any, is `body`. Else it follows in Chunks, sent within the Credits the
    # worker grants: `upload` bytes in all, or UNKNOWN_LENGTH (the worker sends it chunked).
    upload: int | None = None
    body: bytes | None = field(default=None, repr=False)
    TAG: ClassVar[int] = 2


@dataclass(frozen=True, slots=True)
class Cancel:
    """The caller stopped waiting for request `id`: stop retrying it and drop its answer."""

    id: int
    TAG: ClassVar[int] = 3


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Revoke the grant within `timeout` seconds, wipe the tokens and exit (an agent: detach)."""

    id: int
    timeout: float
    TAG: ClassVar[int] = 4


@dataclass(frozen=True, slots=True)
class Control:
    """A command for an agent: "status" (answered by a Result with a JSON body) or "stop"."""

    id: int
    command: str
    TAG: ClassVar[int] = 10


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of the body of stream `id`, either way: the parent's upload, the worker's answer.

    `last` ends the body. The body is raw bytes, framed as any message body, never pickled.
    """

    id: int
    last: bool
    body: bytes = field(default=b"", repr=False)
    TAG: ClassVar[int] = 12


@dataclass(frozen=True, slots=True)
class Credit:
    """The receiver of stream `id` consumed `size` more bytes: the sender may send that many."""

    id: int
    size: int
    TAG: ClassVar[int] = 13


# --- worker to parent -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Head:
    """The status and headers of a streamed answer to request `id`; its body follows in Chunks."""

    id: int
    status: int
    headers: Pairs
    TAG: ClassVar[int] = 11


@dataclass(frozen=True, slots=True)
class OpenBrowser:
    """Ask the parent to show the consent page at `url` to the user."""

    id: int
    url: str
    TAG: ClassVar[int] = 5


@dataclass(frozen=True, slots=True)
class Connected:
    """Authorization finished; `user` is the signed-in sys_user record, if readable.

    `pid` is the process that holds the tokens; `hardening` pairs each OS protection with ""
    when it was applied, or why it was not.
    """

    id: int
    instance_url: str
    user: dict[str, str] | None
    pid: int = 0
    hardening: Pairs = ()
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


ToWorker: TypeAlias = Connect | Request | Cancel | Disconnect | Control | Chunk | Credit
FromWorker: TypeAlias = OpenBrowser | Connected | Result | Error | Log | Head | Chunk | Credit
Message: TypeAlias = ToWorker | FromWorker

_TYPES: tuple[type[Any], ...] = (
    Connect, Request, Cancel, Disconnect, OpenBrowser, Connected, Result, Error, Log, Control,
    Head, Chunk, Credit,
)

# Request.upload for a body of unknown length.
UNKNOWN_LENGTH = -1


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


# How a worker that ends on its own says why, in its exit status.
EXIT_PROTOCOL = 3  # it read a frame that was not a message: the stream could not be trusted
EXIT_REFUSED = 4  # it refused to start (it was being traced, or its settings were unusable)


def describe_status(code: int) -> str:
    """A worker's own exit status in words."""
    if code == EXIT_PROTOCOL:
        return ("the snworker worker process stopped: it received a message it could not read "
                f"(exit code {code}); something in this process wrote to its pipe. Call "
                "snworker.connect() for a new connection.")
    if code == EXIT_REFUSED:
        return (f"the snworker worker process refused to start (exit code {code}); its log "
                "(snworker.enable_logging('DEBUG')) says why.")
    return (f"the snworker worker process exited unexpectedly with code {code}; its log "
            "(snworker.enable_logging('DEBUG')) may say why. Call snworker.connect() for a new "
            "connection.")


class ProtocolError(ValueError):
    """A frame that is not a well-formed message: the stream can no longer be trusted."""


PREFIX = struct.Struct("!IQ")  # head length, body length
MAX_HEAD = 1 << 20
MAX_BODY = 1 << 30


def encode(message: Message) -> tuple[bytes, bytes | None]:
    """The pickled head of `message`, and its body if it has one."""
    codec = _BY_CLASS[type(message)]
    body: bytes | None = message.body if codec.has_body else None  # type: ignore[union-attr]
    head = pickle.dumps((message.TAG, body is not None, *codec.head(message)), protocol=5)
    return head, body


def sizes(prefix: bytes) -> tuple[int, int]:
    """Head and body length from a frame's prefix; ProtocolError past the limits."""
    head_size, body_size = PREFIX.unpack(prefix)
    if head_size > MAX_HEAD or body_size > MAX_BODY:
        raise ProtocolError(f"a frame over the size limit ({head_size} + {body_size} bytes)")
    return head_size, body_size


class _PlainData(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused global {module}.{name} in a message")


def read_head(head: bytes) -> tuple[Any, ...]:
    """The values in a message head: (tag, has body, fields...)."""
    try:
        values = _PlainData(io.BytesIO(head)).load()
    except Exception as exc:  # any error at all: the bytes are not a message
        raise ProtocolError(f"an unreadable message head: {exc}") from None
    if not isinstance(values, tuple) or len(values) < 2:
        raise ProtocolError("a message head that is not a tuple")
    return values


def build(values: tuple[Any, ...], body: bytes | None) -> Message:
    """The message of a head's values and its body (None when the frame had none)."""
    if bool(values[1]) != (body is not None):
        raise ProtocolError("a body where the head says none, or none where it says one")
    try:
        codec = _BY_TAG[values[0]]
        fields_ = values[2:]
        message: Message = codec.cls(*fields_, body) if codec.has_body else codec.cls(*fields_)
    except (KeyError, IndexError, TypeError) as exc:
        raise ProtocolError(f"malformed message: {exc}") from None
    return message
