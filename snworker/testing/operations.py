"""The control operations: plain functions of a stub's state taking and returning JSON values.

`StubState.control` runs them under the state lock, for `StubServiceNow` directly and for the
`/_stub/<operation>` endpoints that `RemoteStub` calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from snworker.testing.faults import Injection
from snworker.testing.import_api import Transform
from snworker.testing.oauth import Client
from snworker.testing.schema import DefinitionError, definition_from_data
from snworker.testing.state import CONSENT_MODES, ControlError, StubState

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
    """The settings the stub was started with (the client secret left out)."""
    settings = state.config.to_json()
    settings["client_secret"] = None
    settings["jwt_verifiers"] = dict.fromkeys(state.config.jwt_verifiers, "")  # kids only
    return settings


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
    if _number(times, "times") < 1 or int(times) != times:
        raise ControlError("times must be a whole number of at least 1; clear_faults() removes "
                           "queued faults")
    state.faults.inject(
        Injection(
            status=status,
            times=int(times),
            path_prefix=str(path_prefix),
            retry_after=None if retry_after is None else _number(retry_after, "retry_after"),
            delay=_number(delay, "delay"),
            drop=bool(drop),
            method=None if method is None else str(method).upper(),
            headers={str(k): str(v) for k, v in (headers or {}).items()},
        )
    )


@_operation
def clear_faults(state: StubState, path_prefix: str | None = None) -> int:
    """Remove queued injections, all or those under `path_prefix`; returns how many."""
    return state.faults.clear(None if path_prefix is None else str(path_prefix))


@_operation
def pending_faults(state: StubState) -> list[dict[str, object]]:
    """The injections still queued, in order."""
    return state.faults.pending()


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
    """Every token and code issued, and every verifier, password and client secret received."""
    return list(state.oauth.issued_secrets)


@_operation
def insert(state: StubState, table: str, record: Mapping[str, object]) -> dict[str, str]:
    """Store a record as the signed-in user and return it as stored.

    A table without a definition comes into being and takes every field; a defined table
    refuses a field it has no column for (define it with `define_table`).
    """
    if not isinstance(record, Mapping):
        raise ControlError("record must be a JSON object")
    table = str(table)
    store = state.store
    if store.schema.knows(table):
        view = store.schema.table(table)
        unknown = sorted(set(record) - set(view.columns)) if not view.loose else []
        if unknown:
            raise ControlError(
                f"{table} has no column {', '.join(unknown)}; add it with define_table()"
            )
    else:
        store.schema.widen(table, record)
        store.describe(table, state.caller())
    stored = dict(store.insert(table, record, state.caller()))
    for name in store.schema.table(table).hidden:
        stored[name] = ""
    return stored


def _records(state: StubState, table: str) -> list[dict[str, str]]:
    if not state.store.schema.knows(table):
        return []
    return state.store.records_of(table)


@_operation
def records(state: StubState, table: str) -> list[dict[str, str]]:
    """The records of a table and of the tables that extend it."""
    return _records(state, str(table))


@_operation
def users(state: StubState) -> list[dict[str, str]]:
    """The sys_user records (and those of tables extending it)."""
    return _records(state, "sys_user")


@_operation
def define_table(
    state: StubState,
    name: str,
    columns: Mapping[str, Any] | None = None,
    extends: str | None = None,
    label: str | None = None,
    display: str | None = None,
    number_prefix: str | None = None,
) -> list[str]:
    """Add a table, or add columns to one; returns the table's column names."""
    data: dict[str, Any] = {"name": name, "columns": dict(columns or {})}
    for key, value in (("extends", extends), ("label", label), ("display", display)):
        if value is not None:
            data[key] = value
    if number_prefix is not None:
        data["number"] = {"prefix": number_prefix, "start": 1}
    store = state.store
    schema = store.schema
    try:
        definition = definition_from_data(data)
        if definition.extends is not None and not schema.knows(definition.extends):
            raise DefinitionError(f"{name}: no table {definition.extends!r} to extend")
        store.define(definition, state.caller())
    except DefinitionError as error:
        raise ControlError(str(error)) from error
    return list(schema.table(name).column_names)


@_operation
def define_transform(
    state: StubState,
    staging_table: str,
    target_table: str,
    field_map: Mapping[str, str],
    coalesce: str | None = None,
    name: str | None = None,
) -> None:
    """An import set staging table whose rows a field map writes into `target_table`."""
    transform = Transform.build(state.store.schema, staging_table, target_table, field_map,
                                coalesce, name)
    state.store.describe(staging_table, state.caller())
    state.transforms[staging_table] = transform


@_operation
def reset(state: StubState, keep_grant: bool = False) -> None:
    """Back to a fresh stub: seed data, tables, no tokens, faults, routes; clock as built.

    With `keep_grant`, the grant `keep_grant()` chose is then taken back as this fresh stub's
    one consent: unrevoked, its latest access token valid for the whole lifespan.
    """
    kept = state.kept_grant
    if kept is not None:
        kept = state.oauth.kept_as_now(kept)  # it may have been refreshed since
    state._start_fresh()
    state.kept_grant = kept
    if keep_grant and kept is not None:
        state.oauth.readmit(kept, state.now())


@_operation
def keep_grant(state: StubState) -> None:
    """The newest grant is the one `reset(keep_grant=True)` takes back from now on."""
    kept = state.oauth.newest_grant()
    if kept is None:
        raise ControlError("no grant to keep: nobody has consented since the last reset")
    state.kept_grant = kept


@_operation
def register_client(
    state: StubState,
    client_id: str,
    redirect_uris: list[str],
    app_name: str | None = None,
    pkce_required: bool = True,
    client_secret: str | None = None,
) -> None:
    """Register another OAuth application (with a secret: usable by the password grants)."""
    if isinstance(redirect_uris, str) or not (redirect_uris or client_secret):
        raise ControlError("redirect_uris must be a non-empty list")
    state.oauth.register_client(
        Client(
            str(client_id),
            tuple(str(uri) for uri in redirect_uris),
            state.config.app_name if app_name is None else str(app_name),
            bool(pkce_required),
            None if client_secret is None else str(client_secret),
        )
    )
