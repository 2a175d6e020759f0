"""snworker: use a ServiceNow instance from synchronous Python without holding a credential.

The public names are loaded on first use, so that the worker, which imports parts of this
package, runs none of the parent side's code.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from snworker import aio, entities
    from snworker.adapters.for_httpx import httpx_transport
    from snworker.adapters.for_requests import requests_session
    from snworker.agent import attach
    from snworker.connection import ServiceNowConnection, connect
    from snworker.core import WorkerHardening
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
    from snworker.grants import ClientCredentials, JwtBearer, Secret
    from snworker.logs import enable_logging
    from snworker.policy import Policy, RetryPolicy
    from snworker.response import ApiResponse
    from snworker.spawn import freeze_support, set_worker_executable

__version__ = "0.1.0"

__all__ = [
    "ApiRequestError",
    "ApiResponse",
    "AuthTokenExpiredError",
    "AuthorizationError",
    "ClientCredentials",
    "ConnectionClosedError",
    "InvalidRequestError",
    "JwtBearer",
    "Policy",
    "RequestTimeoutError",
    "RetryPolicy",
    "Secret",
    "ServiceNowConnection",
    "ServiceNowError",
    "WorkerCrashedError",
    "WorkerError",
    "WorkerHardening",
    "WorkerStartError",
    "aio",
    "attach",
    "connect",
    "enable_logging",
    "entities",
    "freeze_support",
    "httpx_transport",
    "requests_session",
    "set_worker_executable",
]

_HOMES = {
    "ApiRequestError": "snworker.errors",
    "ApiResponse": "snworker.response",
    "AuthTokenExpiredError": "snworker.errors",
    "AuthorizationError": "snworker.errors",
    "ClientCredentials": "snworker.grants",
    "ConnectionClosedError": "snworker.errors",
    "InvalidRequestError": "snworker.errors",
    "JwtBearer": "snworker.grants",
    "Policy": "snworker.policy",
    "RequestTimeoutError": "snworker.errors",
    "RetryPolicy": "snworker.policy",
    "Secret": "snworker.grants",
    "ServiceNowConnection": "snworker.connection",
    "ServiceNowError": "snworker.errors",
    "WorkerCrashedError": "snworker.errors",
    "WorkerError": "snworker.errors",
    "WorkerHardening": "snworker.core",
    "WorkerStartError": "snworker.errors",
    "attach": "snworker.agent",
    "connect": "snworker.connection",
    "enable_logging": "snworker.logs",
    "freeze_support": "snworker.spawn",
    "httpx_transport": "snworker.adapters.for_httpx",
    "requests_session": "snworker.adapters.for_requests",
    "set_worker_executable": "snworker.spawn",
}


def __getattr__(name: str) -> _typing.Any:
    if name in ("aio", "entities"):
        return _importlib.import_module(f"snworker.{name}")
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(home), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
