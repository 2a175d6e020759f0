"""Encoded queries (`sysparm_query`): parsing and evaluation against records.

    a=1^b=2^ORc=3^NQd=4^ORDERBYDESCe   means   (a=1 AND (b=2 OR c=3)) OR d=4, sorted by e desc

`^OR` binds tighter than `^`, and `^NQ` starts a new query whose matches are added. A term that
does not parse, or names a field the table does not know, is ignored, as the platform does by
default. Parsing never raises.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

# Longest first where one operator is a prefix of another.
OPERATORS: Final = (
    "ISNOTEMPTY",
    "ISEMPTY",
    "EMPTYSTRING",
    "ANYTHING",
    "NOTLIKE",
    "LIKE",
    "STARTSWITH",
    "ENDSWITH",
    "NOT IN",
    "IN",
    "!=",
    "<=",
    ">=",
    "=",
    "<",
    ">",
)
_FIELD = re.compile(r"[a-z0-9_][a-z0-9_.]*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")

T = TypeVar("T")
ValueOf = Callable[[T, str], "str | None"]


@dataclass(frozen=True, slots=True)
class Condition:
    """One `<field><operator><value>` term."""

    field: str
    operator: str
    value: str


@dataclass(frozen=True, slots=True)
class Ordering:
    """One `ORDERBY<field>` or `ORDERBYDESC<field>` term."""

    field: str
    descending: bool


# A query is an OR of alternatives (`^NQ`); an alternative is an AND of groups; a group is an
# OR of conditions.
Group = tuple[Condition, ...]
Alternative = tuple[Group, ...]


@dataclass(frozen=True, slots=True)
class EncodedQuery:
    """A parsed `sysparm_query`."""

    alternatives: tuple[Alternative, ...]
    orderings: tuple[Ordering, ...]


def parse_condition(term: str) -> Condition | None:
    """Parse one condition term; None when it is not one."""
    field_match = _FIELD.match(term)
    if field_match is None:
        return None
    field = field_match.group()
    rest = term[field_match.end() :]
    for operator in OPERATORS:
        if rest.startswith(operator):
            return Condition(field, operator, rest[len(operator) :])
    return None


def parse(text: str) -> EncodedQuery:
    """Parse an encoded query; terms that do not parse are dropped."""
    alternatives: list[Alternative] = []
    orderings: list[Ordering] = []
    for part in text.split("^NQ"):
        groups: list[list[Condition]] = []
        for term in part.split("^"):
            if term.startswith("ORDERBYDESC"):
                if term[11:]:
                    orderings.append(Ordering(term[11:], descending=True))
                continue
            if term.startswith("ORDERBY"):
                if term[7:]:
                    orderings.append(Ordering(term[7:], descending=False))
                continue
            is_or = term.startswith("OR")
            condition = parse_condition(term[2:] if is_or else term)
            if condition is None:
                continue
            if is_or and groups:
                groups[-1].append(condition)
            else:
                groups.append([condition])
        alternatives.append(tuple(tuple(group) for group in groups))
    return EncodedQuery(tuple(alternatives), tuple(orderings))


def _number(text: str) -> float | None:
    return float(text) if _NUMBER.fullmatch(text) else None


def _compare(left: str, right: str) -> int:
    """Numbers compare as numbers, everything else as text (dates sort as text)."""
    left_number, right_number = _number(left), _number(right)
    if left_number is not None and right_number is not None:
        return (left_number > right_number) - (left_number < right_number)
    return (left > right) - (left < right)


def holds(condition: Condition, value: str) -> bool:
    """Whether a field's value meets the condition.

    An empty value is SQL NULL on the platform, so negative and ordering operators never
    match it.
    """
    operator, operand = condition.operator, condition.value
    if operator in ("ISEMPTY", "EMPTYSTRING"):
        return value == ""
    if operator == "ISNOTEMPTY":
        return value != ""
    if operator == "ANYTHING":
        return True
    if operator == "=":
        return value == operand
    if operator == "IN":
        return value in operand.split(",")
    if operator == "LIKE":
        return operand.lower() in value.lower()
    if operator == "STARTSWITH":
        return value.lower().startswith(operand.lower())
    if operator == "ENDSWITH":
        return value.lower().endswith(operand.lower())
    if value == "":
        return False
    if operator == "!=":
        return value != operand
    if operator == "NOT IN":
        return value not in operand.split(",")
    if operator == "NOTLIKE":
        return operand.lower() not in value.lower()
    order = _compare(value, operand)
    return {"<": order < 0, "<=": order <= 0, ">": order > 0, ">=": order >= 0}[operator]


def matches(query: EncodedQuery, record: T, value_of: ValueOf[T]) -> bool:
    """Whether a record matches; `value_of(record, field)` is None for an unknown field."""
    if not query.alternatives:
        return True
    return any(_alternative_matches(alt, record, value_of) for alt in query.alternatives)


def _alternative_matches(alternative: Alternative, record: T, value_of: ValueOf[T]) -> bool:
    for group in alternative:
        known = [(c, v) for c in group if (v := value_of(record, c.field)) is not None]
        if known and not any(holds(condition, value) for condition, value in known):
            return False
    return True


def _sort_key(value: str | None) -> tuple[int, float, str]:
    if not value:
        return (0, 0.0, "")
    number = _number(value)
    return (1, number, "") if number is not None else (2, 0.0, value)


def ordered(records: Sequence[T], orderings: Sequence[Ordering], value_of: ValueOf[T]) -> list[T]:
    """Records sorted by the orderings, the first one primary; stable otherwise."""
    result = list(records)
    for ordering in reversed(orderings):
        result.sort(
            key=lambda record: _sort_key(value_of(record, ordering.field)),
            reverse=ordering.descending,
        )
    return result
