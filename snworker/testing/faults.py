"""Failures the stub is told to produce: statuses, delays, dropped connections, rate limits."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from http import HTTPStatus

from snworker.testing import platform


@dataclass(slots=True)
class Injection:
    """`times` more requests under `path_prefix` (and of `method`, if set) get this fault."""

    status: int | None
    times: int
    path_prefix: str
    retry_after: float | None
    delay: float
    drop: bool
    method: str | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do to one request: wait `delay`, then drop it, fail it with `status`, or serve it.

    `headers` go on the answer either way.
    """

    status: int | None = None
    delay: float = 0.0
    drop: bool = False
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class RateLimit:
    """At most `limit` requests under `path_prefix` per fixed window of `window` seconds."""

    limit: int
    window: float
    path_prefix: str
    window_start: float = -math.inf
    used: int = 0


def status_message(status: int) -> str:
    """The envelope message for a status the stub is told to answer with."""
    if status == 429:
        return platform.RATE_LIMITED_MESSAGE
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def rate_limit_headers(limit: int, reset_at: float, retry_after: float | None) -> dict[str, str]:
    """The headers the platform sends on responses a rate-limit rule covers (and a 429)."""
    headers = {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Reset": str(math.ceil(reset_at)),
        "X-RateLimit-Rule": platform.RATE_LIMIT_RULE,
    }
    if retry_after is not None:
        headers["Retry-After"] = _seconds(retry_after)
    return headers


def _seconds(value: float) -> str:
    return str(max(0, math.ceil(value)))


class FaultPlan:
    """Queued injections, applied in order, and an optional rate limit."""

    def __init__(self) -> None:
        self.injections: list[Injection] = []
        self.rate: RateLimit | None = None

    def inject(self, injection: Injection) -> None:
        """Queue an injection behind those already queued."""
        if injection.times < 1:
            raise ValueError("times must be at least 1 (clear_faults() removes queued faults)")
        self.injections.append(injection)

    def clear(self, path_prefix: str | None = None) -> int:
        """Remove queued injections (those whose prefix starts with `path_prefix`); how many."""
        kept = [i for i in self.injections
                if path_prefix is not None and not i.path_prefix.startswith(path_prefix)]
        cleared = len(self.injections) - len(kept)
        self.injections = kept
        return cleared

    def pending(self) -> list[dict[str, object]]:
        """The queued injections, in order, as plain dicts."""
        return [asdict(injection) for injection in self.injections]

    def limit_rate(self, limit: int | None, window: float, path_prefix: str) -> None:
        """Start (or, with `limit=None`, remove) a rate limit."""
        self.rate = None if limit is None else RateLimit(limit, window, path_prefix)

    def fault_for(self, method: str, path: str, now: float) -> Fault | None:
        """The fault for one incoming request, using up an injection if one applies."""
        for injection in self.injections:
            if path.startswith(injection.path_prefix) and injection.method in (None, method):
                injection.times -= 1
                if injection.times <= 0:
                    self.injections.remove(injection)
                return self._injected(injection, now)
        return self._rate_limited(path, now)

    @staticmethod
    def _injected(injection: Injection, now: float) -> Fault:
        status = injection.status
        headers: dict[str, str] = {}
        if status == 429:
            wait = injection.retry_after if injection.retry_after is not None else 1.0
            headers = rate_limit_headers(1000, now + wait, injection.retry_after)
        elif status is not None and injection.retry_after is not None:
            headers["Retry-After"] = _seconds(injection.retry_after)
        headers.update(injection.headers)
        return Fault(
            status=status,
            delay=injection.delay,
            drop=injection.drop,
            message="" if status is None else status_message(status),
            headers=headers,
        )

    def _rate_limited(self, path: str, now: float) -> Fault | None:
        rate = self.rate
        if rate is None or not path.startswith(rate.path_prefix):
            return None
        if now >= rate.window_start + rate.window:
            rate.window_start, rate.used = now, 0
        reset_at = rate.window_start + rate.window
        if rate.used < rate.limit:
            rate.used += 1
            return Fault(headers=rate_limit_headers(rate.limit, reset_at, None))
        return Fault(
            status=429,
            message=platform.RATE_LIMITED_MESSAGE,
            headers=rate_limit_headers(rate.limit, reset_at, reset_at - now),
        )
