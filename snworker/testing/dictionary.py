"""The schema tables, `sys_db_object` and `sys_dictionary`, generated from the table definitions.

Never written by hand: the store writes a table's rows whenever the table is defined or changed
(`RecordStore.define`), so they describe exactly the tables that exist, as the platform's own
do. `sys_db_object` has one row per table, with its `super_class`; `sys_dictionary` one row per
column on the table that defines it (a column inherited from a parent is on the parent's rows,
the system columns on the root tables'), plus the table's own "collection" row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from snworker.testing import platform
from snworker.testing.schema import Schema

TABLES: Final = "sys_db_object"
COLUMNS: Final = "sys_dictionary"
SCHEMA_TABLES: Final = (TABLES, COLUMNS)

Row = dict[str, str]


def table_sys_id(name: str) -> str:
    """The sys_id of a table's `sys_db_object` row."""
    return platform.sys_id_for(TABLES, name)


def column_sys_id(table: str, element: str) -> str:
    """The sys_id of a column's `sys_dictionary` row (element "" for the collection row)."""
    return platform.sys_id_for(COLUMNS, table, element)


def _label(element: str) -> str:
    return element.replace("_", " ").strip().capitalize()


def table_row(schema: Schema, name: str) -> Row:
    """The table's `sys_db_object` row."""
    table = schema.table(name)
    parent = schema.definition(name).extends
    return {
        "sys_id": table_sys_id(name),
        "name": name,
        "label": table.label,
        "super_class": "" if parent is None else table_sys_id(parent),
        "number_ref": "" if table.number is None else table.number.prefix,
    }


def column_rows(schema: Schema, name: str) -> Iterator[Row]:
    """The `sys_dictionary` rows of the columns the table itself adds."""
    table = schema.table(name)
    parent = schema.definition(name).extends
    inherited = () if parent is None else schema.table(parent).column_names
    yield {"sys_id": column_sys_id(name, ""), "name": name, "element": "",
           "column_label": table.label, "internal_type": "collection"}
    for element, column in table.columns.items():
        if element in inherited:
            continue
        yield {
            "sys_id": column_sys_id(name, element),
            "name": name,
            "element": element,
            "column_label": _label(element),
            "internal_type": column.type,
            "reference": column.reference or "",
            "max_length": column.max_length or platform.max_length(column.type),
            "mandatory": "true" if column.mandatory else "false",
            "default_value": column.default,
            "display": "true" if element == table.display else "false",
            "primary": "true" if element == "sys_id" else "false",
            "choice": "3" if column.choices else "0",
            "calculation": " ".join(column.calculated),
        }
