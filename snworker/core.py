"""What the sync and async drivers share, and that does no I/O (the sans-I/O core).

    argument checks, building a Request      prepare()
    an answer to a response or an exception  conclude(), consented()
    pending calls by id, who owns an answer  Calls
    what each message from the worker means  route()
    why the worker is gone, in words         worker_failure()
    the grant's state across reconnect()     GrantState
    what a connection shows about itself     ConnectionFacts

`snworker.connection` drives it with threads (leader/followers on the pipe), `snworker.aio`
with an event loop. Neither repeats a rule found here.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from snworker import spawn
from snworker.checks import IDEMPOTENT
from snworker.entities.Core import CurrentUser
from snworker.errors import (
    AuthorizationError,
    AuthTokenExpiredError,
    ConnectionClosedError,
    InvalidRequestError,
    RequestTimeoutError,
    ServiceNowError,
    WorkerCrashedError,
    WorkerError,
    WorkerStartError,
    from_error_fields,
)
from snworker.messages import (
    Chunk,
    Connect,
    Connected,
    Credit,
    Error,
    FromWorker,
    Head,
    Log,
    Message,
    OpenBrowser,
    Pairs,
    Request,
    Result,
)
from snworker.response import ApiResponse

logger = logging.getLogger("snworker")

S = TypeVar("S")

CLOSED = "the connection is closed; call snworker.connect() for a new one"

# Beyond `authorization_timeout`, a consent may take this long for start-up, the code exchange
# and reading the current user.
CONNECT_GRACE = 30.0
# The worker's own deadline answers first when it can: it knows whether the network or the
# instance was slow.
DEADLINE_GRACE = 0.25


# --- requests -----------------------------------------------------------------------------


def prepare(ident: int, path: object, http_method: object, data: Any,
            suppress_response_body: bool, headers: Mapping[str, str] | None,
            params: Mapping[str, Any] | None, deadline: float, raise_for_status: bool = True,
            retry: bool = True, window: int = 0, upload: int | None = None) -> Request:
    """The Request for execute_api_request()'s arguments; InvalidRequestError if malformed.

    `window` > 0 asks for the answer's body in pieces (stream_api_request); `upload` is the
    length of a body that follows in pieces (or UNKNOWN_LENGTH), `data` then unused.
    """
    return Request(
        ident,
        http_method.upper() if isinstance(http_method, str) else _bad_method(http_method),
        path if isinstance(path, str) else _bad_path(path),
        param_pairs(params),
        header_pairs(headers),
        bool(suppress_response_body),
        deadline,
        bool(raise_for_status),
        bool(retry),
        window,
        upload,
        None if upload is not None else encode_body(data),
    )


def conclude(request: Request, answer: FromWorker, state: GrantState) -> ApiResponse[Any]:
    """The response a Result carries, or the exception an Error describes (raised)."""
    if type(answer) is Result:
        return ApiResponse(answer.status, answer.headers, answer.body or b"")
    if type(answer) is Error:
        raise error_for(answer, state)
    raise ServiceNowError(f"unexpected answer from the worker: {type(answer).__name__}")


def error_for(answer: Error, state: GrantState) -> ServiceNowError:
    """The exception an Error message describes; an expired grant is remembered in `state`."""
    error = error_of(answer)
    if isinstance(error, AuthTokenExpiredError):
        state.expired = error
    return error


def timed_out(request: Request) -> RequestTimeoutError:
    """The error of a call whose deadline passed in the parent."""
    return RequestTimeoutError(f"{request.method} {short(request.path)} took longer than "
                               f"{request.timeout:g} s")


def interrupted_note(request: Request) -> str:
    """What a cancelled or interrupted call's exception adds: did the request take effect?"""
    where = f"{request.method} {short(request.path)}"
    if request.method in IDEMPOTENT:
        return f"snworker: {where} was cancelled; the worker aborted it"
    return (f"snworker: {where} was cancelled and the worker aborted it; if the request had "
            "reached the instance it may have taken effect there")


def error_of(answer: Error) -> ServiceNowError:
    """The exception an Error message describes (the one place the parent maps them)."""
    return from_error_fields(answer.kind, answer.message, answer.status, answer.detail,
                             dict(answer.headers))


def consented(message: Connect, answer: FromWorker | None) -> Connected:
    """The outcome of a consent: Connected, or the error it ended with (raised)."""
    if answer is None:
        raise AuthorizationError(
            f"the worker did not finish authorization within "
            f"{message.authorization_timeout:g} s", "timeout")
    if type(answer) is Error:
        raise error_of(answer)
    if type(answer) is not Connected:
        raise ServiceNowError(f"unexpected answer from the worker: {type(answer).__name__}")
    return answer


def consent_deadline(message: Connect) -> float:
    """How long the parent waits for a consent's answer."""
    return message.authorization_timeout + message.request_timeout + CONNECT_GRACE


def short(path: str) -> str:
    """A path cut to fit an error message."""
    return path if len(path) <= 80 else path[:77] + "..."


def param_pairs(params: Mapping[str, Any] | None) -> Pairs:
    """Query parameters as pairs of strings: lists repeat, booleans are true/false."""
    if not params:
        return ()
    if not isinstance(params, Mapping):
        raise InvalidRequestError("params must be a mapping")
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if not isinstance(key, str):
            raise InvalidRequestError(f"parameter names must be strings, not {key!r}")
        values = value if isinstance(value, list | tuple) else (value,)
        for item in values:
            if item is None:
                continue
            if isinstance(item, bool):
                pairs.append((key, "true" if item else "false"))
            elif isinstance(item, str | int | float):
                pairs.append((key, str(item)))
            else:
                raise InvalidRequestError(
                    f"parameter {key!r} must be a string, number or boolean, not "
                    f"{type(item).__name__}"
                )
    return tuple(pairs)


def header_pairs(headers: Mapping[str, str] | None) -> Pairs:
    """Extra request headers as pairs of strings (the worker decides which it allows)."""
    if not headers:
        return ()
    if not isinstance(headers, Mapping):
        raise InvalidRequestError("headers must be a mapping of strings")
    pairs = tuple(headers.items())
    for key, value in pairs:
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidRequestError(f"header {key!r} must be a string with a string value")
    return pairs


def encode_body(data: Any) -> bytes | None:
    """Bytes as they are, anything else as compact JSON."""
    if data is None:
        return None
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"the request body is not JSON-serialisable: {exc}") from None


def _bad_method(method: object) -> str:
    raise InvalidRequestError(f"http_method must be a string, not {type(method).__name__}")


def _bad_path(path: object) -> str:
    raise InvalidRequestError(f"path must be a string, not {type(path).__name__}")


# --- the grant ----------------------------------------------------------------------------


class GrantState:
    """The connection's grant as the parent knows it: expired or not, and how often renewed.

    After AuthTokenExpiredError every call fails the same way until a reconnect() succeeds. A
    caller that met the error remembers the generation it met it in: when it then calls
    reconnect() and the generation has moved on, another caller's consent already renewed
    the grant and none is needed (reconnect() is single-flight).
    """

    __slots__ = ("expired", "generation", "user")

    def __init__(self, user: dict[str, str] | None) -> None:
        self.user = user
        self.expired: AuthTokenExpiredError | None = None
        self.generation = 0

    def check(self) -> None:
        """Raise the AuthTokenExpiredError the grant ended with, if it did."""
        if self.expired is not None:
            raise AuthTokenExpiredError(str(self.expired))

    def renewed_since(self, seen: int | None) -> bool:
        """True when a consent finished after the caller met the expired grant in `seen`."""
        return seen is not None and seen < self.generation and self.expired is None

    def renew(self, answer: Connected) -> None:
        """A consent for this connection succeeded."""
        self.user = answer.user
        self.expired = None
        self.generation += 1


# --- pending calls and what the worker says --------------------------------------------------


class Calls(Generic[S]):
    """Calls waiting for an answer, by id. Whoever pops a call owns its outcome.

    Not thread-safe: the sync driver holds its lock around it; the async one uses it on the
    loop's thread only.
    """

    __slots__ = ("_pending", "broken", "heard")

    def __init__(self) -> None:
        self._pending: dict[int, S] = {}
        self.broken: WorkerError | None = None  # set once: every later call fails with it
        self.heard = False  # a first message came: the worker started

    def add(self, ident: int, call: S) -> None:
        """Park `call` until its answer; raises the error the channel broke with, if it did."""
        if self.broken is not None:
            raise self.broken
        self._pending[ident] = call

    def pop(self, ident: int) -> S | None:
        """The call waiting for `ident`, taken out; None if nobody waits (a late answer)."""
        return self._pending.pop(ident, None)

    def get(self, ident: int) -> S | None:
        """The call waiting for `ident`, left in (a stream's messages before its last)."""
        return self._pending.get(ident)

    def fail_all(self, error: WorkerError) -> list[S]:
        """Mark the channel broken (the first error stays) and take every pending call."""
        if self.broken is None:
            self.broken = error
        calls = list(self._pending.values())
        self._pending.clear()
        return calls

    def __len__(self) -> int:
        return len(self._pending)


class Sink(Protocol):
    """What a driver does with the worker's messages."""

    def deliver(self, ident: int, outcome: FromWorker) -> None:
        """Hand `outcome` to the call waiting for `ident`, if any."""
        ...

    def open_browser(self, url: str) -> None:
        """Show the consent page, off the thread (or loop) that reads the pipe."""
        ...

    def refused(self, error: WorkerError) -> None:
        """The worker refused to start: fail every call with `error`."""
        ...

    def worker_pid(self, pid: int) -> None:
        """The process that holds the tokens."""
        ...


def route(message: Message, sink: Sink) -> None:
    """Do what one message from the worker asks."""
    match message:
        case Error(id=0):  # the worker refused to start
            sink.refused(WorkerStartError(message.message))
        case Connected():
            if message.pid:
                sink.worker_pid(message.pid)
            sink.deliver(message.id, message)
        case Result() | Error() | Head() | Chunk() | Credit():
            sink.deliver(message.id, message)
        case OpenBrowser():
            sink.open_browser(message.url)
        case Log():
            logging.getLogger(message.logger).log(message.level, "%s", message.message)
        case _:  # a parent-bound stream never carries parent-to-worker messages
            logger.warning("snworker: unexpected message %s", type(message).__name__)


def is_last(message: FromWorker) -> bool:
    """True when `message` ends its call: an answer, an error, a stream's last Chunk."""
    if type(message) is Chunk:
        return message.last
    return type(message) not in (Head, Credit)


def worker_failure(closing: bool, attached: bool, heard: bool,
                   exitcode: int | None) -> WorkerError:
    """Why the pipe to the worker ended, for every call still waiting."""
    if closing:
        return ConnectionClosedError("the connection is closed")
    if attached:
        return WorkerCrashedError("the snworker agent is gone (its socket closed); start "
                                  "it again, or connect() without it")
    if not heard:
        return WorkerStartError(f"the worker did not start: {spawn.describe_exit(exitcode)}")
    return WorkerCrashedError(spawn.describe_exit(exitcode), exitcode)


@dataclass(frozen=True, slots=True)
class WorkerHardening:
    """What the worker's OS hardening applied, and what it could not, with the reason."""

    platform: str
    applied: tuple[str, ...]
    not_applied: tuple[tuple[str, str], ...]

    @classmethod
    def from_report(cls, report: Pairs) -> WorkerHardening:
        """From the (protection, "" or reason) pairs the worker sends."""
        return cls(sys.platform, tuple(name for name, why in report if not why),
                   tuple((name, why) for name, why in report if why))

    def __contains__(self, protection: object) -> bool:
        return protection in self.applied


class _Channel(Protocol):
    @property
    def pid(self) -> int: ...


class ConnectionFacts:
    """What the sync and async connections show about themselves (no I/O)."""

    _instance_url: str
    _client_id: str
    _state: GrantState
    _closed: bool
    _hardening: WorkerHardening
    _channel: _Channel

    @property
    def instance_url(self) -> str:
        """The instance's origin, e.g. "https://dev12345.service-now.com"."""
        return self._instance_url

    @property
    def client_id(self) -> str:
        """The OAuth client id the connection was authorized for."""
        return self._client_id

    @property
    def current_user(self) -> CurrentUser | None:
        """The signed-in user's sys_id, user_name and name; None if the instance hid them."""
        user = self._state.user
        if user is None:
            return None
        return CurrentUser(sys_id=user.get("sys_id", ""), user_name=user.get("user_name", ""),
                           name=user.get("name", ""))

    @property
    def worker_pid(self) -> int | None:
        """The worker process's id (for monitoring; it cannot be attached to)."""
        return self._channel.pid

    @property
    def worker_hardening(self) -> WorkerHardening:
        """What the worker's OS hardening applied and could not."""
        return self._hardening

    @property
    def closed(self) -> bool:
        """True once `disconnect()` has been called."""
        return self._closed
