"""The control surface of a stub, shared by the in-thread stub and the remote one.

Each method names one control operation of `state.py`; a subclass says how an operation is
carried out: a direct call (`StubServiceNow`) or an HTTP call to `/_stub/` (`RemoteStub`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

ConsentMode = Literal["ask", "allow", "deny"]


class StubControls(ABC):
    """Clock, tokens, faults, data and observations of a stub instance."""

    client_id: str
    redirect_uri: str

    @abstractmethod
    def _control(self, operation: str, **arguments: Any) -> Any:
        """Carry out one control operation and return its JSON result."""

    def advance(self, seconds: float) -> None:
        """Move the stub's clock forward (token and code expiry, timestamps of new writes)."""
        self._control("advance", seconds=seconds)

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired."""
        self._control("expire_access_tokens")

    def revoke_refresh_tokens(self) -> None:
        """Revoke every refresh token, and the access tokens issued from it."""
        self._control("revoke_refresh_tokens")

    def set_lifespans(self, access: float | None = None, refresh: float | None = None) -> None:
        """Lifespans, in seconds, of tokens issued from now on (None leaves one unchanged)."""
        self._control("set_lifespans", access=access, refresh=refresh)

    def set_consent(self, mode: ConsentMode) -> None:
        """"ask" shows the consent page; "allow" and "deny" answer at once."""
        self._control("set_consent", mode=mode)

    def inject(
        self,
        status: int | None = 503,
        times: int = 2,
        path_prefix: str = "/api/now",
        retry_after: float | None = None,
        delay: float = 0.0,
        drop: bool = False,
        method: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Make the next `times` requests under `path_prefix` (and of `method`) fail.

        Args:
            status: the status answered with the platform's error envelope; None answers
                normally after `delay`.
            times: how many matching requests the fault applies to.
            path_prefix: requests whose path starts with this are affected.
            retry_after: seconds sent as `Retry-After`; a 429 also gets the rate-limit headers.
            delay: seconds to wait before answering (or dropping).
            drop: close the connection without an answer.
            method: only requests with this HTTP method, if given.
            headers: extra headers on the answer, the injected one or the normal one
                (a `Location` for a 3xx, a header that echoes something back).
        """
        self._control(
            "inject",
            status=status,
            times=times,
            path_prefix=path_prefix,
            retry_after=retry_after,
            delay=delay,
            drop=drop,
            method=method,
            headers=None if headers is None else dict(headers),
        )

    def rate_limit(
        self, limit: int | None, window: float = 3600.0, path_prefix: str = "/api/now"
    ) -> None:
        """Allow `limit` requests under `path_prefix` per `window` seconds; None removes it."""
        self._control("rate_limit", limit=limit, window=window, path_prefix=path_prefix)

    @property
    def grant_counts(self) -> dict[str, int]:
        """Successful token grants by grant type."""
        return cast(dict[str, int], self._control("grant_counts"))

    @property
    def revocation_count(self) -> int:
        """How many `POST /oauth_revoke_token.do` arrived."""
        return cast(int, self._control("revocation_count"))

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request received, in order; secrets masked as `***`.

        Each is a dict with `method`, `path`, `query`, `form` (a form-urlencoded body),
        `headers`, `status` (0 for a dropped connection) and `time` (the stub's clock).
        Control calls (`/_stub/...`) are not recorded.
        """
        return cast(list[dict[str, Any]], self._control("requests"))

    @property
    def users(self) -> list[dict[str, str]]:
        """The sys_user records; the signed-in user is `admin`."""
        return cast(list[dict[str, str]], self._control("users"))

    def issued_secrets(self) -> list[str]:
        """Every access token, refresh token and code issued, and every verifier received."""
        return cast(list[str], self._control("issued_secrets"))

    def insert(self, table: str, record: Mapping[str, object]) -> dict[str, str]:
        """Store a record (a new table comes into being) and return it as stored."""
        return cast(dict[str, str], self._control("insert", table=table, record=dict(record)))

    def records(self, table: str) -> list[dict[str, str]]:
        """The records of a table and of the tables that extend it."""
        return cast(list[dict[str, str]], self._control("records", table=table))

    def reset(self) -> None:
        """Back to the fresh state: seed data, no tokens or faults, clock and settings as built."""
        self._control("reset")

    def register_client(
        self,
        client_id: str,
        redirect_uris: Sequence[str],
        app_name: str | None = None,
        pkce_required: bool = True,
    ) -> None:
        """Register another OAuth application."""
        self._control(
            "register_client",
            client_id=client_id,
            redirect_uris=list(redirect_uris),
            app_name=app_name,
            pkce_required=pkce_required,
        )
