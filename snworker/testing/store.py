"""The record store: every record of every table, and what happens when one is written.

A write fills every column (a default, or ""), numbers the record, appends journal fields to
`sys_journal_field`, and runs the business rules the table's data asks for (`rules.py`).
Stored records are never changed in place (a write stores a new dict), so a reader may render
what it selected after the state lock is released, and a reset may start again from a shared
snapshot.
"""

from __future__ import annotations

import hmac
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from snworker.testing import dictionary, glide, platform
from snworker.testing.query import EncodedQuery, bind, matches, ordered
from snworker.testing.rules import after_write, apply_rules, calculate, default_value
from snworker.testing.schema import Column, Schema, Table, TableDefinition

Record = dict[str, str]

_SYS_ID = re.compile(r"[0-9a-f]{32}")
_NUMBER = re.compile(r"([A-Z]+)(\d+)")


class ApiError(Exception):
    """A REST failure with the platform's status, message and detail."""

    def __init__(self, status: int, message: str, detail: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


def invalid_table(table: str) -> ApiError:
    """The platform's answer for a table that does not exist."""
    return ApiError(
        platform.INVALID_TABLE_STATUS, platform.INVALID_TABLE_MESSAGE.format(table=table), None
    )


def unsupported_query(table: str, problems: Sequence[str]) -> ApiError:
    """The stub's answer to a query it cannot read whole (a strict stub's choice)."""
    unique = ", ".join(dict.fromkeys(problems))
    return ApiError(400, platform.UNSUPPORTED_QUERY_MESSAGE,
                    platform.UNSUPPORTED_QUERY_DETAIL.format(table=table, problems=unique))


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
class Caller:
    """Who reads or writes, and when (the stub's clock)."""

    user_sys_id: str
    user_name: str
    now: float

    @property
    def timestamp(self) -> str:
        """The clock as the platform writes `sys_updated_on` (UTC)."""
        return datetime.fromtimestamp(self.now, UTC).strftime(platform.DATETIME_FORMAT)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Records, number counters and attachment contents, to start stores from."""

    records: Mapping[str, Record] = field(default_factory=dict)
    counters: Mapping[str, int] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict)


class _Scope:
    """What a query on one table needs from the store (see `query.QueryScope`)."""

    def __init__(self, store: RecordStore, table: Table, caller: Caller) -> None:
        self.store, self.table, self.caller = store, table, caller

    def evaluate(self, script: str) -> glide.Value | None:
        return glide.evaluate(script, self.store.script_context(self.caller))

    def now(self) -> float:
        return self.caller.now

    def instance_of(self, table: str) -> list[str] | None:
        schema = self.store.schema
        return sorted(schema.family(table)) if schema.knows(table) else None

    def display_path(self, field: str) -> str | None:
        column = self.table.columns.get(field)
        if column is None or column.type != "reference" or column.reference is None:
            return None
        if not self.store.schema.knows(column.reference):
            return None
        return f"{field}.{self.store.schema.table(column.reference).display}"

    def knows_field(self, field: str) -> bool:
        return self.store.value_of(self.table, {}, field) is not None

    def joins(self, table: str) -> bool:
        return table in self.table.ancestry

    def related_counts(self, table: str, field: str, query: EncodedQuery) -> dict[str, int] | str:
        if not self.store.schema.knows(table):
            return f"the table {table!r}"
        related = self.store.schema.table(table)
        if self.store.value_of(related, {}, field) is None:
            return f"the field {table}.{field}"
        counts: dict[str, int] = {}
        for record in self.store.select(table, query, self.caller):
            value = (self.store.value_of(related, record, field) or "").casefold()
            counts[value] = counts.get(value, 0) + 1
        return counts


class RecordStore:
    """Every record of every table of one stub instance, by sys_id, in insertion order."""

    def __init__(self, schema: Schema, snapshot: Snapshot = Snapshot()) -> None:
        self.schema = schema
        self.records: dict[str, Record] = dict(snapshot.records)
        self.counters: dict[str, int] = dict(snapshot.counters)
        self.files: dict[str, bytes] = dict(snapshot.files)
        self.new_sys_id: Callable[[], str] = lambda: uuid.uuid4().hex
        # Refuse a query with a term the stub cannot read or a field the table lacks (a 400
        # naming it), rather than ignore it as the platform does with an unknown field.
        self.strict_queries = True

    def snapshot(self) -> Snapshot:
        """What a new store needs to start where this one is."""
        return Snapshot(dict(self.records), dict(self.counters), dict(self.files))

    def table(self, name: str) -> Table:
        """The table, or the platform's "Invalid table" error."""
        if not self.schema.knows(name):
            raise invalid_table(name)
        return self.schema.table(name)

    # --- reading -------------------------------------------------------------------------------

    def get(self, table: str, sys_id: str) -> Record | None:
        """The record with this sys_id if it belongs to the table's family."""
        record = self.records.get(sys_id)
        if record is None or record["sys_class_name"] not in self.schema.family(table):
            return None
        return record

    def select(self, table_name: str, query: EncodedQuery, caller: Caller) -> list[Record]:
        """The records of the table's family that match the query, in the query's order."""
        table = self.table(table_name)
        family = self.schema.family(table_name)
        bound = bind(query, _Scope(self, table, caller))
        if bound.unsupported and self.strict_queries:
            raise unsupported_query(table_name, bound.unsupported)

        def value_of(record: Record, name: str) -> str | None:
            return self.value_of(table, record, name)

        def order_value(record: Record, name: str) -> str | None:
            value = self.value_of(table, record, name)
            column = table.columns.get(name)
            if value and column is not None and column.type == "reference":
                target = self.records.get(value)
                return value if target is None else self.display_of(target, None)
            return value

        selected = [
            record
            for record in self.records.values()
            if record["sys_class_name"] in family and matches(bound, record, value_of)
        ]
        return ordered(selected, bound.orderings, order_value)

    def value_of(self, table: Table, record: Record, name: str) -> str | None:
        """A field's value, following dotted references; None for a field the table lacks."""
        head, _, rest = name.partition(".")
        column = table.columns.get(head)
        if column is None:
            return None
        value = record.get(head, "")
        if not rest:
            return "" if head in table.hidden else value
        if column.type != "reference" or not self.schema.knows(column.reference or ""):
            return None
        target = self.records.get(value)
        target_table = self.schema.table(
            column.reference if target is None else target["sys_class_name"]  # type: ignore[arg-type]
        )
        return self.value_of(target_table, target or {}, rest)

    def display_of(self, record: Record, column: Column | None) -> str:
        """The display value of a column of a record (None: the record's own display value)."""
        table = self.schema.table(record["sys_class_name"])
        if column is None:
            column = table.columns.get(table.display)
            if column is None:
                return record["sys_id"]
        value = record.get(column.name, "")
        if column.type in platform.HIDDEN_TYPES or column.type in platform.JOURNAL_TYPES:
            return ""
        if column.type == "reference":
            target = self.records.get(value)
            return "" if target is None else self.display_of(target, None)
        if column.type == "sys_class_name" and self.schema.knows(value):
            return self.schema.table(value).label
        own = table.columns.get(column.name, column)
        return own.choices.get(value, column.choices.get(value, value))

    def records_of(self, table: str) -> list[Record]:
        """Copies of the records of the table's family, as the Table API would show them."""
        family = self.schema.family(table)
        shown = []
        for record in self.records.values():
            if record["sys_class_name"] in family:
                copy = dict(record)
                for name in self.schema.table(record["sys_class_name"]).hidden:
                    copy[name] = ""
                shown.append(copy)
        return shown

    # --- users -----------------------------------------------------------------------------

    def user_name_of(self, user_sys_id: str) -> str:
        """The user_name of a user, or "" for none."""
        return self.records.get(user_sys_id, {}).get("user_name", "")

    def find_user(self, field: str, value: str) -> str | None:
        """The sys_id of the active user whose `field` is `value` (case-insensitive), or None."""
        users = self.schema.family("sys_user") if self.schema.knows("sys_user") else frozenset()
        for record in self.records.values():
            if (
                record["sys_class_name"] in users
                and value
                and record.get(field, "").casefold() == value.casefold()
                and record.get("active") == "true"
            ):
                return record["sys_id"]
        return None

    def authenticate(self, user_name: str, password: str) -> str | None:
        """The sys_id of the active user with this user name and password, or None."""
        users = self.schema.family("sys_user") if self.schema.knows("sys_user") else frozenset()
        for record in self.records.values():
            if (
                record["sys_class_name"] in users
                and record.get("user_name", "").casefold() == user_name.casefold()
                and record.get("active") == "true"
                and record.get("locked_out") != "true"
                and record.get("user_password")
                and hmac.compare_digest(record["user_password"].encode(), password.encode())
            ):
                return record["sys_id"]
        return None

    def groups_of(self, user_sys_id: str) -> list[str]:
        """The sys_ids of the groups the user is a member of."""
        return [
            r["group"]
            for r in self.records.values()
            if r["sys_class_name"] == "sys_user_grmember" and r.get("user") == user_sys_id
        ]

    def script_context(self, caller: Caller, **settings: object) -> glide.ScriptContext:
        """What a script evaluated for this caller may read."""
        return glide.ScriptContext(
            now=caller.now,
            user_sys_id=caller.user_sys_id,
            user_name=caller.user_name,
            groups=lambda: self.groups_of(caller.user_sys_id),
            **settings,  # type: ignore[arg-type]
        )

    # --- the schema ------------------------------------------------------------------------------

    def define(self, definition: TableDefinition, caller: Caller) -> None:
        """Add a table or change one, and write its rows of the schema tables."""
        self.schema.define(definition)
        self.describe(definition.name, caller)

    def describe(self, name: str, caller: Caller) -> None:
        """Write the table's `sys_db_object` and `sys_dictionary` rows anew."""
        if not all(self.schema.knows(t) for t in dictionary.SCHEMA_TABLES):
            return
        stale = [
            sys_id for sys_id, record in self.records.items()
            if record["sys_class_name"] in dictionary.SCHEMA_TABLES and record["name"] == name
        ]
        for sys_id in stale:
            del self.records[sys_id]
        self._write_rows(dictionary.TABLES, [dictionary.table_row(self.schema, name)], caller)
        self._write_rows(dictionary.COLUMNS, dictionary.column_rows(self.schema, name), caller)

    def _write_rows(self, table_name: str, rows: Iterable[Mapping[str, str]], caller: Caller
                    ) -> None:
        """Store rows that need no rules, numbers or scripted defaults, quickly (the schema
        tables' hundreds of rows)."""
        table = self.schema.table(table_name)
        stamp = caller.timestamp
        template = {
            name: "" if name in platform.SYSTEM_COLUMNS or glide.is_script(column.default)
            else column.default
            for name, column in table.columns.items()
        }
        template.update(sys_class_name=table_name, sys_created_on=stamp,
                        sys_created_by=caller.user_name, sys_updated_on=stamp,
                        sys_updated_by=caller.user_name, sys_mod_count="0")
        for row in rows:
            record = {**template, **row}
            self.records[record["sys_id"]] = record

    def _widen(self, table: Table, values: Mapping[str, object], caller: Caller) -> Table:
        """A loose table with a string column for every field written to it."""
        before = table.column_names
        self.schema.widen(table.name, values)
        table = self.schema.table(table.name)
        if table.column_names != before:
            self.describe(table.name, caller)
        return table

    # --- writing -------------------------------------------------------------------------------

    def insert(
        self,
        table_name: str,
        values: Mapping[str, object],
        caller: Caller,
        *,
        input_display: bool = False,
    ) -> Record:
        """Store a new record of the table and return it."""
        table = self.table(table_name)
        if table.loose:
            table = self._widen(table, values, caller)
        written = self._accepted(table, values, input_display)
        sys_id = written.pop("sys_id", "")
        if not is_sys_id(sys_id):
            sys_id = self.new_sys_id()
        if sys_id in self.records:
            raise ApiError(
                403, "Operation Failed", f"Error during insert of {table_name} ({sys_id})"
            )
        journal = {name: written.pop(name) for name in table.journals if name in written}
        record: Record = {}
        context = self.script_context(
            caller, next_number=lambda: self._next_number(table), current=record
        )
        for name, column in table.columns.items():
            if name in written:
                record[name] = written[name]
            elif column.default and name not in platform.SYSTEM_COLUMNS:
                record[name] = default_value(column, context)
            else:
                record[name] = ""
        self._see_number(table, record.get("number", ""))
        calculate(table, record, written, new=True)
        stamp = caller.timestamp
        record.update(
            sys_id=sys_id,
            sys_class_name=table_name,
            sys_created_on=stamp,
            sys_created_by=caller.user_name,
            sys_updated_on=stamp,
            sys_updated_by=caller.user_name,
            sys_mod_count="0",
        )
        apply_rules(table, None, record, written, self.script_context(caller))
        self.records[sys_id] = record
        self._append_journal(table_name, sys_id, journal, caller)
        after_write(self, table, None, record, caller)
        return record

    def update(
        self,
        table_name: str,
        sys_id: str,
        values: Mapping[str, object],
        caller: Caller,
        *,
        input_display: bool = False,
    ) -> Record | None:
        """Change the given fields of a record; None when it does not exist."""
        table = self.table(table_name)
        current = self.get(table_name, sys_id)
        if current is None:
            return None
        if table.loose:
            table = self._widen(table, values, caller)
        written = self._accepted(table, values, input_display)
        written.pop("sys_id", None)
        journal = {name: written.pop(name) for name in table.journals if name in written}
        own = self.schema.table(current["sys_class_name"])
        record = {**current, **written}
        calculate(own, record, written, new=False)
        apply_rules(own, current, record, written, self.script_context(caller))
        if record == current and not any(journal.values()):
            return current
        record.update(
            sys_updated_on=caller.timestamp,
            sys_updated_by=caller.user_name,
            sys_mod_count=str(int(current.get("sys_mod_count") or 0) + 1),
        )
        self.records[sys_id] = record
        self._append_journal(current["sys_class_name"], sys_id, journal, caller)
        after_write(self, own, current, record, caller)
        return self.records[sys_id]

    def delete(self, table: str, sys_id: str) -> bool:
        """Remove a record and its attachments; False when it does not exist."""
        if self.get(table, sys_id) is None:
            return False
        del self.records[sys_id]
        attachments = [
            r["sys_id"] for r in self.records.values()
            if r["sys_class_name"] == platform.ATTACHMENT_TABLE and r.get("table_sys_id") == sys_id
        ]
        for attachment in attachments:
            del self.records[attachment]
            self.files.pop(attachment, None)
        return True

    # --- the parts of a write ----------------------------------------------------------------

    def _accepted(
        self, table: Table, values: Mapping[str, object], input_display: bool
    ) -> Record:
        """The values the table has columns for, as stored strings; the rest is dropped."""
        accepted: Record = {}
        for name, raw in values.items():
            column = table.columns.get(name)
            if column is None or (name in platform.SYSTEM_COLUMNS and name != "sys_id"):
                continue
            value = wire_value(raw)
            accepted[name] = self._stored_value(column, value) if input_display else value
        return accepted

    def _stored_value(self, column: Column, text: str) -> str:
        """The stored value a display value stands for (sysparm_input_display_value)."""
        if column.type == "reference" and text and self.schema.knows(column.reference or ""):
            family = self.schema.family(column.reference or "")
            folded = text.casefold()
            for record in self.records.values():
                if (record["sys_class_name"] in family
                        and self.display_of(record, None).casefold() == folded):
                    return record["sys_id"]
            target = self.records.get(text)
            return text if target is not None and target["sys_class_name"] in family else ""
        for value, label in column.choices.items():
            if label.casefold() == text.casefold():
                return value
        return text

    def _next_number(self, table: Table) -> str:
        if table.number is None:
            return ""
        value = self.counters.get(table.number_owner, table.number.start - 1) + 1
        self.counters[table.number_owner] = value
        return table.number.format(value)

    def _see_number(self, table: Table, number: str) -> None:
        """Keep the counter past a number that was written rather than drawn."""
        match = _NUMBER.fullmatch(number)
        if table.number is None or match is None or match.group(1) != table.number.prefix:
            return
        seen = self.counters.get(table.number_owner, table.number.start - 1)
        self.counters[table.number_owner] = max(seen, int(match.group(2)))

    def _append_journal(
        self, table: str, sys_id: str, entries: Mapping[str, str], caller: Caller
    ) -> None:
        for element, text in entries.items():
            if text and self.schema.knows(platform.JOURNAL_TABLE):
                self.insert(
                    platform.JOURNAL_TABLE,
                    {"element_id": sys_id, "name": table, "element": element, "value": text},
                    caller,
                )
