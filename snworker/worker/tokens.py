"""The token store: absolute expiry, single-flight refresh, wiping."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from snworker.worker.failures import TokenExpired

# The most of a token's lifespan the refresh margin may take: with a 60 s margin, a 30 s token
# would otherwise be renewed before every call.
MARGIN_SHARE = 0.25


@dataclass(slots=True)
class TokenGrant:
    """What the token endpoint granted; `expires_at` is on the worker's monotonic clock."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: float
    lifespan: float = 1800.0

    @classmethod
    def from_response(cls, body: object, now: float) -> TokenGrant:
        """Read a token endpoint's JSON answer; raises ValueError if it is not one."""
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise ValueError("the token endpoint's answer has no access_token")
        refresh = body.get("refresh_token")
        try:
            expires_in = float(body.get("expires_in", 1800))
        except (TypeError, ValueError):
            expires_in = 1800.0
        lifespan = max(expires_in, 0.0)
        return cls(body["access_token"], refresh if isinstance(refresh, str) else None,
                   now + lifespan, lifespan)

    def is_expired(self, leeway: float, now: float) -> bool:
        """True when less than `leeway` seconds of life are left."""
        return now + leeway >= self.expires_at

    def renewal_margin(self, margin: float) -> float:
        """`margin`, capped so that a short-lived token is renewed about once in its life."""
        return min(margin, self.lifespan * MARGIN_SHARE)



# Renews a grant from a refresh token. Raises TokenExpired when the grant is refused, any other
# Failure when the refresh failed for now (the store then keeps the tokens it has).
Refresher = Callable[[str], TokenGrant]


class TokenStore:
    """Holds the current grant; any number of threads may ask for a usable access token."""

    def __init__(self, refresher: Refresher, refresh_margin: float,
                 clock: Callable[[], float] = time.monotonic,
                 renew: Callable[[], TokenGrant] | None = None) -> None:
        self._refresher = refresher
        # An unattended grant has no refresh token: it renews by running the grant again.
        self._renew = renew
        self._margin = refresh_margin
        self._clock = clock
        self._lock = threading.Lock()
        self._grant: TokenGrant | None = None
        self._refreshing: Future[TokenGrant] | None = None
        self._expired_reason: str | None = None
        # Kept through a wipe: disconnect() revokes it even after the grant was refused, since
        # only the instance knows whether the grant is really over.
        self._last_refresh_token: str | None = None

    def install(self, grant: TokenGrant) -> None:
        """Take the grant from the code exchange."""
        with self._lock:
            self._grant = grant
            self._expired_reason = None
            self._remember(grant)

    def access_token(self) -> str:
        """A token with at least `refresh_margin` seconds of life, refreshing first if needed."""
        with self._lock:
            grant = self._usable()
            if not grant.is_expired(grant.renewal_margin(self._margin), self._clock()):
                return grant.access_token
            stale = grant.access_token
        return self._refresh(stale)

    def renew_after_unauthorized(self, rejected: str) -> str:
        """A token to resend with after the instance refused `rejected` with 401."""
        return self._refresh(rejected)

    @property
    def refresh_token(self) -> str | None:
        """The current refresh token; None once the grant is wiped."""
        with self._lock:
            return None if self._grant is None else self._grant.refresh_token

    @property
    def granted(self) -> bool:
        """True while there is a grant (False once it was refused or wiped)."""
        with self._lock:
            return self._grant is not None

    def expires_in(self) -> float | None:
        """Seconds of life left to the access token; None without a grant."""
        with self._lock:
            return None if self._grant is None else self._grant.expires_at - self._clock()

    @property
    def access_token_held(self) -> str | None:
        """The current access token, without renewing it; None once the grant is wiped."""
        with self._lock:
            return None if self._grant is None else self._grant.access_token

    @property
    def last_refresh_token(self) -> str | None:
        """The last refresh token held, wiped or not: what disconnect() revokes."""
        with self._lock:
            return self._last_refresh_token

    def expire(self, reason: str) -> None:
        """Forget the grant: every later call raises TokenExpired with `reason`."""
        with self._lock:
            self._wipe(reason)

    # Callers hold self._lock for the helpers below.

    def _usable(self) -> TokenGrant:
        if self._grant is None:
            raise TokenExpired(self._expired_reason or "not authorized")
        return self._grant

    def _remember(self, grant: TokenGrant) -> None:
        if grant.refresh_token:
            self._last_refresh_token = grant.refresh_token

    def _wipe(self, reason: str) -> None:
        self._grant = None
        self._expired_reason = reason

    def _refresh(self, stale: str) -> str:
        with self._lock:
            grant = self._usable()
            if grant.access_token != stale:
                return grant.access_token  # another thread renewed it meanwhile
            flight = self._refreshing
            leader = flight is None
            if flight is None:
                flight = self._refreshing = Future()
            refresh_token = grant.refresh_token
        if not leader:
            return flight.result().access_token
        # Only the leader talks to the token endpoint; the others wait on its future.
        try:
            if self._renew is not None:
                fresh = self._renew()
            elif refresh_token is None:
                raise TokenExpired("the access token expired and the grant has no refresh token")
            else:
                fresh = self._refresher(refresh_token)
            if fresh.refresh_token is None:
                fresh.refresh_token = refresh_token  # no rotation: keep the one we have
        except TokenExpired as exc:
            with self._lock:
                self._wipe(str(exc))
                self._refreshing = None
            flight.set_exception(exc)
            raise
        except BaseException as exc:
            with self._lock:
                self._refreshing = None
            flight.set_exception(exc)
            raise
        with self._lock:
            self._grant = fresh
            self._remember(fresh)
            self._refreshing = None
        flight.set_result(fresh)
        return fresh.access_token
