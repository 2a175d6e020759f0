"""The Table API for asyncio code: the sync `Table`'s pages and checks, awaited."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from snworker.errors import ApiRequestError
from snworker.table import Pages, _check_sys_id, _params, table_path

if TYPE_CHECKING:
    from snworker.aio.connection import AsyncServiceNowConnection

R = TypeVar("R", bound=Mapping[str, Any])


class AsyncTable(Generic[R]):
    """One table on the instance: `aconn.table("incident", Incident)`."""

    def __init__(self, conn: AsyncServiceNowConnection, name: str) -> None:
        self._conn = conn
        self.name = name
        self.path = table_path(name)

    async def get(self, sys_id: str, *, fields: Sequence[str] = (),
                  display_value: bool | str = False) -> R | None:
        """The record with `sys_id`, or None when there is none (or an ACL hides it)."""
        _check_sys_id(sys_id)
        try:
            resp = await self._conn.execute_api_request(
                f"{self.path}/{sys_id}", "GET", params=_params(fields, display_value))
        except ApiRequestError as exc:
            if exc.status == 404:
                return None
            raise
        return cast(R, resp.data)

    async def create(self, record: R) -> R:
        """Insert `record`; the record as stored."""
        resp = await self._conn.execute_api_request(self.path, "POST", dict(record))
        return cast(R, resp.data)

    async def update(self, sys_id: str, changes: R) -> R:
        """PATCH the fields in `changes`; the record as stored."""
        _check_sys_id(sys_id)
        resp = await self._conn.execute_api_request(f"{self.path}/{sys_id}", "PATCH",
                                                    dict(changes))
        return cast(R, resp.data)

    async def delete(self, sys_id: str) -> None:
        """Delete the record."""
        _check_sys_id(sys_id)
        await self._conn.execute_api_request(f"{self.path}/{sys_id}", "DELETE")

    async def iter(self, query: str = "", *, fields: Sequence[str] = (), page_size: int = 500,
                   limit: int | None = None,
                   display_value: bool | str = False) -> AsyncIterator[R]:
        """Every record matching the encoded `query`, `page_size` at a time: the pages of
        `Table.iter`, read with `async for`."""
        pages = Pages(query, fields, page_size, limit, display_value)
        while (params := pages.next_params()) is not None:
            resp = await self._conn.execute_api_request(self.path, "GET", params=params)
            for record in pages.read(resp):
                yield cast(R, record)
