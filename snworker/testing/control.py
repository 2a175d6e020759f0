"""The control surface of a stub, shared by the in-thread stub and the remote one.

Each method names one control operation of `state.py`; a subclass says how an operation is
carried out: a direct call (`StubServiceNow`) or an HTTP call to `/_stub/` (`RemoteStub`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

ConsentMode = Literal["ask", "allow", "deny"]
AuthMethod = Literal["code", "basic", "password", "client_credentials", "jwt"]


class StubControls(ABC):
    """Clock, tokens, faults, data and observations of a stub instance."""

    client_id: str
    redirect_uri: str

    @abstractmethod
    def _control(self, operation: str, **arguments: Any) -> Any:
        """Carry out one control operation and return its JSON result."""

    def advance(self, seconds: float) -> float:
        """Move the stub's clock forward (token and code expiry, timestamps of new writes,
        `javascript:` date helpers in queries); returns the stub's time."""
        return cast(float, self._control("advance", seconds=seconds))

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
            times: how many matching requests the fault applies to, at least 1 (ValueError
                otherwise; `clear_faults()` removes queued faults).
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

    def clear_faults(self, path_prefix: str | None = None) -> int:
        """Remove queued injections: all, or those whose `path_prefix` starts with this one.

        Returns how many were removed. A rate limit stays: `rate_limit(None)` removes it.
        """
        return cast(int, self._control("clear_faults", path_prefix=path_prefix))

    @property
    def pending_faults(self) -> list[dict[str, Any]]:
        """The injections still queued, in order, with the `inject()` arguments and `times` left."""
        return cast(list[dict[str, Any]], self._control("pending_faults"))

    def rate_limit(
        self, limit: int | None, window: float = 3600.0, path_prefix: str = "/api/now"
    ) -> None:
        """Allow `limit` requests under `path_prefix` per `window` seconds; None removes it.

        Every response under `path_prefix` carries `X-RateLimit-Limit`, `X-RateLimit-Reset`
        and `X-RateLimit-Rule`; the one past the limit is a 429 with `Retry-After`.
        """
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
        """Every token and code issued, and every verifier, password and client secret received."""
        return cast(list[str], self._control("issued_secrets"))

    def insert(self, table: str, record: Mapping[str, object]) -> dict[str, str]:
        """Store a record as the signed-in user, as a write through the Table API would.

        The record gets the table's defaults, number and rules. A table without a definition
        comes into being and takes any field; a field a defined table has no column for
        raises ValueError (add the column with `define_table`).
        """
        return cast(dict[str, str], self._control("insert", table=table, record=dict(record)))

    def records(self, table: str) -> list[dict[str, str]]:
        """The records of a table and of the tables that extend it."""
        return cast(list[dict[str, str]], self._control("records", table=table))

    def define_table(
        self,
        name: str,
        columns: Mapping[str, str | Mapping[str, object]],
        extends: str | None = None,
        label: str | None = None,
        display: str | None = None,
        number_prefix: str | None = None,
    ) -> list[str]:
        """Add a table, or add (and change) columns of an existing one.

        Args:
            name: the table, `u_widget` or an existing one such as `incident`.
            columns: column name to a type (`"string"`, `"integer"`, `"boolean"`,
                `"glide_date_time"`, ...) or to an object with `type`, `default`, `choices`
                (value to label) and `reference` (the table a reference points at).
            extends: the parent table, whose columns it inherits.
            label, display: the table's label and the column that names its records.
            number_prefix: number its records `<prefix>0000001` ...

        Returns the table's column names. The table lasts until `reset()`.
        """
        return cast(list[str], self._control(
            "define_table", name=name, columns={k: v if isinstance(v, str) else dict(v)
                                                 for k, v in columns.items()},
            extends=extends, label=label, display=display, number_prefix=number_prefix,
        ))

    def define_transform(
        self,
        staging_table: str,
        target_table: str,
        field_map: Mapping[str, str],
        coalesce: str | None = None,
        name: str | None = None,
    ) -> None:
        """An import set table for `POST /api/now/import/{staging_table}` and its transform.

        Each staging field in `field_map` is copied to its target field; with `coalesce` (a
        staging field) a target record with the same value is updated instead of inserted.
        """
        self._control("define_transform", staging_table=staging_table,
                      target_table=target_table, field_map=dict(field_map),
                      coalesce=coalesce, name=name)

    def reset(self, *, keep_grant: bool = False) -> None:
        """Back to the fresh state: seed data and tables, no tokens, faults, rate limit, routes
        or transforms, clock and settings as built.

        With `keep_grant=True`, the grant chosen by `keep_grant()` is then taken back as the
        fresh stub's one consent (`grant_counts["authorization_code"]` is 1): unrevoked, its
        refresh token and latest access token valid for their whole lifespans, whatever the
        test before did to them. A connection that holds it goes on working.
        """
        self._control("reset", keep_grant=keep_grant)

    def keep_grant(self) -> None:
        """Choose the newest grant (the last consent) as the one `reset(keep_grant=True)` keeps."""
        self._control("keep_grant")

    def register_client(
        self,
        client_id: str,
        redirect_uris: Sequence[str],
        app_name: str | None = None,
        pkce_required: bool = True,
        client_secret: str | None = None,
    ) -> None:
        """Register another OAuth application; with a secret, for the password grants."""
        self._control(
            "register_client",
            client_id=client_id,
            redirect_uris=list(redirect_uris),
            app_name=app_name,
            pkce_required=pkce_required,
            client_secret=client_secret,
        )
