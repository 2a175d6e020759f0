"""Failures inside the worker. Each becomes one `Error` message; none crosses as an object."""

from __future__ import annotations

from snworker import errors


class Failure(Exception):
    """A request or authorization failed in a way the caller should hear about."""

    kind = errors.KIND_API

    def __init__(self, message: str, status: int | None = None, detail: str | None = None,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = detail
        self.headers = headers


class ApiFailure(Failure):
    """An error status from the instance, or a transport failure (status None)."""


class TlsFailure(ApiFailure):
    """TLS with the instance failed: the instance answered, so it is not the network."""


class Timeout(Failure):
    """The request's deadline passed in the worker."""

    kind = errors.KIND_TIMEOUT


class InvalidRequest(Failure):
    """Refused before anything was sent."""

    kind = errors.KIND_INVALID


class TokenExpired(Failure):
    """The grant is gone; only a new consent (reconnect()) helps."""

    kind = errors.KIND_TOKEN_EXPIRED


class AuthorizationFailed(Failure):
    """The authorization flow failed; `detail` carries the reason."""

    kind = errors.KIND_AUTHORIZATION

    def __init__(self, message: str, reason: errors.AuthorizationReason) -> None:
        super().__init__(message, detail=reason)


class Cancelled(Failure):
    """The parent stopped waiting; the answer is dropped."""

    kind = errors.KIND_WORKER
