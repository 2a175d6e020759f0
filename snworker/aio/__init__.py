"""snworker for asyncio: the same worker, messages and errors, awaited.

    aconn = await snworker.aio.connect(instance, client_id)   # connect()'s arguments
    resp = await aconn.execute_api_request("/api/now/table/incident")
    async for record in aconn.table("incident").iter("active=true"): ...
    httpx.AsyncClient(base_url=aconn.instance_url, transport=snworker.aio.httpx_transport(aconn))
    await aconn.disconnect()

Cancelling a task that awaits a request tells the worker, which aborts the HTTP exchange.
"""

import typing as _typing

from snworker.aio.connection import AsyncServiceNowConnection, attach, connect
from snworker.aio.table import AsyncTable

if _typing.TYPE_CHECKING:
    from snworker.aio.for_httpx import httpx_transport

__all__ = ["AsyncServiceNowConnection", "AsyncTable", "attach", "connect", "httpx_transport"]


def __getattr__(name: str) -> _typing.Any:
    if name == "httpx_transport":  # httpx is an optional extra: imported on first use
        from snworker.aio.for_httpx import httpx_transport

        return httpx_transport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
