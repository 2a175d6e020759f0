"""The Import Set API: `POST /api/now/import/{staging_table}`.

A test defines a staging table and its transform (a field map onto a target table, optionally
coalescing on one field) with `define_transform`; each row posted is kept in the staging table,
in an import set of its own, and written into the target table at once (synchronous mode).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from werkzeug.wrappers import Response

from snworker.testing import platform
from snworker.testing.query import parse
from snworker.testing.schema import DefinitionError, Schema, TableDefinition
from snworker.testing.state import StubState
from snworker.testing.store import ApiError, Caller, Record, RecordStore
from snworker.testing.wire import ApiCall, Route, error_response, json_payload, json_response


@dataclass(frozen=True, slots=True)
class Transform:
    """A transform map: staging fields onto target fields, coalescing on one staging field."""

    name: str
    staging_table: str
    target_table: str
    field_map: Mapping[str, str]
    coalesce: str | None = None

    @classmethod
    def build(
        cls,
        schema: Schema,
        staging_table: str,
        target_table: str,
        field_map: Mapping[str, str],
        coalesce: str | None,
        name: str | None,
    ) -> Transform:
        """A transform, defining its staging table (as an import set row table) if needed."""
        if not schema.knows(target_table):
            raise DefinitionError(f"no target table {target_table!r}")
        target = schema.table(target_table)
        missing = sorted(set(field_map.values()) - set(target.columns))
        if missing:
            raise DefinitionError(f"{target_table} has no column {', '.join(missing)}")
        if coalesce is not None and coalesce not in field_map:
            raise DefinitionError(f"coalesce field {coalesce!r} is not in the field map")
        columns = {field: {"type": "string"} for field in field_map}
        schema.define(TableDefinition(staging_table, staging_table,
                                      extends=platform.IMPORT_ROW_TABLE, columns=columns))
        return cls(name or f"{staging_table} to {target_table}", staging_table, target_table,
                   dict(field_map), coalesce)

    def run(self, store: RecordStore, row: Record, caller: Caller) -> tuple[str, Record]:
        """Write a staging row into the target table; ("inserted"|"updated"|"ignored", record)."""
        values = {target: row.get(source, "") for source, target in self.field_map.items()}
        if self.coalesce is not None:
            key, wanted = self.field_map[self.coalesce], row.get(self.coalesce, "")
            for record in store.select(self.target_table, parse(""), caller):
                if wanted and record.get(key) == wanted:
                    updated = store.update(self.target_table, record["sys_id"], values, caller)
                    assert updated is not None
                    status = "ignored" if updated is record else "updated"
                    return status, updated
        return "inserted", store.insert(self.target_table, values, caller)


class ImportApi:
    """Loads rows into staging tables and transforms them."""

    routes: Final = (
        Route("/api/now/import/<table>", "import.row", ("POST",)),
        Route("/api/now/v1/import/<table>", "import.row", ("POST",)),
    )

    def __init__(self, state: StubState) -> None:
        self.state = state

    def handle(self, call: ApiCall, endpoint: str, arguments: Mapping[str, str]) -> Response:
        """Load one row; every failure comes back in the platform's envelope."""
        staging = arguments["table"]
        try:
            with self.state.lock:
                store = self.state.store
                view = store.table(staging)
                if platform.IMPORT_ROW_TABLE not in view.ancestry:
                    raise ApiError(400, f"Table {staging} is not an import set table", None)
                payload = json_payload(call.request)
                import_set = store.insert(platform.IMPORT_SET_TABLE, {
                    "table_name": staging, "state": "processed", "mode": "synchronous",
                }, call.caller)
                row = store.insert(staging, {
                    **{k: v for k, v in payload.items() if not k.startswith("sys_")},
                    "sys_import_set": import_set["sys_id"], "sys_import_row": "0",
                }, call.caller)
                result = self._transform(store, staging, row, call)
        except ApiError as error:
            return error_response(error.status, error.message, error.detail)
        return json_response({"import_set": import_set["number"], "staging_table": staging,
                              "result": result}, 201)

    def _transform(
        self, store: RecordStore, staging: str, row: Record, call: ApiCall
    ) -> list[dict[str, str]]:
        transform = self.state.transforms.get(staging)
        if transform is None:
            return []
        status, target = transform.run(store, row, call.caller)
        store.update(staging, row["sys_id"], {
            "sys_import_state": status, "sys_target_table": transform.target_table,
            "sys_target_sys_id": target["sys_id"], "sys_transform_map": transform.name,
        }, call.caller)
        table = store.schema.table(transform.target_table)
        base = call.request.host_url.rstrip("/")
        return [{
            "transform_map": transform.name,
            "table": transform.target_table,
            "display_name": table.display,
            "display_value": store.display_of(target, None),
            "record_link": f"{base}/api/now/table/{transform.target_table}/{target['sys_id']}",
            "status": status,
            "sys_id": target["sys_id"],
        }]
