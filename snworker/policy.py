"""Plain data that crosses to the worker, which applies it.

`RetryPolicy` says how the worker rides out transient failures; `Policy` says which requests it
sends at all (the worker refuses the rest before anything leaves it; see worker/access.py);
`AgentLimits` says what an agent's clients may hold in flight.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Limits for retries and token renewal, applied in the worker.

    Args:
        attempts: tries per request in all, the first included.
        backoff_initial: first wait between tries, in seconds; it doubles, with jitter.
        backoff_max: the longest single wait, in seconds.
        total_timeout: the longest a request may spend across all its tries, in seconds.
        retry_statuses: statuses retried for idempotent methods (POST and PATCH: 429 only).
        retry_after_max: the longest `Retry-After` honoured, in seconds.
        refresh_margin: renew the access token when less than this many seconds are left.
    """

    attempts: int = 4
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    total_timeout: float = 60.0
    retry_statuses: tuple[int, ...] = (429, 502, 503, 504)
    retry_after_max: float = 30.0
    refresh_margin: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        for name in ("backoff_initial", "backoff_max", "total_timeout", "retry_after_max",
                     "refresh_margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"RetryPolicy.{name} must not be negative")
        object.__setattr__(self, "retry_statuses", tuple(int(s) for s in self.retry_statuses))

    def to_wire(self) -> tuple[Any, ...]:
        """The policy as a tuple of builtins, for the `Connect` message."""
        return dataclasses.astuple(self)

    @classmethod
    def from_wire(cls, values: tuple[Any, ...]) -> RetryPolicy:
        """Rebuild a policy from `to_wire`'s tuple; raises ValueError on anything else."""
        try:
            return cls(*values)
        except TypeError as exc:
            raise ValueError(f"not a retry policy: {exc}") from None


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True, slots=True)
class Policy:
    """What the worker may send for this connection; anything else it refuses, unsent.

    Enforced in the worker, so code in the application cannot lift it. Every API that reaches
    table data is covered: Table, Aggregate (`/api/now/stats/`), Attachment (by table), Batch
    (each sub-request) and Import Set; under a `tables` or `apis` policy any other path is
    refused unless `apis` names it.

    Args:
        methods: the HTTP methods allowed (GET allows HEAD too); None: all.
        tables: the tables whose data requests may reach; None: any.
        apis: path prefixes allowed, such as "/api/now/table" or "/api/x_acme/v1"; None: the
            table-data APIs (for the `tables`), or anything when `tables` is None too.
    """

    methods: tuple[str, ...] | None = None
    tables: tuple[str, ...] | None = None
    apis: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        from snworker.errors import InvalidRequestError

        def names(value: object, what: str) -> tuple[str, ...] | None:
            if value is None:
                return None
            items = (value,) if isinstance(value, str) else value
            if not isinstance(items, tuple | list | set | frozenset) or not all(
                    isinstance(item, str) and item and item.isprintable() for item in items):
                raise InvalidRequestError(f"Policy.{what} must be a list of strings, or None")
            return tuple(items)

        methods = names(self.methods, "methods")
        if methods is not None:
            methods = tuple(m.upper() for m in methods)
            unknown = set(methods) - set(METHODS)
            if unknown:
                raise InvalidRequestError(f"Policy.methods: unknown {sorted(unknown)}")
        tables = names(self.tables, "tables")
        if tables is not None:
            tables = tuple(t.lower() for t in tables)
        apis = names(self.apis, "apis")
        if apis is not None:
            apis = tuple("/" + a.strip("/").lower() for a in apis)
        object.__setattr__(self, "methods", methods)
        object.__setattr__(self, "tables", tables)
        object.__setattr__(self, "apis", apis)

    @classmethod
    def read_only(cls, tables: tuple[str, ...] | None = None) -> Policy:
        """GET and HEAD only (on `tables`, when given)."""
        return cls(methods=("GET", "HEAD"), tables=tables)

    def to_wire(self) -> tuple[Any, ...]:
        """The policy as a tuple of builtins, for the `Connect` message."""
        return (self.methods, self.tables, self.apis)

    @classmethod
    def from_wire(cls, values: tuple[Any, ...]) -> Policy:
        """Rebuild a policy from `to_wire`'s tuple; raises ValueError on anything else."""
        if not isinstance(values, tuple) or len(values) != 3:
            raise ValueError("not an access policy")
        try:
            return cls(*values)
        except Exception as exc:  # InvalidRequestError is a ValueError too
            raise ValueError(f"not an access policy: {exc}") from None


@dataclass(frozen=True, slots=True)
class AgentLimits:
    """What an agent lets its clients hold, so that no client can exhaust its memory.

    Args:
        clients: connections served at once (attached clients and status queries; the process
            that started the agent is not counted); the ones over it are closed at once.
        client_bytes: bytes one client may have in flight: the frame being read plus the
            bodies of its requests being carried out. A frame that can never fit is refused;
            one that must wait for the client's own requests waits up to `stall` seconds.
        total_bytes: the same, for all clients together.
        stall: seconds a client may leave a frame it began unfinished with no byte arriving,
            or leave an answer unread that the agent is writing; it is then dropped.
    """

    clients: int = 64
    client_bytes: int = (1 << 30) + (1 << 20)  # the largest frame: a 1 GiB body and its head
    total_bytes: int = 2 << 30
    stall: float = 30.0

    def __post_init__(self) -> None:
        for name in ("clients", "client_bytes", "total_bytes", "stall"):
            if not getattr(self, name) > 0:
                raise ValueError(f"AgentLimits.{name} must be positive")

    def to_wire(self) -> dict[str, Any]:
        """The limits as builtins, for the agent's start-up settings."""
        return dataclasses.asdict(self)

    @classmethod
    def from_wire(cls, values: dict[str, Any]) -> AgentLimits:
        """Rebuild limits from `to_wire`'s mapping; raises ValueError on anything else."""
        try:
            return cls(**values)
        except TypeError as exc:
            raise ValueError(f"not agent limits: {exc}") from None
