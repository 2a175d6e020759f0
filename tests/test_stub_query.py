"""Encoded queries: the parser against a plain reference evaluation, and queries over HTTP."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snworker.testing import StubServiceNow
from snworker.testing.oauth import s256
from snworker.testing.query import Condition, Ordering, matches, ordered, parse

FIELDS = ("a", "b", "c")
UNKNOWN = "zz_unknown"
OPERATORS = ("=", "!=", "LIKE", "NOTLIKE", "STARTSWITH", "ENDSWITH", "IN", "NOT IN",
             "ISEMPTY", "ISNOTEMPTY", "<", "<=", ">", ">=")
# Values the encoding can carry unambiguously: no `^`, no `,` (the IN separator), and not
# starting with an operator character.
VALUES = st.sampled_from(["", "1", "2", "10", "-3", "2.5", "abc", "Abc", "b", "xyz", "a b"])

Record = dict[str, str]
records_strategy = st.lists(
    st.fixed_dictionaries({field: VALUES for field in FIELDS}), max_size=8
)
conditions_strategy = st.builds(
    Condition,
    field=st.sampled_from((*FIELDS, UNKNOWN)),
    operator=st.sampled_from(OPERATORS),
    value=VALUES,
)
groups_strategy = st.lists(st.lists(conditions_strategy, min_size=1, max_size=3), max_size=3)
query_strategy = st.lists(groups_strategy, min_size=1, max_size=3)


# --- a plain reference evaluation ------------------------------------------------------------


def as_number(text: str) -> float | None:
    return float(text) if re.fullmatch(r"-?\d+(\.\d+)?", text) else None


def reference_holds(operator: str, value: str, operand: str) -> bool:
    """The stub's documented semantics, written out case by case."""
    items = operand.split(",")
    low, low_operand = value.lower(), operand.lower()
    null = value == ""  # an empty field is SQL NULL: negations and orderings never match it
    if operator in ("<", "<=", ">", ">="):
        if null:
            return False
        left, right = as_number(value), as_number(operand)
        pair: tuple[Any, Any] = (left, right) if left is not None and right is not None else (
            value, operand)
        return bool({"<": pair[0] < pair[1], "<=": pair[0] <= pair[1],
                     ">": pair[0] > pair[1], ">=": pair[0] >= pair[1]}[operator])
    table = {
        "=": value == operand,
        "!=": not null and value != operand,
        "LIKE": low_operand in low,
        "NOTLIKE": not null and low_operand not in low,
        "STARTSWITH": low.startswith(low_operand),
        "ENDSWITH": low.endswith(low_operand),
        "IN": value in items,
        "NOT IN": not null and value not in items,
        "ISEMPTY": null,
        "ISNOTEMPTY": not null,
    }
    return table[operator]


def reference_matches(query: list[list[list[Condition]]], record: Record) -> bool:
    def group_ok(group: list[Condition]) -> bool:
        known = [c for c in group if c.field in record]
        return not known or any(
            reference_holds(c.operator, record[c.field], c.value) for c in known
        )

    return any(all(group_ok(group) for group in alternative) for alternative in query)


def encode(query: list[list[list[Condition]]]) -> str:
    def term(condition: Condition) -> str:
        return f"{condition.field}{condition.operator}{condition.value}"

    return "^NQ".join(
        "^".join("^OR".join(term(c) for c in group) for group in alternative)
        for alternative in query
    )


def value_of(record: Record, field: str) -> str | None:
    return record.get(field)


# --- parser properties ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(records=records_strategy, query=query_strategy)
def test_parser_agrees_with_the_reference(
    records: list[Record], query: list[list[list[Condition]]]
) -> None:
    parsed = parse(encode(query))
    for record in records:
        assert matches(parsed, record, value_of) == reference_matches(query, record)


@settings(max_examples=200, deadline=None)
@given(
    records=records_strategy,
    keys=st.lists(st.tuples(st.sampled_from(FIELDS), st.booleans()), min_size=1, max_size=3),
)
def test_ordering_agrees_with_the_reference(
    records: list[Record], keys: list[tuple[str, bool]]
) -> None:
    text = "^".join(f"ORDERBY{'DESC' if desc else ''}{field}" for field, desc in keys)
    parsed = parse(text)
    assert parsed.orderings == tuple(Ordering(field, desc) for field, desc in keys)

    def sort_key(value: str) -> tuple[int, float, str]:
        number = as_number(value)
        if value == "":
            return (0, 0.0, "")
        return (1, number, "") if number is not None else (2, 0.0, value)

    expected = list(records)
    for field, desc in reversed(keys):
        expected.sort(key=lambda record: sort_key(record[field]), reverse=desc)
    assert ordered(records, parsed.orderings, value_of) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_parse_never_raises(text: str) -> None:
    parsed = parse(text)
    assert matches(parsed, {"a": "1"}, value_of) in (True, False)


def test_or_binds_tighter_than_and() -> None:
    query = parse("a=1^b=2^ORb=3")
    assert matches(query, {"a": "1", "b": "3"}, value_of)
    assert not matches(query, {"a": "2", "b": "3"}, value_of)
    assert not matches(query, {"a": "1", "b": "4"}, value_of)


def test_nq_adds_a_second_query() -> None:
    query = parse("a=1^b=2^NQa=9")
    assert matches(query, {"a": "9", "b": "0"}, value_of)
    assert matches(query, {"a": "1", "b": "2"}, value_of)
    assert not matches(query, {"a": "1", "b": "0"}, value_of)


@pytest.mark.parametrize(
    "text", ["", "^", "^^^", "=x", "garbage", "ORDERBY", "ORDERBYDESC", "^OR", "a~1", "EQ",
             "A=1", "a", "^ORa=1", "a=1^EQ", "%zz"]
)
def test_malformed_terms_are_ignored(text: str) -> None:
    parsed = parse(text)
    assert all(c.field == "a" and c.value == "1"
               for alt in parsed.alternatives for group in alt for c in group)


# --- over HTTP ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stub() -> Iterator[tuple[StubServiceNow, dict[str, str]]]:
    with StubServiceNow(consent="allow") as sn:
        verifier = secrets.token_urlsafe(48)
        redirect = "http://127.0.0.1:8765/callback"
        consent = requests.get(f"{sn.url}/oauth_auth.do", allow_redirects=False, timeout=5,
                               params={"response_type": "code", "client_id": sn.client_id,
                                       "redirect_uri": redirect, "state": "s",
                                       "code_challenge": s256(verifier),
                                       "code_challenge_method": "S256"})
        code = parse_qs(urlsplit(consent.headers["Location"]).query)["code"][0]
        tokens = requests.post(f"{sn.url}/oauth_token.do", timeout=5, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
            "client_id": sn.client_id, "code_verifier": verifier}).json()
        yield sn, {"Authorization": f"Bearer {tokens['access_token']}"}


def numbers(stub: tuple[StubServiceNow, dict[str, str]], table: str, query: str) -> list[str]:
    sn, headers = stub
    answer = requests.get(f"{sn.url}/api/now/table/{table}", headers=headers, timeout=5,
                          params={"sysparm_query": query, "sysparm_fields": "number"})
    assert answer.status_code == 200, answer.text
    return [r["number"] for r in answer.json()["result"]]


def test_queries_over_http(stub: tuple[StubServiceNow, dict[str, str]]) -> None:
    sn, _ = stub
    incidents = sn.records("incident")
    vpn = [r["number"] for r in incidents if "vpn" in r["short_description"].lower()]
    assert vpn and numbers(stub, "incident", "short_descriptionLIKEvpn") == vpn
    assert numbers(stub, "incident", "numberININC0010002,INC0010005") == [
        "INC0010002", "INC0010005"]
    assert numbers(stub, "incident", "ORDERBYDESCnumber")[:2] == ["INC0010030", "INC0010029"]
    closed = [r["number"] for r in incidents if r["state"] == "7" and r["priority"] == "1"]
    assert numbers(stub, "incident", "state=7^priority=1") == closed
    assert numbers(stub, "task", "numberSTARTSWITHFSC^state=3") == [
        r["number"] for r in sn.records("sn_bom_financial_service") if r["state"] == "3"]
    unassigned = [r["number"] for r in incidents if not r["assigned_to"]]
    assert numbers(stub, "incident", "assigned_toISEMPTY") == unassigned
    assert numbers(stub, "incident", "assigned_to.user_name=fred.luddy") == [
        r["number"] for r in incidents if r["assigned_to"] == next(
            u["sys_id"] for u in sn.users if u["user_name"] == "fred.luddy")]
    assert numbers(stub, "incident", "no_such_field=1^number=INC0010001") == ["INC0010001"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60))
def test_any_query_text_is_answered_without_a_server_error(
    stub: tuple[StubServiceNow, dict[str, str]], text: str
) -> None:
    sn, headers = stub
    answer = requests.get(f"{sn.url}/api/now/table/incident", headers=headers, timeout=5,
                          params={"sysparm_query": text, "sysparm_fields": "number"})
    assert answer.status_code == 200
    assert isinstance(answer.json()["result"], list)
