"""Records as the Table API shows them: `sysparm_fields`, display values, reference links.

A record is shown with the columns of the table that was asked for (a task list shows task's
columns of an incident), and the choice labels of the record's own class. How each column is
shown is worked out once per table and class (a plan), so a list of a thousand records costs
little more than encoding it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from snworker.testing import platform
from snworker.testing.schema import Column, Table
from snworker.testing.store import Record, RecordStore

DisplayMode = Literal["false", "true", "all"]


class _Kind(Enum):
    PLAIN = 1
    CHOICE = 2
    REFERENCE = 3
    HIDDEN = 4
    CLASS = 5


_Step = tuple[str, _Kind, Mapping[str, str], str]  # name, kind, labels, reference target


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """How records are shown: `sysparm_fields`, `sysparm_display_value`, reference links."""

    fields: tuple[str, ...] = ()
    display: DisplayMode = "false"
    reference_links: bool = True
    base_url: str = ""


def _step(column: Column, own: Column | None) -> _Step:
    choices = own.choices if own is not None and own.choices else column.choices
    if column.type in platform.HIDDEN_TYPES or column.type in platform.JOURNAL_TYPES:
        return column.name, _Kind.HIDDEN, {}, ""
    if column.type == "reference":
        return column.name, _Kind.REFERENCE, {}, column.reference or ""
    if column.type == "sys_class_name":
        return column.name, _Kind.CLASS, {}, ""
    if choices:
        return column.name, _Kind.CHOICE, choices, ""
    return column.name, _Kind.PLAIN, {}, ""


@dataclass(frozen=True, slots=True)
class _Plan:
    """How each column of a table is shown for records of one class."""

    steps: tuple[_Step, ...]
    by_name: Mapping[str, _Step]
    special: tuple[_Step, ...]  # the steps whose stored value is not shown as is


def _plan(store: RecordStore, table: Table, class_name: str) -> _Plan:
    key = ("render", table.name, class_name)
    plan = store.schema.cache.get(key)
    if not isinstance(plan, _Plan):
        own = store.schema.table(class_name).columns if store.schema.knows(class_name) else {}
        steps = tuple(_step(c, own.get(c.name)) for c in table.columns.values())
        special = tuple(s for s in steps if s[1] is _Kind.HIDDEN or s[1] is _Kind.REFERENCE)
        plan = _Plan(steps, {s[0]: s for s in steps}, special)
        store.schema.cache[key] = plan
    return plan


def _display(store: RecordStore, step: _Step, value: str) -> str:
    _, kind, labels, _ = step
    if kind is _Kind.PLAIN:
        return value
    if kind is _Kind.CHOICE:
        return labels.get(value, value)
    if kind is _Kind.HIDDEN:
        return ""
    if kind is _Kind.CLASS:
        return store.schema.table(value).label if store.schema.knows(value) else value
    target = store.records.get(value)
    return "" if target is None else store.display_of(target, None)


def _shown(store: RecordStore, step: _Step, value: str, options: RenderOptions) -> object:
    if step[1] is _Kind.HIDDEN:
        value = ""
    link = None
    if step[1] is _Kind.REFERENCE and value and options.reference_links:
        link = f"{options.base_url}/api/now/table/{step[3]}/{value}"
    if options.display == "false":
        return value if link is None else {"link": link, "value": value}
    display = _display(store, step, value)
    if options.display == "true":
        return display if link is None else {"display_value": display, "link": link}
    if link is None:
        return {"display_value": display, "value": value}
    return {"display_value": display, "link": link, "value": value}


def _dotted(
    store: RecordStore, table: Table, record: Record, name: str, options: RenderOptions
) -> tuple[bool, object]:
    """A dot-walked field (`assigned_to.user_name`); (False, None) when a step does not exist."""
    head, _, rest = name.partition(".")
    column = table.columns.get(head)
    if column is None or column.type != "reference" or not store.schema.knows(
        column.reference or ""
    ):
        return False, None
    target = store.records.get(record.get(head, ""))
    target_table = store.schema.table(
        column.reference if target is None else target["sys_class_name"]  # type: ignore[arg-type]
    )
    target_record = target or {"sys_class_name": target_table.name}
    if "." in rest:
        return _dotted(store, target_table, target_record, rest, options)
    end = target_table.columns.get(rest)
    if end is None:
        return False, None
    step = _plan(store, target_table, target_table.name).by_name[rest]
    return True, _shown(store, step, target_record.get(rest, ""), options)


def _with_display(
    store: RecordStore, plan: _Plan, record: Record, options: RenderOptions
) -> dict[str, object]:
    """Every column with its display value (`sysparm_display_value` true or all)."""
    both = options.display == "all"
    empty: object = {"display_value": "", "value": ""} if both else ""
    shown: dict[str, object] = {}
    for step in plan.steps:
        name, kind, labels, _ = step
        value = record.get(name, "")
        if not value and kind is not _Kind.CHOICE:
            shown[name] = empty  # one object for every empty field: only ever encoded
        elif kind is _Kind.PLAIN or kind is _Kind.CHOICE:
            display = labels.get(value, value) if labels else value
            shown[name] = {"display_value": display, "value": value} if both else display
        else:
            shown[name] = _shown(store, step, value, options)
    return shown


def render(
    store: RecordStore, table: Table, record: Record, options: RenderOptions
) -> dict[str, object]:
    """A record of `table`'s family as the Table API returns it."""
    plan = _plan(store, table, record["sys_class_name"])
    get = record.get
    if not options.fields:
        if options.display == "false":
            shown: dict[str, object] = {name: get(name, "") for name in table.column_names}
            for name, kind, _, target in plan.special:
                if kind is _Kind.HIDDEN:
                    shown[name] = ""
                elif kind is _Kind.REFERENCE and options.reference_links and shown[name]:
                    value = shown[name]
                    shown[name] = {"link": f"{options.base_url}/api/now/table/{target}/{value}",
                                   "value": value}
            return shown
        return _with_display(store, plan, record, options)
    result: dict[str, object] = {}
    for name in options.fields:
        step = plan.by_name.get(name)
        if step is not None:
            result[name] = _shown(store, step, get(name, ""), options)
        elif "." in name:
            found, value = _dotted(store, table, record, name, options)
            if found:
                result[name] = value
    return result
