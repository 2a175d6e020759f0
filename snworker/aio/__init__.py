"""snworker for asyncio: the same worker, messages and errors, awaited.

    aconn = await snworker.aio.connect(instance, client_id)   # connect()'s arguments
    resp = await aconn.execute_api_request("/api/now/table/incident")
    async for record in aconn.table("incident").iter("active=true"): ...
    await aconn.disconnect()

Cancelling a task that awaits a request tells the worker, which aborts the HTTP exchange.
"""

from snworker.aio.connection import AsyncServiceNowConnection, attach, connect
from snworker.aio.table import AsyncTable

__all__ = ["AsyncServiceNowConnection", "AsyncTable", "attach", "connect"]
