"""Plain data that crosses to the worker: RetryPolicy (transient failures), AgentLimits."""

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
