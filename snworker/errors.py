"""The exceptions snworker raises, and the table that rebuilds them from `Error` messages.

    ServiceNowError
    ├── AuthorizationError        .reason: denied | timeout | state_mismatch |
    │                             exchange_failed | cancelled | invalid_client |
    │                             redirect_mismatch | redirect_busy | unreachable;
    │                             unattended grants: grant_disabled | no_application_user |
    │                             unknown_key | unknown_subject | bad_signature |
    │                             assertion_expired | assertion_replayed | secret_unreadable
    ├── AuthTokenExpiredError     the grant is gone: call conn.reconnect()
    ├── ApiRequestError           .status (None for a transport failure), .message, .detail,
    │   │                         .headers
    │   └── RequestTimeoutError   (also a TimeoutError)
    ├── InvalidRequestError       refused before anything was sent (also a ValueError)
    └── WorkerError               the worker is gone or unusable
        ├── WorkerStartError
        ├── WorkerCrashedError    .exitcode
        └── ConnectionClosedError used after disconnect()

No exception object crosses the process boundary: the worker sends an `Error` message with a
`kind` and plain fields, and `from_error_fields` rebuilds the exception in the caller's thread.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Literal

AuthorizationReason = Literal[
    "denied", "timeout", "state_mismatch", "exchange_failed", "cancelled", "invalid_client",
    "redirect_mismatch", "redirect_busy", "unreachable",
    # unattended grants: each names the setting to fix
    "grant_disabled", "no_application_user", "unknown_key", "unknown_subject", "bad_signature",
    "assertion_expired", "assertion_replayed", "secret_unreadable",
]


class ServiceNowError(Exception):
    """Root of every error snworker raises."""


class AuthorizationError(ServiceNowError):
    """The user did not grant access, or the instance refused the grant."""

    def __init__(self, message: str, reason: AuthorizationReason = "exchange_failed") -> None:
        super().__init__(message)
        self.reason: AuthorizationReason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.reason))


class AuthTokenExpiredError(ServiceNowError):
    """The access token expired and could not be renewed: call `connect()` again."""


class ApiRequestError(ServiceNowError):
    """The instance answered with an error status, or the request failed in transport."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        detail: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message if status is None else f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.detail = detail
        self.headers: Mapping[str, str] = headers if headers is not None else {}

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.status, self.detail, dict(self.headers)))


class RequestTimeoutError(ApiRequestError, TimeoutError):
    """The request did not finish within its deadline."""


class InvalidRequestError(ServiceNowError, ValueError):
    """The request was refused before anything was sent."""


class WorkerError(ServiceNowError):
    """The worker process is gone or unusable."""


class WorkerStartError(WorkerError):
    """The worker process could not be started."""


class WorkerCrashedError(WorkerError):
    """The worker process died."""

    def __init__(self, message: str, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.exitcode = exitcode

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.exitcode))


class ConnectionClosedError(WorkerError):
    """The connection was used after `disconnect()`."""


# The kinds an `Error` message may carry. The worker names a kind; the parent maps it here and
# nowhere else.
KIND_AUTHORIZATION = "authorization"
KIND_TOKEN_EXPIRED = "token_expired"
KIND_API = "api"
KIND_TIMEOUT = "timeout"
KIND_INVALID = "invalid_request"
KIND_WORKER = "worker"
KIND_START = "worker_start"

_AUTH_REASONS: frozenset[str] = frozenset(typing.get_args(AuthorizationReason))


def from_error_fields(
    kind: str,
    message: str,
    status: int | None,
    detail: str | None,
    headers: Mapping[str, str] | None,
) -> ServiceNowError:
    """Rebuild the exception an `Error` message describes."""
    if kind == KIND_AUTHORIZATION:
        reason = detail if detail in _AUTH_REASONS else "exchange_failed"
        return AuthorizationError(message, reason)  # type: ignore[arg-type]
    if kind == KIND_TOKEN_EXPIRED:
        return AuthTokenExpiredError(message)
    if kind == KIND_API:
        return ApiRequestError(message, status, detail, _case_insensitive(headers))
    if kind == KIND_TIMEOUT:
        return RequestTimeoutError(message, status, detail, _case_insensitive(headers))
    if kind == KIND_INVALID:
        return InvalidRequestError(message)
    if kind == KIND_START:
        return WorkerStartError(message)
    return WorkerError(message)


def _case_insensitive(headers: Mapping[str, str] | None) -> Mapping[str, str]:
    from requests.structures import CaseInsensitiveDict

    return CaseInsensitiveDict(headers or {})
