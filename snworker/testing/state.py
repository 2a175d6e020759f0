"""Everything a stub instance remembers, behind one lock, and the control operations on it.

The control operations are plain functions of the state taking and returning JSON values.
`StubServiceNow` calls them directly and the `/_stub/<operation>` endpoints call the same
functions, so an in-thread stub and a stub in another process behave alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final

from snworker.testing import platform
from snworker.testing.faults import FaultPlan, Injection
from snworker.testing.oauth import AuthorizationServer, Client, ConsentMode
from snworker.testing.seed import seed_records, user_sys_id
from snworker.testing.tables import TableError, TableStore

CONSENT_MODES: Final = ("ask", "allow", "deny")


@dataclass(frozen=True, slots=True)
class StubConfig:
    """The constructor's settings; `reset()` returns to them."""

    host: str = "127.0.0.1"
    port: int = 0
    client_id: str = "snworker-test"
    redirect_uri: str = "http://127.0.0.1:0/callback"
    app_name: str = "snworker test app"
    access_lifespan: float = platform.DEFAULT_ACCESS_LIFESPAN
    refresh_lifespan: float = platform.DEFAULT_REFRESH_LIFESPAN
    pkce_required: bool = True
    consent: ConsentMode = "ask"
    strict_redirect: bool = False
    seed: bool = True

    def __post_init__(self) -> None:
        if self.consent not in CONSENT_MODES:
            raise ValueError(f"consent must be one of {CONSENT_MODES}, not {self.consent!r}")

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON values (to start the same stub in another process)."""
        return asdict(self)


class ControlError(ValueError):
    """A control operation was called with arguments it cannot use."""


class StubState:
    """Clock, OAuth server, tables, faults and the request log of one stub instance."""

    def __init__(self, config: StubConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.user_sys_id = user_sys_id(platform.SIGNED_IN_USER_NAME)
        self._start_fresh()

    def _start_fresh(self) -> None:
        config = self.config
        self.clock_offset = 0.0
        self.oauth = AuthorizationServer(
            access_lifespan=config.access_lifespan,
            refresh_lifespan=config.refresh_lifespan,
            consent=config.consent,
            strict_redirect=config.strict_redirect,
        )
        self.oauth.register_client(
            Client(config.client_id, (config.redirect_uri,), config.app_name, config.pkce_required)
        )
        self.tables = TableStore(seed_records() if config.seed else ())
        self.faults = FaultPlan()
        self.request_log: list[dict[str, object]] = []
        self.revocation_count = 0

    def now(self) -> float:
        """The stub's clock: wall time moved on by every `advance()`."""
        return time.time() + self.clock_offset

    def timestamp(self) -> str:
        """The stub's clock as the platform writes `sys_updated_on` (UTC)."""
        return datetime.fromtimestamp(self.now(), UTC).strftime(platform.DATETIME_FORMAT)

    def control(self, operation: str, arguments: Mapping[str, Any]) -> object:
        """Run a control operation under the lock; bad arguments raise `ControlError`."""
        function = OPERATIONS.get(operation.replace("-", "_"))
        if function is None:
            raise ControlError(f"unknown control operation {operation!r}")
        with self.lock:
            try:
                return function(self, **arguments)
            except TableError as error:
                raise ControlError(f"{error.message}: {error.detail}") from error
            except (TypeError, ValueError, KeyError) as error:
                raise ControlError(f"{operation}: {error}") from error


Operation = Callable[..., object]
OPERATIONS: dict[str, Operation] = {}


def _operation(function: Operation) -> Operation:
    OPERATIONS[function.__name__] = function
    return function


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ControlError(f"{name} must be a number")
    return float(value)


@_operation
def config(state: StubState) -> dict[str, object]:
    """The settings the stub was started with."""
    return state.config.to_json()


@_operation
def advance(state: StubState, seconds: float) -> float:
    """Move the stub's clock forward; returns the new time."""
    if _number(seconds, "seconds") < 0:
        raise ControlError("the clock only moves forward")
    state.clock_offset += float(seconds)
    return state.now()


@_operation
def expire_access_tokens(state: StubState) -> None:
    """Every access token issued so far is expired."""
    state.oauth.expire_access_tokens(state.now())


@_operation
def revoke_refresh_tokens(state: StubState) -> None:
    """Every grant is revoked: its refresh token and its access tokens stop working."""
    state.oauth.revoke_refresh_tokens()


@_operation
def set_lifespans(
    state: StubState, access: float | None = None, refresh: float | None = None
) -> None:
    """Lifespans, in seconds, of tokens issued from now on (None leaves one as it is)."""
    if access is not None:
        state.oauth.access_lifespan = _number(access, "access")
    if refresh is not None:
        state.oauth.refresh_lifespan = _number(refresh, "refresh")


@_operation
def set_consent(state: StubState, mode: str) -> None:
    """What the consent step does: "ask" shows the page, "allow" and "deny" decide at once."""
    if mode not in CONSENT_MODES:
        raise ControlError(f"consent must be one of {CONSENT_MODES}")
    state.oauth.consent = mode  # type: ignore[assignment]  # checked just above


@_operation
def inject(
    state: StubState,
    status: int | None = 503,
    times: int = 2,
    path_prefix: str = "/api/now",
    retry_after: float | None = None,
    delay: float = 0.0,
    drop: bool = False,
    method: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Queue a fault for the next `times` requests under `path_prefix`."""
    if status is not None and not (isinstance(status, int) and 100 <= status <= 599):
        raise ControlError("status must be an HTTP status or None")
    if headers is not None and not isinstance(headers, Mapping):
        raise ControlError("headers must be an object of names to values")
    state.faults.inject(
        Injection(
            status=status,
            times=int(_number(times, "times")),
            path_prefix=str(path_prefix),
            retry_after=None if retry_after is None else _number(retry_after, "retry_after"),
            delay=_number(delay, "delay"),
            drop=bool(drop),
            method=None if method is None else str(method).upper(),
            headers={str(k): str(v) for k, v in (headers or {}).items()},
        )
    )


@_operation
def rate_limit(
    state: StubState, limit: int | None, window: float = 3600.0, path_prefix: str = "/api/now"
) -> None:
    """Limit requests under `path_prefix` to `limit` per `window` seconds; None removes it."""
    if limit is not None:
        limit = int(_number(limit, "limit"))
    state.faults.limit_rate(limit, _number(window, "window"), str(path_prefix))


@_operation
def grant_counts(state: StubState) -> dict[str, int]:
    """Successful token grants by grant type."""
    return dict(state.oauth.grant_counts)


@_operation
def revocation_count(state: StubState) -> int:
    """How many revocation requests arrived."""
    return state.revocation_count


@_operation
def requests(state: StubState) -> list[dict[str, object]]:
    """Every request received, in order, secrets masked."""
    return [dict(entry) for entry in state.request_log]


@_operation
def issued_secrets(state: StubState) -> list[str]:
    """Every token and code issued and every PKCE verifier received."""
    return list(state.oauth.issued_secrets)


@_operation
def insert(state: StubState, table: str, record: Mapping[str, object]) -> dict[str, str]:
    """Store a record (creating the table if it is new) and return it as stored."""
    if not isinstance(record, Mapping):
        raise ControlError("record must be a JSON object")
    state.tables.create_table(str(table))
    return dict(
        state.tables.insert(str(table), record, state.timestamp(), platform.SIGNED_IN_USER_NAME)
    )


@_operation
def records(state: StubState, table: str) -> list[dict[str, str]]:
    """The records of a table and of the tables that extend it."""
    return state.tables.records(str(table))


@_operation
def users(state: StubState) -> list[dict[str, str]]:
    """The sys_user records."""
    return state.tables.records("sys_user")


@_operation
def reset(state: StubState) -> None:
    """Back to a fresh stub: seed data, no tokens, no faults, clock and settings as built."""
    state._start_fresh()


@_operation
def register_client(
    state: StubState,
    client_id: str,
    redirect_uris: list[str],
    app_name: str | None = None,
    pkce_required: bool = True,
) -> None:
    """Register another OAuth application."""
    if isinstance(redirect_uris, str) or not redirect_uris:
        raise ControlError("redirect_uris must be a non-empty list")
    state.oauth.register_client(
        Client(
            str(client_id),
            tuple(str(uri) for uri in redirect_uris),
            state.config.app_name if app_name is None else str(app_name),
            bool(pkce_required),
        )
    )
