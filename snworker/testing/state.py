"""Everything a stub instance remembers, behind one lock.

The control operations (`operations.py`) are plain functions of this state taking and returning
JSON values. `StubServiceNow` calls them directly and the `/_stub/<operation>` endpoints call the
same functions, so an in-thread stub and a stub in another process behave alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final

from snworker.testing import platform
from snworker.testing.assertions import AssertionChecker
from snworker.testing.faults import FaultPlan
from snworker.testing.oauth import AuthorizationServer, Client, ConsentMode, KeptGrant
from snworker.testing.schema import Schema
from snworker.testing.scripted_api import ScriptedRoutes
from snworker.testing.seed import schema_snapshot, seed_snapshot, user_sys_id
from snworker.testing.store import ApiError, Caller, RecordStore

if TYPE_CHECKING:
    from snworker.testing.import_api import Transform

CONSENT_MODES: Final = ("ask", "allow", "deny")
# Enough handler threads for 32 concurrent clients plus control calls; they start on demand.
DEFAULT_THREADS: Final = 40


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
    auth: tuple[str, ...] = platform.DEFAULT_AUTH
    client_secret: str | None = field(default=None, repr=False)
    threads: int = DEFAULT_THREADS
    application_user: str | None = platform.SIGNED_IN_USER_NAME
    jwt_verifiers: Mapping[str, str] = field(default_factory=dict, repr=False)
    jwt_user_field: str = "user_name"
    queries: str = "strict"
    tls: bool = False
    users: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.consent not in CONSENT_MODES:
            raise ValueError(f"consent must be one of {CONSENT_MODES}, not {self.consent!r}")
        users = tuple(tuple(pair) for pair in self.users)
        if not all(len(pair) == 2 and all(isinstance(v, str) and v for v in pair)
                   for pair in users):
            raise ValueError("users must be (user name, password) pairs")
        object.__setattr__(self, "users", users)
        if self.queries not in platform.QUERY_MODES:
            raise ValueError(f"queries must be one of {platform.QUERY_MODES}, not {self.queries!r}")
        methods = (self.auth,) if isinstance(self.auth, str) else tuple(self.auth)
        unknown = set(methods) - set(platform.AUTH_METHODS)
        if unknown or not methods:
            raise ValueError(f"auth must name some of {platform.AUTH_METHODS}, not {self.auth!r}")
        object.__setattr__(self, "auth", methods)
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads must be a positive number, not {self.threads!r}")
        if self.jwt_user_field not in platform.JWT_USER_FIELDS:
            raise ValueError(f"jwt_user_field must be one of {platform.JWT_USER_FIELDS}")
        verifiers = dict(self.jwt_verifiers)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in verifiers.items()):
            raise ValueError("jwt_verifiers maps key ids to PEM keys or shared keys (strings)")
        object.__setattr__(self, "jwt_verifiers", verifiers)

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON values (to start the same stub in another process)."""
        settings = asdict(self)
        settings["jwt_verifiers"] = dict(self.jwt_verifiers)
        return settings


class ControlError(ValueError):
    """A control operation was called with arguments it cannot use."""


class StubState:
    """Clock, OAuth server, records, faults, routes and the request log of one stub instance."""

    def __init__(self, config: StubConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.user_sys_id = user_sys_id(platform.SIGNED_IN_USER_NAME)
        self.routes = ScriptedRoutes()
        self.transforms: dict[str, Transform] = {}
        self.kept_grant: KeptGrant | None = None  # what reset(keep_grant=True) readmits
        self._start_fresh()

    def _start_fresh(self) -> None:
        config = self.config
        self.clock_offset = 0.0
        self.oauth = AuthorizationServer(
            access_lifespan=config.access_lifespan,
            refresh_lifespan=config.refresh_lifespan,
            consent=config.consent,
            strict_redirect=config.strict_redirect,
            methods=config.auth,
            assertions=AssertionChecker(dict(config.jwt_verifiers), config.jwt_user_field),
        )
        self.oauth.register_client(
            Client(
                config.client_id,
                (config.redirect_uri,),
                config.app_name,
                config.pkce_required,
                config.client_secret,
            )
        )
        self.store = RecordStore(
            Schema.shipped(), seed_snapshot() if config.seed else schema_snapshot()
        )
        self.store.strict_queries = config.queries == "strict"
        for user_name, password in config.users:
            self._add_user(user_name, password)
        self.faults = FaultPlan()
        self.request_log: list[dict[str, object]] = []
        self.revocation_count = 0
        self.routes.clear()
        self.transforms.clear()

    def _add_user(self, user_name: str, password: str) -> None:
        """A user who signs in with this password (a seed user's password replaced)."""
        store, caller = self.store, self.caller()
        values = {"user_name": user_name, "user_password": password, "active": "true"}
        existing = next((r for r in store.records.values() if r["sys_class_name"] == "sys_user"
                         and r.get("user_name", "").casefold() == user_name.casefold()), None)
        if existing is None:
            store.insert("sys_user", {**values, "first_name": user_name}, caller)
        else:
            store.update("sys_user", existing["sys_id"], values, caller)

    def now(self) -> float:
        """The stub's clock: wall time moved on by every `advance()`."""
        return time.time() + self.clock_offset

    def application_user(self) -> str | None:
        """The sys_id of the OAuth Application User client-credentials tokens act for."""
        name = self.config.application_user
        return self.store.find_user("user_name", name) if name else None

    def caller(self, user_sys_id: str | None = None) -> Caller:
        """A caller acting as the user (the signed-in user by default), now."""
        user = self.user_sys_id if user_sys_id is None else user_sys_id
        name = self.store.user_name_of(user) or platform.SIGNED_IN_USER_NAME
        return Caller(user, name, self.now())

    def control(self, operation: str, arguments: Mapping[str, Any]) -> object:
        """Run a control operation under the lock; bad arguments raise `ControlError`."""
        from snworker.testing.operations import OPERATIONS  # they take this module's state

        function: Callable[..., object] | None = OPERATIONS.get(operation.replace("-", "_"))
        if function is None:
            raise ControlError(f"unknown control operation {operation!r}")
        with self.lock:
            try:
                return function(self, **arguments)
            except ApiError as error:
                raise ControlError(f"{error.message}: {error.detail}") from error
            except ControlError:
                raise
            except (TypeError, ValueError, KeyError) as error:
                raise ControlError(f"{operation}: {error}") from error
