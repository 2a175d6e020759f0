"""Encoded queries (`sysparm_query`): parsing, binding to an instance, and evaluation.

    a=1^b=2^ORc=3^NQd=4^ORDERBYDESCe   means   (a=1 AND (b=2 OR c=3)) OR d=4, sorted by e desc

`^OR` binds tighter than `^`, and `^NQ` starts a new query whose matches are added. A term that
does not parse, or names a field the table does not know, is ignored, as the platform does by
default. Parsing never raises.

Some operators need the instance to mean anything (`javascript:` values, `ON`, `DYNAMIC`,
`INSTANCEOF`, `RELATIVEGT`...): `bind()` rewrites them, through a `QueryScope`, into the plain
operators that `matches()` evaluates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final, Protocol, TypeVar

from snworker.testing import glide, platform

# Longest first where one operator is a prefix of another.
OPERATORS: Final = (
    "ISNOTEMPTY",
    "ISEMPTY",
    "EMPTYSTRING",
    "ANYTHING",
    "NOT LIKE",
    "LIKE",
    "NOT IN",
    "INSTANCEOF",
    "IN",
    "NSAMEAS",
    "SAMEAS",
    "STARTSWITH",
    "ENDSWITH",
    "BETWEEN",
    "DYNAMIC",
    "RELATIVEGT",
    "RELATIVELT",
    "RELATIVEGE",
    "RELATIVELE",
    "ON",
    "!=",
    "<=",
    ">=",
    "=",
    "<",
    ">",
)
TEXT_OPERATORS: Final = frozenset({"LIKE", "NOT LIKE", "STARTSWITH", "ENDSWITH"})
_RELATIVE: Final = {"RELATIVEGT": ">", "RELATIVELT": "<", "RELATIVEGE": ">=", "RELATIVELE": "<="}
_FIELD = re.compile(r"[a-z0-9_][a-z0-9_.]*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_DATE = re.compile(r"\d{4}-\d\d-\d\d")

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

    def requiring(self, conditions: Iterable[Condition]) -> EncodedQuery:
        """This query with every condition also required (name=value query parameters)."""
        groups = tuple((condition,) for condition in conditions)
        if not groups:
            return self
        alternatives = self.alternatives or ((),)
        return replace(self, alternatives=tuple(alt + groups for alt in alternatives))


def parse_condition(term: str) -> Condition | None:
    """Parse one condition term; None when it is not one."""
    field_match = _FIELD.match(term)
    if field_match is None:
        return None
    field = field_match.group()
    rest = term[field_match.end() :]
    for operator in OPERATORS:
        if rest.startswith(operator):
            value = rest[len(operator) :]
            if operator == "BETWEEN" and "@" not in value:
                return None
            return Condition(field, operator, value)
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


# --- binding to an instance ------------------------------------------------------------------


class QueryScope(Protocol):
    """What binding a query needs from the instance and the table it runs on."""

    def evaluate(self, script: str) -> glide.Value | None:
        """The value of a `javascript:` expression, None when unknown."""

    def now(self) -> float:
        """The instance's clock."""

    def instance_of(self, table: str) -> list[str] | None:
        """The classes that are `table` or extend it; None for an unknown table."""

    def display_path(self, field: str) -> str | None:
        """`field.<display column>` when `field` is a reference, else None."""


def _value(text: str, scope: QueryScope) -> glide.Value | None:
    return scope.evaluate(text) if glide.is_script(text) else text


def _bind_condition(condition: Condition, scope: QueryScope) -> Condition | None:
    field, operator, operand = condition.field, condition.operator, condition.value
    if operator in ("BETWEEN", "ON"):
        if operator == "ON" and "@" not in operand:
            if not _DATE.fullmatch(operand):
                return None
            operand = f"{operand}@{operand} 00:00:00@{operand} 23:59:59"
        parts = operand.split("@")
        if len(parts) != (3 if operator == "ON" else 2):
            return None
        bounds = [_value(part, scope) for part in parts[-2:]]
        if not all(isinstance(bound, str) and bound for bound in bounds):
            return None
        return Condition(field, "BETWEEN", "@".join(str(b) for b in bounds))
    if operator == "INSTANCEOF":
        classes = scope.instance_of(operand)
        return None if classes is None else Condition(field, "IN", ",".join(classes))
    if operator == "DYNAMIC":
        script = platform.DYNAMIC_FILTERS.get(operand)
        if script is None:
            return None
        operator, operand = "=", script
    if operator in _RELATIVE:
        _, unit, direction, count = [*operand.split("@"), "", "", ""][:4]
        moment = glide.relative_time(unit, direction, count, scope.now())
        return None if moment is None else Condition(field, _RELATIVE[operator], moment)
    if operator in TEXT_OPERATORS:
        field = scope.display_path(field) or field
    value = _value(operand, scope)
    if value is None:
        return None
    if isinstance(value, list):
        if operator not in ("=", "IN", "!=", "NOT IN"):
            return None
        operator = "IN" if operator in ("=", "IN") else "NOT IN"
        value = ",".join(value)
    return Condition(field, operator, value)


def bind(query: EncodedQuery, scope: QueryScope) -> EncodedQuery:
    """The query with instance-dependent terms rewritten; terms that cannot be are dropped."""
    alternatives = []
    for alternative in query.alternatives:
        groups = []
        for group in alternative:
            bound = [c for c in (_bind_condition(c, scope) for c in group) if c is not None]
            if bound:
                groups.append(tuple(bound))
        alternatives.append(tuple(groups))
    return replace(query, alternatives=tuple(alternatives))


# --- evaluation ------------------------------------------------------------------------------


def _number(text: str) -> float | None:
    return float(text) if _NUMBER.fullmatch(text) else None


def _compare(left: str, right: str) -> int:
    """Numbers compare as numbers, everything else as case-insensitive text (dates as text)."""
    left_number, right_number = _number(left), _number(right)
    if left_number is not None and right_number is not None:
        return (left_number > right_number) - (left_number < right_number)
    left, right = left.casefold(), right.casefold()
    return (left > right) - (left < right)


def _bound(value: str, bound: str) -> str:
    """A date-time bound cut to a date when the value is a date."""
    if len(value) == 10 and _DATE.fullmatch(value) and _DATE.match(bound):
        return bound[:10]
    return bound


def holds(condition: Condition, value: str, other: str | None = None) -> bool:
    """Whether a field's value meets a bound condition (`other`: the SAMEAS field's value).

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
    folded, folded_operand = value.casefold(), operand.casefold()
    if operator == "=":
        return folded == folded_operand
    if operator == "IN":
        return folded in folded_operand.split(",")
    if operator == "LIKE":
        return folded_operand in folded
    if operator == "STARTSWITH":
        return folded.startswith(folded_operand)
    if operator == "ENDSWITH":
        return folded.endswith(folded_operand)
    if value == "":
        return False
    if operator == "!=":
        return folded != folded_operand
    if operator == "NOT IN":
        return folded not in folded_operand.split(",")
    if operator == "NOT LIKE":
        return folded_operand not in folded
    if operator in ("SAMEAS", "NSAMEAS"):
        same = other is not None and folded == other.casefold()
        return same if operator == "SAMEAS" else not same
    if operator == "BETWEEN":
        low, _, high = operand.partition("@")
        return _compare(value, _bound(value, low)) >= 0 >= _compare(value, _bound(value, high))
    order = _compare(value, operand)
    return {"<": order < 0, "<=": order <= 0, ">": order > 0, ">=": order >= 0}[operator]


def matches(query: EncodedQuery, record: T, value_of: ValueOf[T]) -> bool:
    """Whether a record matches; `value_of(record, field)` is None for an unknown field."""
    if not query.alternatives:
        return True
    return any(_alternative_matches(alt, record, value_of) for alt in query.alternatives)


def _condition_holds(condition: Condition, record: T, value_of: ValueOf[T]) -> bool | None:
    """Whether the condition holds; None when it names an unknown field."""
    value = value_of(record, condition.field)
    if value is None:
        return None
    if condition.operator in ("SAMEAS", "NSAMEAS"):
        other = value_of(record, condition.value)
        return None if other is None else holds(condition, value, other)
    return holds(condition, value)


def _alternative_matches(alternative: Alternative, record: T, value_of: ValueOf[T]) -> bool:
    for group in alternative:
        outcomes = [_condition_holds(c, record, value_of) for c in group]
        known = [outcome for outcome in outcomes if outcome is not None]
        if known and not any(known):
            return False
    return True


def _sort_key(value: str | None) -> tuple[int, float, str]:
    if not value:
        return (0, 0.0, "")
    number = _number(value)
    return (1, number, "") if number is not None else (2, 0.0, value.casefold())


def ordered(records: Sequence[T], orderings: Sequence[Ordering], value_of: ValueOf[T]) -> list[T]:
    """Records sorted by the orderings, the first one primary; stable otherwise."""
    result = list(records)
    for ordering in reversed(orderings):
        result.sort(
            key=lambda record: _sort_key(value_of(record, ordering.field)),
            reverse=ordering.descending,
        )
    return result
