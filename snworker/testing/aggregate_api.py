"""The Aggregate API: `GET /api/now[/v1]/stats/{table}`.

    ?sysparm_count=true&sysparm_avg_fields=priority  ->  {"result": {"stats": {"count": "30",
                                                          "avg": {"priority": "2.9"}}}}
    &sysparm_group_by=state                          ->  {"result": [{"stats": {...},
                                                          "groupby_fields": [{"field": "state",
                                                          "value": "1"}]}, ...]}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from snworker.testing import platform
from snworker.testing.query import Condition, Ordering, holds, ordered, parse
from snworker.testing.schema import Table
from snworker.testing.state import StubState
from snworker.testing.store import ApiError, Record, RecordStore
from snworker.testing.wire import (
    ApiCall,
    Route,
    display_mode,
    error_response,
    flag,
    json_response,
    names,
)

_NUMBER: Final = re.compile(r"-?\d+(?:\.\d+)?")
_AGGREGATES: Final = ("avg", "min", "max", "sum")
_HAVING_OPERATORS: Final = ("=", "!=", ">", ">=", "<", "<=")


def _text(number: float) -> str:
    return str(int(number)) if number == int(number) else str(number)


def _aggregate(kind: str, values: Sequence[str]) -> str:
    numbers = [float(v) for v in values if _NUMBER.fullmatch(v)]
    if kind == "avg":
        average = sum(numbers) / len(numbers) if numbers else None
        return "" if average is None else f"{average:.{platform.AVERAGE_DECIMALS}f}"
    if kind == "sum":
        return _text(sum(numbers))
    present = [v for v in values if v != ""]
    if not present:
        return ""
    key: Callable[[str], tuple[int, float, str]] = lambda v: (  # noqa: E731
        (0, float(v), "") if _NUMBER.fullmatch(v) else (1, 0.0, v.casefold()))
    return (min if kind == "min" else max)(present, key=key)


class AggregateApi:
    """Counts, averages, minimums, maximums and sums over a query, grouped or not."""

    routes: Final = (
        Route("/api/now/stats/<table>", "stats.table"),
        Route("/api/now/v1/stats/<table>", "stats.table"),
    )

    def __init__(self, state: StubState) -> None:
        self.state = state

    def handle(self, call: ApiCall, endpoint: str, arguments: Mapping[str, str]) -> Response:
        """Answer one request; every failure comes back in the platform's envelope."""
        args = call.request.args
        try:
            with self.state.lock:
                store = self.state.store
                table = store.table(arguments["table"])
                selected = store.select(table.name, parse(args.get("sysparm_query", "")),
                                        call.caller)
                wanted = {kind: [f for f in names(args, f"sysparm_{kind}_fields")
                                 if f in table.columns] for kind in _AGGREGATES}
                group_by = [f for f in names(args, "sysparm_group_by") if f in table.columns]
                if not group_by:
                    return json_response({"result": {"stats": self._stats(
                        store, table, selected, flag(args, "sysparm_count"), wanted)}})
                groups = self._groups(store, table, selected, group_by, args)
        except ApiError as error:
            return error_response(error.status, error.message, error.detail)
        return json_response({"result": groups})

    def _stats(self, store: RecordStore, table: Table, records: Sequence[Record],
               counted: bool, wanted: Mapping[str, list[str]]) -> dict[str, object]:
        stats: dict[str, object] = {}
        if counted:
            stats["count"] = str(len(records))
        for kind, fields in wanted.items():
            if fields:
                stats[kind] = {f: _aggregate(kind, [store.value_of(table, r, f) or ""
                                                    for r in records]) for f in fields}
        return stats

    def _groups(self, store: RecordStore, table: Table, records: Sequence[Record],
                group_by: list[str], args: MultiDict[str, str]) -> list[dict[str, object]]:
        ordering = [Ordering(f, False) for f in group_by]
        groups: dict[tuple[str, ...], list[Record]] = {}
        for record in ordered(records, ordering, lambda r, f: store.value_of(table, r, f)):
            key = tuple(store.value_of(table, record, f) or "" for f in group_by)
            groups.setdefault(key, []).append(record)
        display = display_mode(args)
        counted = flag(args, "sysparm_count")
        wanted = {kind: [f for f in names(args, f"sysparm_{kind}_fields")
                         if f in table.columns] for kind in _AGGREGATES}
        having = self._having(args.get("sysparm_having", ""))
        result: list[dict[str, object]] = []
        for key, members in groups.items():
            if not all(test(members, store, table) for test in having):
                continue
            fields: list[dict[str, str]] = []
            for name, value in zip(group_by, key, strict=True):
                entry = {"field": name, "value": value}
                if display != "false":
                    shown = store.display_of(members[0], table.columns[name])
                    entry["display_value"] = shown
                    if display == "true":
                        entry["value"] = shown
                fields.append(entry)
            result.append({"stats": self._stats(store, table, members, counted, wanted),
                           "groupby_fields": fields})
        return result

    @staticmethod
    def _having(text: str) -> list[_Having]:
        """`sysparm_having=count^state^>^2`: aggregate, field, operator, value per clause."""
        parts = text.split("^")
        clauses = [parts[start : start + 4] for start in range(0, len(parts) - 3, 4)]
        return [_having(*clause) for clause in clauses
                if clause[2] in _HAVING_OPERATORS and clause[0] in ("count", *_AGGREGATES)]


_Having = Callable[[Sequence[Record], RecordStore, Table], bool]


def _having(kind: str, field: str, operator: str, value: str) -> _Having:
    """Whether a group's aggregate meets one `sysparm_having` clause."""

    def test(members: Sequence[Record], store: RecordStore, table: Table) -> bool:
        if kind == "count":
            measured = str(len(members))
        else:
            measured = _aggregate(kind, [store.value_of(table, r, field) or "" for r in members])
        return holds(Condition(field, operator, value), measured)

    return test
