"""Table definitions: columns with types, defaults, choices and references, and inheritance.

The shipped tables are data, one JSON file per table in `tables/`:

    {"name": "incident", "label": "Incident", "extends": "task",
     "number": {"prefix": "INC", "start": 10001}, "close_states": ["7", "8"],
     "columns": {"caller_id": {"type": "reference", "reference": "sys_user"},
                 "state": {"default": "1", "choices": {"1": "New", ...}}}}

A table has its ancestors' columns; an entry for an inherited column changes only the keys it
gives (a dictionary override). A test adds tables, or columns to a table, with `define_table`.
A column may also say `mandatory` ("true") and `max_length`, which the schema tables show; a
table may give `approval` (`{"state": "-3", "approved": "-2", "rejected": "-5"}`), the states
of the approval rule (`rules.py`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Final

from snworker.testing import platform

_NAME: Final = re.compile(r"[a-z][a-z0-9_]*")
_COLUMN_KEYS: Final = frozenset(
    {"type", "default", "reference", "choices", "calculated", "mandatory", "max_length"}
)
_TABLE_KEYS: Final = frozenset(
    {"name", "label", "extends", "display", "number", "close_states", "resolve_states",
     "priority_lookup", "approval", "columns"}
)


# A table with an approval: the state that requests it, and where approving or rejecting
# moves the record (rules.py).
APPROVAL_KEYS: Final = ("state", "approved", "rejected")


class DefinitionError(ValueError):
    """A table definition that cannot be used."""


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a table, with what its definition (and its overrides) say."""

    name: str
    type: str = "string"
    default: str = ""
    reference: str | None = None
    choices: Mapping[str, str] = field(default_factory=dict)
    calculated: tuple[str, ...] = ()
    mandatory: bool = False
    max_length: str = ""


@dataclass(frozen=True, slots=True)
class NumberFormat:
    """How a table numbers its records: `INC0010001`."""

    prefix: str
    start: int
    digits: int = platform.NUMBER_DIGITS

    def format(self, value: int) -> str:
        """The number for a counter value."""
        return f"{self.prefix}{value:0{self.digits}d}"


@dataclass(frozen=True, slots=True)
class TableDefinition:
    """A table as written in data: its own columns and its overrides of inherited ones.

    A loose table is one a record was inserted into without a definition: every field
    written to it becomes a string column.
    """

    name: str
    label: str = ""
    extends: str | None = None
    display: str | None = None
    number: NumberFormat | None = None
    close_states: tuple[str, ...] | None = None
    resolve_states: tuple[str, ...] | None = None
    priority_lookup: Mapping[str, str] | None = None
    approval: Mapping[str, str] | None = None
    columns: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    loose: bool = False


@dataclass(frozen=True, slots=True)
class Table:
    """A table with everything it inherits resolved."""

    name: str
    label: str
    ancestry: tuple[str, ...]
    columns: Mapping[str, Column]
    display: str
    number: NumberFormat | None
    number_owner: str
    close_states: frozenset[str]
    resolve_states: frozenset[str]
    priority_lookup: Mapping[str, str]
    approval: Mapping[str, str]
    loose: bool
    column_names: tuple[str, ...]
    references: tuple[str, ...]
    journals: tuple[str, ...]
    hidden: tuple[str, ...]


def _strings(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise DefinitionError(f"{what} must be a list of strings")
    return tuple(value)


def _column_spec(table: str, name: str, spec: object) -> dict[str, Any]:
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, Mapping) or not set(spec) <= _COLUMN_KEYS:
        raise DefinitionError(
            f"{table}.{name}: a column is a type name or an object with keys {sorted(_COLUMN_KEYS)}"
        )
    if not _NAME.fullmatch(name):
        raise DefinitionError(f"{table}: {name!r} is not a column name")
    checked: dict[str, Any] = {}
    for key, value in spec.items():
        if key == "choices":
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise DefinitionError(f"{table}.{name}: choices map values to labels")
            checked[key] = dict(value)
        elif key == "calculated":
            checked[key] = _strings(value, f"{table}.{name}: calculated")
        elif value is not None and not isinstance(value, str):
            raise DefinitionError(f"{table}.{name}: {key} must be a string")
        else:
            checked[key] = value
    return checked


def definition_from_data(data: Mapping[str, Any]) -> TableDefinition:
    """A definition from its JSON form; raises `DefinitionError` when it cannot be used."""
    unknown = set(data) - _TABLE_KEYS
    name = data.get("name")
    if unknown or not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DefinitionError(f"a table needs a lowercase name and only keys {sorted(_TABLE_KEYS)}")
    columns = data.get("columns") or {}
    if not isinstance(columns, Mapping):
        raise DefinitionError(f"{name}: columns must be an object")
    number = data.get("number")
    if number is not None:
        if not isinstance(number, Mapping) or not isinstance(number.get("prefix"), str):
            raise DefinitionError(f"{name}: number is {{'prefix': 'INC', 'start': 10001}}")
        number = NumberFormat(number["prefix"], int(number.get("start", 1)))
    lookup = data.get("priority_lookup")
    if lookup is not None and not isinstance(lookup, Mapping):
        raise DefinitionError(f"{name}: priority_lookup maps 'impact,urgency' to a priority")
    approval = data.get("approval")
    if approval is not None and (
        not isinstance(approval, Mapping) or set(approval) != set(APPROVAL_KEYS)
        or not all(isinstance(v, str) for v in approval.values())
    ):
        raise DefinitionError(f"{name}: approval gives the states {sorted(APPROVAL_KEYS)}")
    for key in ("label", "extends", "display"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise DefinitionError(f"{name}: {key} must be a string")
    states = {
        key: None if data.get(key) is None else _strings(data[key], f"{name}: {key}")
        for key in ("close_states", "resolve_states")
    }
    return TableDefinition(
        name=name,
        label=data.get("label") or name,
        extends=data.get("extends"),
        display=data.get("display"),
        number=number,
        close_states=states["close_states"],
        resolve_states=states["resolve_states"],
        priority_lookup=None if lookup is None else {str(k): str(v) for k, v in lookup.items()},
        approval=None if approval is None else dict(approval),
        columns={n: _column_spec(name, n, spec) for n, spec in columns.items()},
    )


@cache
def _shipped() -> dict[str, TableDefinition]:
    definitions = {}
    for entry in sorted(resources.files("snworker.testing").joinpath("tables").iterdir(),
                        key=lambda e: e.name):
        if entry.name.endswith(".json"):
            definition = definition_from_data(json.loads(entry.read_text(encoding="utf-8")))
            definitions[definition.name] = definition
    return definitions


def _merged(base: TableDefinition, change: TableDefinition) -> TableDefinition:
    """`base` with what `change` gives: new columns added, given column keys replaced."""
    columns = {name: dict(spec) for name, spec in base.columns.items()}
    for name, spec in change.columns.items():
        columns[name] = {**columns.get(name, {}), **spec}
    return TableDefinition(
        name=base.name,
        label=change.label if change.label != change.name else base.label,
        extends=change.extends or base.extends,
        display=change.display or base.display,
        number=change.number or base.number,
        close_states=base.close_states if change.close_states is None else change.close_states,
        resolve_states=(
            base.resolve_states if change.resolve_states is None else change.resolve_states
        ),
        priority_lookup=change.priority_lookup or base.priority_lookup,
        approval=change.approval or base.approval,
        columns=columns,
        loose=base.loose and change.loose,
    )


class Schema:
    """The tables of one stub instance."""

    def __init__(self, definitions: Mapping[str, TableDefinition]) -> None:
        self._definitions = dict(definitions)
        self._tables: dict[str, Table] = {}
        self._families: dict[str, frozenset[str]] = {}
        # What other modules work out from the tables (render plans), until a table changes.
        self.cache: dict[tuple[str, ...], object] = {}

    @classmethod
    def shipped(cls) -> Schema:
        """The tables defined by the data shipped with the package."""
        return cls(_shipped())

    def names(self) -> list[str]:
        """Every table's name."""
        return sorted(self._definitions)

    def definition(self, name: str) -> TableDefinition:
        """The table as its data defines it (own columns and overrides only)."""
        return self._definitions[name]

    def knows(self, name: str) -> bool:
        """Whether the table exists."""
        return name in self._definitions

    def define(self, definition: TableDefinition) -> None:
        """Add a table, or add and change columns of an existing one."""
        current = self._definitions.get(definition.name)
        merged = definition if current is None else _merged(current, definition)
        parent = merged.extends
        seen = {merged.name}
        while parent is not None:
            if parent in seen or parent not in self._definitions:
                raise DefinitionError(f"{merged.name}: cannot extend {merged.extends!r}")
            seen.add(parent)
            parent = self._definitions[parent].extends
        self._definitions[merged.name] = merged
        self._tables.clear()
        self._families.clear()
        self.cache.clear()

    def widen(self, name: str, fields: Iterable[str]) -> None:
        """Make a loose table exist and have these fields as string columns."""
        current = self._definitions.get(name)
        if current is not None and not current.loose:
            return
        new = [f for f in fields if f not in platform.SYSTEM_COLUMNS
               and (current is None or f not in current.columns)]
        if current is None or new:
            columns = {f: {"type": "string"} for f in new if _NAME.fullmatch(f)}
            self.define(TableDefinition(name, name, columns=columns, loose=True))

    def family(self, name: str) -> frozenset[str]:
        """The table and every table that extends it, at any depth."""
        members = self._families.get(name)
        if members is None:
            members = frozenset(t for t in self._definitions if name in self._ancestry(t))
            self._families[name] = members
        return members

    def _ancestry(self, name: str) -> tuple[str, ...]:
        chain = [name]
        while (parent := self._definitions[chain[-1]].extends) is not None:
            chain.append(parent)
        return tuple(chain)

    def table(self, name: str) -> Table:
        """The resolved table; KeyError when it does not exist."""
        table = self._tables.get(name)
        if table is None:
            table = self._tables[name] = self._resolve(name)
        return table

    def _resolve(self, name: str) -> Table:
        ancestry = self._ancestry(name)
        definitions = [self._definitions[t] for t in ancestry]
        specs: dict[str, dict[str, Any]] = {}
        for definition in reversed(definitions):
            for column, spec in definition.columns.items():
                specs[column] = {**specs.get(column, {}), **spec}
        for column, kind in platform.SYSTEM_COLUMNS.items():
            specs.setdefault(column, {"type": kind})
        columns = {
            column: Column(
                column,
                type=spec.get("type") or "string",
                default=spec.get("default") or "",
                reference=spec.get("reference"),
                choices=spec.get("choices") or {},
                calculated=tuple(spec.get("calculated") or ()),
                mandatory=spec.get("mandatory") == "true",
                max_length=spec.get("max_length") or "",
            )
            for column, spec in specs.items()
        }

        def nearest(attribute: str) -> Any:
            return next((getattr(d, attribute) for d in definitions
                         if getattr(d, attribute) is not None), None)

        number_owner = next((d.name for d in definitions if d.number is not None), name)
        return Table(
            name=name,
            label=definitions[0].label or name,
            ancestry=ancestry,
            columns=columns,
            display=nearest("display") or platform.DEFAULT_DISPLAY_COLUMN,
            number=nearest("number"),
            number_owner=number_owner,
            close_states=frozenset(nearest("close_states") or ()),
            resolve_states=frozenset(nearest("resolve_states") or ()),
            priority_lookup=nearest("priority_lookup") or {},
            approval=nearest("approval") or {},
            loose=definitions[0].loose,
            column_names=tuple(columns),
            references=tuple(c for c, col in columns.items() if col.type == "reference"),
            journals=tuple(c for c, col in columns.items() if col.type in platform.JOURNAL_TYPES),
            hidden=tuple(c for c, col in columns.items() if col.type in platform.HIDDEN_TYPES),
        )

    def copy(self) -> Schema:
        """A schema that a test may change without changing this one."""
        return Schema(self._definitions)


def table_columns(name: str) -> dict[str, str]:
    """The columns of a shipped table, inherited and system ones included, with their types.

    Types are the platform's internal type names (`string`, `integer`, `boolean`,
    `glide_date_time`, `reference`, `journal_input`, ...). Raises KeyError for a table the
    package does not define.
    """
    schema = Schema.shipped()
    if not schema.knows(name):
        raise KeyError(f"no table definition named {name!r}")
    return {column.name: column.type for column in schema.table(name).columns.values()}
