"""What happens to a record as it is written: defaults, calculated columns, business rules.

The rules are those a table's data asks for: entering one of its close states sets `active`
false and stamps `closed_at`/`closed_by`, leaving them sets `active` true again, entering a
resolve state stamps `resolved_at`/`resolved_by`, and a priority lookup derives `priority` from
impact and urgency.

Approvals (a table whose data gives `approval`, as `change_request` does): a record entering the
approval state asks for approval (`approval` "requested") and one `sysapproval_approver` row is
created per approver, the members of its assignment group (or the group's manager, or the
caller when there is no group). Approving one row approves the record and moves it to the
approved state; rejecting one rejects it and moves it to the rejected state; the other rows
still requested become "No Longer Required".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

from snworker.testing import glide, platform
from snworker.testing.schema import Column, Schema, Table

Record = dict[str, str]

APPROVALS: Final = "sysapproval_approver"
GROUP_MEMBERS: Final = "sys_user_grmember"
GROUPS: Final = "sys_user_group"


class Caller(Protocol):
    """Who writes (`store.Caller`)."""

    @property
    def user_sys_id(self) -> str:
        """The user's sys_id."""


class Writer(Protocol):
    """What the rules that write other records need from the store (`store.RecordStore`)."""

    schema: Schema
    records: dict[str, Record]

    def insert(self, table_name: str, values: Mapping[str, object], caller: Any) -> Record:
        """Store a new record."""

    def update(
        self, table_name: str, sys_id: str, values: Mapping[str, object], caller: Any
    ) -> Record | None:
        """Change a record."""


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
    approval = table.approval
    if approval and state == approval["state"] and state != old and "approval" in table.columns:
        record["approval"] = "requested"
    lookup = table.priority_lookup
    if lookup and (
        any(name in written for name in platform.PRIORITY_INPUTS)
        or (before is None and "priority" not in written)
    ):
        key = ",".join(record.get(name, "") for name in platform.PRIORITY_INPUTS)
        record["priority"] = lookup.get(key, record.get("priority", ""))


def _approvers(records: Iterable[Record], record: Record, caller: Caller) -> list[str]:
    group = record.get("assignment_group", "")
    approvers: list[str] = []
    manager = ""
    for other in records:
        kind = other["sys_class_name"]
        if kind == GROUP_MEMBERS and other.get("group") == group and other.get("user"):
            approvers.append(other["user"])
        elif kind == GROUPS and other["sys_id"] == group:
            manager = other.get("manager", "")
    if approvers:
        return list(dict.fromkeys(approvers))
    return [manager or caller.user_sys_id] if group else [caller.user_sys_id]


def after_write(
    store: Writer, table: Table, before: Record | None, record: Record, caller: Caller
) -> None:
    """The rules that write other records once this one is stored: approvals."""
    old, state = (before or {}).get("state"), record.get("state", "")
    if state == old:
        return
    approval = table.approval
    if approval and state == approval["state"] and store.schema.knows(APPROVALS):
        for approver in _approvers(store.records.values(), record, caller):
            store.insert(APPROVALS, {
                "approver": approver, "sysapproval": record["sys_id"],
                "document_id": record["sys_id"], "source_table": record["sys_class_name"],
                "group": record.get("assignment_group", ""), "state": "requested",
            }, caller)
    elif table.name == APPROVALS and state in ("approved", "rejected") and before is not None:
        target = store.records.get(record.get("sysapproval", ""))
        if target is None or target.get("approval") != "requested":
            return
        for other in list(store.records.values()):
            if (other["sys_class_name"] == APPROVALS and other["sys_id"] != record["sys_id"]
                    and other.get("sysapproval") == target["sys_id"]
                    and other.get("state") == "requested"):
                store.update(APPROVALS, other["sys_id"], {"state": "not_required"}, caller)
        moves = store.schema.table(target["sys_class_name"]).approval
        values = {"approval": state}
        if moves:
            values["state"] = moves[state]
        store.update(target["sys_class_name"], target["sys_id"], values, caller)
