"""Encoded queries (`sysparm_query`): parsing, binding to an instance, and evaluation.

    a=1^b=2^ORc=3^NQd=4^ORDERBYDESCe   means   (a=1 AND (b=2 OR c=3)) OR d=4, sorted by e desc

`^OR` binds tighter than `^`, and `^NQ` starts a new query whose matches are added. Two terms
hold a query on another table: `JOINtable.field=other.field!condition` keeps the records with a
matching record in `other`, and `RLQUERYother.field,>=1^conditions^ENDRLQUERY` those whose
count of related records (`other.field` naming them) meets the bound.

Parsing never raises: a term that does not parse is kept aside in `unsupported`. Some operators
need the instance to mean anything (`javascript:` values, `ON`, `DYNAMIC`, `INSTANCEOF`,
`RELATIVEGT`, the subqueries...): `bind()` rewrites them, through a `QueryScope`, into the plain
operators that `matches()` evaluates, and lists what it could not read (a term, a script, a
field the table does not have). The store refuses a query with such problems, or, in the
platform's lenient mode, ignores those terms (`matches()` ignores an unknown field).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
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
_COUNT_BOUND = re.compile(r"(>=|<=|!=|=|>|<)(\d+)")
_JOIN = re.compile(r"([a-z0-9_]+)\.([a-z0-9_.]+)=([a-z0-9_]+)\.([a-z0-9_.]+)")
_RELATED = re.compile(r"([a-z0-9_]+)\.([a-z0-9_]+),((?:>=|<=|!=|=|>|<)\d+)(,m2m)?")
# Terms that carry no condition: empty ones, and the `EQ` the platform's lists end a query with.
_NO_OPS: Final = frozenset({"", "EQ"})

T = TypeVar("T")
ValueOf = Callable[[T, str], "str | None"]


@dataclass(frozen=True, slots=True)
class Condition:
    """One `<field><operator><value>` term.

    A JOIN or RLQUERY term carries its query on the other table in `subquery`; bound, it
    becomes a COUNT condition: the count of related records for the field's value, from
    `counts`, meets the bound in `value` (`>=1`).
    """

    field: str
    operator: str
    value: str
    subquery: EncodedQuery | None = dataclass_field(default=None, compare=False)
    counts: Mapping[str, int] | None = dataclass_field(default=None, compare=False)


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
    # What could not be read: a term that does not parse, or (once bound) a term the instance
    # cannot evaluate or a field the table does not have.
    unsupported: tuple[str, ...] = ()

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


def _subquery_term(term: str, terms: Iterable[str]) -> Condition | None:
    """A JOIN or RLQUERY term (taking an RLQUERY's terms up to ENDRLQUERY), or None."""
    if term.startswith("JOIN"):
        spec, bang, condition = term[4:].partition("!")
        if not bang or _JOIN.fullmatch(spec) is None:
            return None
        primary = spec.split("=")[0].split(".", 1)[1]
        return Condition(primary, "JOIN", spec, subquery=parse(condition))
    inner = []
    for other in terms:
        if other == "ENDRLQUERY":
            break
        inner.append(other)
    else:
        return None
    if _RELATED.fullmatch(term[7:]) is None:
        return None
    return Condition("sys_id", "RLQUERY", term[7:], subquery=parse("^".join(inner)))


def parse(text: str) -> EncodedQuery:
    """Parse an encoded query; terms that do not parse are listed in `unsupported`."""
    alternatives: list[Alternative] = []
    orderings: list[Ordering] = []
    unsupported: list[str] = []
    for part in text.split("^NQ"):
        groups: list[list[Condition]] = []
        terms = iter(part.split("^"))
        for term in terms:
            if term in _NO_OPS:
                continue
            if term.startswith(("JOIN", "RLQUERY")):
                subquery = _subquery_term(term, terms)
                if subquery is None:
                    unsupported.append(f"the query term {term!r}")
                else:
                    groups.append([subquery])
                continue
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
                unsupported.append(f"the query term {term!r}")
                continue
            if is_or and groups:
                groups[-1].append(condition)
            else:
                groups.append([condition])
        alternatives.append(tuple(tuple(group) for group in groups))
    return EncodedQuery(tuple(alternatives), tuple(orderings), tuple(unsupported))


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

    def knows_field(self, field: str) -> bool:
        """Whether the table has the field (dot-walked through references)."""

    def joins(self, table: str) -> bool:
        """Whether a JOIN may name this table as the one queried (it or an ancestor)."""

    def related_counts(
        self, table: str, field: str, query: EncodedQuery
    ) -> Mapping[str, int] | str:
        """How many records of `table` matching the query name each value in `field`
        (casefolded), or what makes that impossible."""


def _value(text: str, scope: QueryScope) -> glide.Value | None:
    return scope.evaluate(text) if glide.is_script(text) else text


def _bind_subquery(condition: Condition, scope: QueryScope) -> Condition | str:
    assert condition.subquery is not None
    if condition.operator == "JOIN":
        match = _JOIN.fullmatch(condition.value)
        assert match is not None
        table, primary, other, secondary = match.groups()
        if not scope.joins(table):
            return f"a JOIN from {table!r}, which is not the table queried"
        bound = ">=1"
    else:
        match = _RELATED.fullmatch(condition.value)
        assert match is not None
        other, secondary, bound, _ = match.groups()
        primary = "sys_id"
    if not scope.knows_field(primary):
        return f"the field {primary!r}"
    counts = scope.related_counts(other, secondary, condition.subquery)
    if isinstance(counts, str):
        return counts
    return Condition(primary, "COUNT", bound, counts=counts)


def _bind_condition(condition: Condition, scope: QueryScope) -> Condition | str:
    """The condition bound to the instance, or what the stub could not read in it."""
    field, operator, operand = condition.field, condition.operator, condition.value
    term = f"the query term {field + operator + operand!r}"
    if condition.subquery is not None:
        return _bind_subquery(condition, scope)
    if not scope.knows_field(field):
        return f"the field {field!r}"
    if operator in ("SAMEAS", "NSAMEAS") and not scope.knows_field(operand):
        return f"the field {operand!r}"
    if operator in ("BETWEEN", "ON"):
        if operator == "ON" and "@" not in operand:
            if not _DATE.fullmatch(operand):
                return term
            operand = f"{operand}@{operand} 00:00:00@{operand} 23:59:59"
        parts = operand.split("@")
        if len(parts) != (3 if operator == "ON" else 2):
            return term
        bounds = [_value(part, scope) for part in parts[-2:]]
        if not all(isinstance(bound, str) and bound for bound in bounds):
            return term
        return Condition(field, "BETWEEN", "@".join(str(b) for b in bounds))
    if operator == "INSTANCEOF":
        classes = scope.instance_of(operand)
        return term if classes is None else Condition(field, "IN", ",".join(classes))
    if operator == "DYNAMIC":
        script = platform.DYNAMIC_FILTERS.get(operand)
        if script is None:
            return term
        operator, operand = "=", script
    if operator in _RELATIVE:
        _, unit, direction, count = [*operand.split("@"), "", "", ""][:4]
        moment = glide.relative_time(unit, direction, count, scope.now())
        return term if moment is None else Condition(field, _RELATIVE[operator], moment)
    if operator in TEXT_OPERATORS:
        field = scope.display_path(field) or field
    value = _value(operand, scope)
    if value is None:
        return term
    if isinstance(value, list):
        if operator not in ("=", "IN", "!=", "NOT IN"):
            return term
        operator = "IN" if operator in ("=", "IN") else "NOT IN"
        value = ",".join(value)
    return Condition(field, operator, value)


def bind(query: EncodedQuery, scope: QueryScope) -> EncodedQuery:
    """The query with instance-dependent terms rewritten; terms that cannot be are dropped and
    listed in `unsupported`, as are fields the table does not have."""
    alternatives = []
    unsupported = list(query.unsupported)
    for alternative in query.alternatives:
        groups = []
        for group in alternative:
            bound = []
            for outcome in (_bind_condition(c, scope) for c in group):
                if isinstance(outcome, str):
                    unsupported.append(outcome)
                else:
                    bound.append(outcome)
            if bound:
                groups.append(tuple(bound))
        alternatives.append(tuple(groups))
    unsupported += [f"the field {o.field!r}" for o in query.orderings
                    if not scope.knows_field(o.field)]
    return replace(query, alternatives=tuple(alternatives), unsupported=tuple(unsupported))


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
    if operator == "COUNT":
        number = (condition.counts or {}).get(value.casefold(), 0)
        match = _COUNT_BOUND.fullmatch(operand)
        assert match is not None
        order = _compare(str(number), match.group(2))
        return {"<": order < 0, "<=": order <= 0, ">": order > 0, ">=": order >= 0,
                "=": order == 0, "!=": order != 0}[match.group(1)]
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
