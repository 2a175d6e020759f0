"""What happens to a record as it is written: defaults, calculated columns, business rules.

The rules are those a table's data asks for: entering one of its close states sets `active`
false and stamps `closed_at`/`closed_by`, leaving them sets `active` true again, entering a
resolve state stamps `resolved_at`/`resolved_by`, and a priority lookup derives `priority` from
impact and urgency.
"""

from __future__ import annotations

from collections.abc import Mapping

from snworker.testing import glide, platform
from snworker.testing.schema import Column, Table

Record = dict[str, str]


def default_value(column: Column, context: glide.ScriptContext) -> str:
    """A column's default: literal, or a script evaluated for the record being written."""
    if not glide.is_script(column.default):
        return column.default
    value = glide.evaluate(column.default, context)
    if isinstance(value, list):
        return ",".join(value)
    return value or ""


def calculate(table: Table, record: Record, written: Record, new: bool) -> None:
    """Calculated columns (a user's `name` from first and last name)."""
    for name, column in table.columns.items():
        if column.calculated and name not in written and (
            (new and not record.get(name)) or any(p in written for p in column.calculated)
        ):
            record[name] = " ".join(record.get(p, "") for p in column.calculated).strip()


def apply_rules(
    table: Table,
    before: Record | None,
    record: Record,
    written: Record,
    context: glide.ScriptContext,
) -> None:
    """The business rules the table's data asks for, on `state` and the priority inputs."""
    old, state = (before or {}).get("state"), record.get("state", "")
    if state != old and "state" in table.columns:
        stamps: Mapping[str, str] = {}
        if state in table.close_states and old not in table.close_states:
            record["active"] = "false"
            stamps = platform.CLOSE_STAMPS
        elif before is not None and old in table.close_states:
            record["active"] = "true"
        if state in table.resolve_states:
            stamps = {**stamps, **platform.RESOLVE_STAMPS}
        for name, script in stamps.items():
            if name in table.columns and name not in written:
                record[name] = str(glide.evaluate(script, context) or "")
    lookup = table.priority_lookup
    if lookup and (
        any(name in written for name in platform.PRIORITY_INPUTS)
        or (before is None and "priority" not in written)
    ):
        key = ",".join(record.get(name, "") for name in platform.PRIORITY_INPUTS)
        record["priority"] = lookup.get(key, record.get("priority", ""))
