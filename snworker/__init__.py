"""snworker: use a ServiceNow instance from synchronous Python without holding a credential."""

from snworker import entities
from snworker.connection import ApiResponse, ServiceNowConnection, connect
from snworker.errors import (
    ApiRequestError,
    AuthorizationError,
    AuthTokenExpiredError,
    ConnectionClosedError,
    InvalidRequestError,
    RequestTimeoutError,
    ServiceNowError,
    WorkerCrashedError,
    WorkerError,
    WorkerStartError,
)
from snworker.logs import enable_logging
from snworker.policy import RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "ApiRequestError",
    "ApiResponse",
    "AuthTokenExpiredError",
    "AuthorizationError",
    "ConnectionClosedError",
    "InvalidRequestError",
    "RequestTimeoutError",
    "RetryPolicy",
    "ServiceNowConnection",
    "ServiceNowError",
    "WorkerCrashedError",
    "WorkerError",
    "WorkerStartError",
    "connect",
    "enable_logging",
    "entities",
]
