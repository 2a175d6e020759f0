"""The stub's tables: records in memory, table inheritance, and records as the Table API shows them.

Stored records are never changed in place (an update stores a new dict), so a reader may render
what it selected after the state lock is released.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from snworker.testing import platform
from snworker.testing.query import EncodedQuery, matches, ordered

Record = dict[str, str]
DisplayMode = Literal["false", "true", "all"]

_SYS_ID = re.compile(r"[0-9a-f]{32}")
_NUMBER = re.compile(r"[A-Z]+(\d+)")
_WRITE_PROTECTED = frozenset(platform.SYSTEM_FIELDS) - {"sys_id"}


class TableError(Exception):
    """A Table API failure with the platform's status, message and detail."""

    def __init__(self, status: int, message: str, detail: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


def invalid_table(table: str) -> TableError:
    """The platform's answer for a table that does not exist."""
    return TableError(
        platform.INVALID_TABLE_STATUS, platform.INVALID_TABLE_MESSAGE.format(table=table), None
    )


def wire_value(value: object) -> str:
    """A JSON value as the platform stores it: every field is a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping) and "value" in value:
        return wire_value(value["value"])
    return json.dumps(value)


def is_sys_id(text: str) -> bool:
    """Whether text has the form of a sys_id."""
    return _SYS_ID.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """How records are shown: `sysparm_fields`, `sysparm_display_value`, reference links."""

    fields: tuple[str, ...] = ()
    display: DisplayMode = "false"
    reference_links: bool = True
    base_url: str = ""


class TableStore:
    """Every record of every table, in insertion order."""

    def __init__(self, records: Iterable[Record] = ()) -> None:
        self._records: dict[str, Record] = {}
        self._parents: dict[str, str | None] = dict(platform.TABLE_PARENTS)
        self._fields: dict[str, set[str]] = {table: set() for table in self._parents}
        self._numbers: dict[str, int] = {}
        for record in records:
            self._store(dict(record))

    # --- structure -------------------------------------------------------------------------

    def knows(self, table: str) -> bool:
        """Whether the table exists."""
        return table in self._parents

    def create_table(self, table: str) -> None:
        """Make an unknown table exist, extending nothing."""
        self._parents.setdefault(table, None)
        self._fields.setdefault(table, set())

    def family(self, table: str) -> set[str]:
        """The table and every table that extends it, at any depth."""
        members = {table}
        grew = True
        while grew:
            extensions = {t for t, parent in self._parents.items() if parent in members}
            grew = not extensions <= members
            members |= extensions
        return members

    def _ancestry(self, table: str) -> list[str]:
        chain = [table]
        while (parent := self._parents.get(chain[-1])) is not None:
            chain.append(parent)
        return chain

    def known_fields(self, table: str) -> set[str]:
        """Fields the table has: its own, its ancestors', and the system fields."""
        fields = set(platform.SYSTEM_FIELDS)
        for name in self._ancestry(table):
            fields |= self._fields.get(name, set())
            fields |= set(platform.REFERENCE_FIELDS.get(name, {}))
        return fields

    # --- reading -----------------------------------------------------------------------------

    def get(self, table: str, sys_id: str) -> Record | None:
        """The record with this sys_id if it belongs to the table's family."""
        record = self._records.get(sys_id)
        if record is None or record["sys_class_name"] not in self.family(table):
            return None
        return record

    def select(self, table: str, query: EncodedQuery) -> list[Record]:
        """The records of the table's family that match the query, in the query's order."""
        family = self.family(table)
        known = self.known_fields(table)

        def value_of(record: Record, field: str) -> str | None:
            root = field.split(".", 1)[0]
            return self.value_of(record, field) if root in known else None

        selected = [
            record
            for record in self._records.values()
            if record["sys_class_name"] in family and matches(query, record, value_of)
        ]
        return ordered(selected, query.orderings, value_of)

    def value_of(self, record: Record, field: str) -> str | None:
        """A field's value, following dotted references; None when a step is not a reference."""
        head, _, rest = field.partition(".")
        value = record.get(head, "")
        if not rest:
            return value
        if platform.reference_target(record["sys_class_name"], head) is None:
            return None
        target = self._records.get(value)
        return "" if target is None else self.value_of(target, rest)

    def records(self, table: str) -> list[Record]:
        """Copies of the records of the table's family."""
        family = self.family(table)
        return [dict(r) for r in self._records.values() if r["sys_class_name"] in family]

    # --- writing -----------------------------------------------------------------------------

    def insert(self, table: str, values: Mapping[str, object], now: str, user: str) -> Record:
        """Store a new record of the table and return it."""
        record = {k: wire_value(v) for k, v in values.items() if k not in _WRITE_PROTECTED}
        sys_id = record.get("sys_id", "")
        if not is_sys_id(sys_id):
            sys_id = uuid.uuid4().hex
        if sys_id in self._records:
            raise TableError(403, "Operation Failed", f"Error during insert of {table} ({sys_id})")
        prefix = self._number_prefix(table)
        if prefix and not record.get("number"):
            record["number"] = f"{prefix}{self._numbers.get(table, 0) + 1:07d}"
            record.setdefault("task_effective_number", record["number"])
        record.update(
            sys_id=sys_id,
            sys_class_name=table,
            sys_created_on=now,
            sys_created_by=user,
            sys_updated_on=now,
            sys_updated_by=user,
            sys_mod_count="0",
        )
        self._store(record)
        return record

    def update(
        self, table: str, sys_id: str, values: Mapping[str, object], now: str, user: str
    ) -> Record | None:
        """Change the given fields of a record; None when it does not exist."""
        current = self.get(table, sys_id)
        if current is None:
            return None
        record = dict(current)
        record.update(
            {k: wire_value(v) for k, v in values.items() if k not in platform.SYSTEM_FIELDS}
        )
        record.update(
            sys_updated_on=now,
            sys_updated_by=user,
            sys_mod_count=str(int(current.get("sys_mod_count") or 0) + 1),
        )
        self._store(record)
        return record

    def delete(self, table: str, sys_id: str) -> bool:
        """Remove a record; False when it does not exist."""
        if self.get(table, sys_id) is None:
            return False
        del self._records[sys_id]
        return True

    def _store(self, record: Record) -> None:
        table = record["sys_class_name"]
        self.create_table(table)
        self._records[record["sys_id"]] = record
        self._fields[table].update(record)
        number = _NUMBER.fullmatch(record.get("number", ""))
        if number is not None:
            self._numbers[table] = max(self._numbers.get(table, 0), int(number.group(1)))

    def _number_prefix(self, table: str) -> str | None:
        for name in self._ancestry(table):
            if name in platform.NUMBER_PREFIXES:
                return platform.NUMBER_PREFIXES[name]
        return None

    # --- showing -----------------------------------------------------------------------------

    def render(self, record: Record, options: RenderOptions) -> dict[str, object]:
        """A record as the Table API returns it."""
        table = record["sys_class_name"]
        names = options.fields or tuple(record)
        known = self.known_fields(table) if options.fields else set()
        shown: dict[str, object] = {}
        for name in names:
            if name in record:
                shown[name] = self._render_field(table, name, record[name], options)
            elif "." in name:
                value = self.value_of(record, name)
                if value is not None:
                    shown[name] = self._render_plain(value, value, options.display)
            elif name in known:
                shown[name] = self._render_field(table, name, "", options)
        return shown

    def _render_field(
        self, table: str, name: str, value: str, options: RenderOptions
    ) -> object:
        target = platform.reference_target(table, name)
        if target is None:
            label = platform.choice_label(table, name, value)
            return self._render_plain(value, value if label is None else label, options.display)
        referenced = self._records.get(value)
        display = ""
        if referenced is not None:
            target = referenced["sys_class_name"]
            display = referenced.get(platform.display_field(target), "")
        if not value or not options.reference_links:
            return self._render_plain(value, display, options.display)
        link = f"{options.base_url}/api/now/table/{target}/{value}"
        if options.display == "false":
            return {"link": link, "value": value}
        if options.display == "true":
            return {"display_value": display, "link": link}
        return {"display_value": display, "link": link, "value": value}

    @staticmethod
    def _render_plain(value: str, display: str, mode: DisplayMode) -> object:
        if mode == "false":
            return value
        if mode == "true":
            return display
        return {"display_value": display, "value": value}
