"""Encoded queries: the parser against a plain reference evaluation, and queries over HTTP."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from conftest import ADMIN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snworker.testing import StubServiceNow
from snworker.testing.query import Condition, Ordering, matches, ordered, parse

FIELDS = ("a", "b", "c")
UNKNOWN = "zz_unknown"
OPERATORS = ("=", "!=", "LIKE", "NOT LIKE", "STARTSWITH", "ENDSWITH", "IN", "NOT IN",
             "ISEMPTY", "ISNOTEMPTY", "<", "<=", ">", ">=", "BETWEEN", "SAMEAS", "NSAMEAS")
# Values the encoding can carry unambiguously: no `^`, no `,` (the IN separator), no `@` (the
# BETWEEN separator), and not starting with an operator character.
VALUES = st.sampled_from(["", "1", "2", "10", "-3", "2.5", "abc", "Abc", "ABC", "b", "xyz",
                          "a b"])

Record = dict[str, str]
records_strategy = st.lists(
    st.fixed_dictionaries({field: VALUES for field in FIELDS}), max_size=8
)


def operands(operator: str) -> st.SearchStrategy[str]:
    if operator == "BETWEEN":
        return st.builds(lambda low, high: f"{low}@{high}", VALUES, VALUES)
    if operator in ("SAMEAS", "NSAMEAS"):
        return st.sampled_from((*FIELDS, UNKNOWN))
    return VALUES


conditions_strategy = st.sampled_from(OPERATORS).flatmap(
    lambda operator: st.builds(
        Condition,
        field=st.sampled_from((*FIELDS, UNKNOWN)),
        operator=st.just(operator),
        value=operands(operator),
    )
)
groups_strategy = st.lists(st.lists(conditions_strategy, min_size=1, max_size=3), max_size=3)
query_strategy = st.lists(groups_strategy, min_size=1, max_size=3)


# --- a plain reference evaluation ------------------------------------------------------------


def as_number(text: str) -> float | None:
    return float(text) if re.fullmatch(r"-?\d+(\.\d+)?", text) else None


def compare(left: str, right: str) -> int:
    """Numbers as numbers, text case-insensitively."""
    pair: tuple[Any, Any] = (as_number(left), as_number(right))
    if pair[0] is None or pair[1] is None:
        pair = (left.casefold(), right.casefold())
    return (pair[0] > pair[1]) - (pair[0] < pair[1])


def reference_holds(operator: str, value: str, operand: str, other: str | None) -> bool:
    """The stub's documented semantics, written out case by case."""
    low, low_operand = value.casefold(), operand.casefold()
    items = low_operand.split(",")
    null = value == ""  # an empty field is SQL NULL: negations and orderings never match it
    if operator in ("<", "<=", ">", ">="):
        order = compare(value, operand)
        return not null and {"<": order < 0, "<=": order <= 0,
                             ">": order > 0, ">=": order >= 0}[operator]
    if operator == "BETWEEN":
        start, end = operand.split("@")
        return not null and compare(value, start) >= 0 and compare(value, end) <= 0
    table = {
        "=": low == low_operand,
        "!=": not null and low != low_operand,
        "LIKE": low_operand in low,
        "NOT LIKE": not null and low_operand not in low,
        "STARTSWITH": low.startswith(low_operand),
        "ENDSWITH": low.endswith(low_operand),
        "IN": low in items,
        "NOT IN": not null and low not in items,
        "ISEMPTY": null,
        "ISNOTEMPTY": not null,
        "SAMEAS": not null and other is not None and low == other.casefold(),
        "NSAMEAS": not null and not (other is not None and low == other.casefold()),
    }
    return table[operator]


def reference_matches(query: list[list[list[Condition]]], record: Record) -> bool:
    def known(condition: Condition) -> bool:
        if condition.field not in record:
            return False
        return condition.operator not in ("SAMEAS", "NSAMEAS") or condition.value in record

    def group_ok(group: list[Condition]) -> bool:
        usable = [c for c in group if known(c)]
        return not usable or any(
            reference_holds(c.operator, record[c.field], c.value, record.get(c.value))
            for c in usable
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
        return (1, number, "") if number is not None else (2, 0.0, value.casefold())

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

pytestmark = pytest.mark.servicenow(auth=("code", "basic"))  # the HTTP tests sign in as admin

ME = "90d1921e5f510100a9ad2572f2b477fe"  # the platform's "Me" dynamic filter
MY_GROUPS = "d6435e965f510100a9ad2572f2b47744"  # "One of My Groups"


def listed(sn: StubServiceNow, table: str, query: str = "", **params: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{sn.url}/api/now/table/{table}", auth=ADMIN, timeout=5, params={
        "sysparm_query": query, "sysparm_exclude_reference_link": "true", **params})
    assert answer.status_code == 200, answer.text
    result: list[dict[str, Any]] = answer.json()["result"]
    return result


def numbers(sn: StubServiceNow, table: str, query: str, **params: str) -> list[str]:
    return [r["number"] for r in listed(sn, table, query, sysparm_fields="number", **params)]


def refused(sn: StubServiceNow, table: str, query: str, **params: str) -> str:
    """What the stub says it does not support in the query (its 400 names it)."""
    answer = requests.get(f"{sn.url}/api/now/table/{table}", auth=ADMIN, timeout=5,
                          params={"sysparm_query": query, **params})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["message"] == "Query not supported by the stub"
    assert error["detail"].startswith("The stub does not support ")
    problem, _, rest = error["detail"][len("The stub does not support "):].partition(
        " in a query on ")
    assert rest.startswith(table)
    return problem


def user(sn: StubServiceNow, user_name: str) -> str:
    return next(u["sys_id"] for u in sn.users if u["user_name"] == user_name)


def test_queries_over_http(sn: StubServiceNow) -> None:
    incidents = sn.records("incident")
    vpn = [r["number"] for r in incidents if "vpn" in r["short_description"].lower()]
    assert vpn and numbers(sn, "incident", "short_descriptionLIKEvpn") == vpn
    assert numbers(sn, "incident", "numberININC0010002,INC0010005") == [
        "INC0010002", "INC0010005"]
    assert numbers(sn, "incident", "ORDERBYDESCnumber")[:2] == ["INC0010030", "INC0010029"]
    closed = [r["number"] for r in incidents if r["state"] == "7" and r["priority"] == "1"]
    assert numbers(sn, "incident", "state=7^priority=1") == closed
    assert numbers(sn, "task", "numberSTARTSWITHFSC^state=3") == [
        r["number"] for r in sn.records("sn_bom_financial_service") if r["state"] == "3"]
    unassigned = [r["number"] for r in incidents if not r["assigned_to"]]
    assert numbers(sn, "incident", "assigned_toISEMPTY") == unassigned
    assert numbers(sn, "incident", "assigned_to.user_name=fred.luddy") == [
        r["number"] for r in incidents if r["assigned_to"] == user(sn, "fred.luddy")]
    assert refused(sn, "incident", "no_such_field=1^number=INC0010001") == (
        "the field 'no_such_field'")


@pytest.mark.servicenow(auth=("code", "basic"), queries="lenient")
def test_a_lenient_stub_ignores_an_unknown_field_as_the_platform_does(sn: StubServiceNow) -> None:
    assert numbers(sn, "incident", "no_such_field=1^number=INC0010001") == ["INC0010001"]
    assert numbers(sn, "incident", "", no_such_field="x") == numbers(sn, "incident", "")


def test_not_like_is_spelled_with_a_space(sn: StubServiceNow) -> None:
    everything = numbers(sn, "incident", "")
    vpn = numbers(sn, "incident", "short_descriptionLIKEvpn")
    assert vpn and len(vpn) < len(everything)
    assert numbers(sn, "incident", "short_descriptionNOT LIKEvpn") == [
        n for n in everything if n not in vpn]
    # Not an operator: refused rather than ignored (which would answer with every incident).
    assert refused(sn, "incident", "short_descriptionNOTLIKEvpn") == (
        "the query term 'short_descriptionNOTLIKEvpn'")


def test_equality_and_lists_ignore_case(sn: StubServiceNow) -> None:
    assert numbers(sn, "incident", "short_description=EMAIL SERVER IS DOWN") == numbers(
        sn, "incident", "short_description=Email server is down")
    assert numbers(sn, "incident", "numberINinc0010002,Inc0010005") == [
        "INC0010002", "INC0010005"]
    others = numbers(sn, "incident", "number!=inc0010001")
    assert "INC0010001" not in others and len(others) == 29
    assert numbers(sn, "incident", "numberNOT INinc0010001,INC0010002")[:1] == ["INC0010003"]


def test_between_and_on_take_dates_and_date_helpers(sn: StubServiceNow) -> None:
    incidents = sn.records("incident")
    day = incidents[0]["sys_created_on"][:10]
    on_day = [r["number"] for r in incidents if r["sys_created_on"].startswith(day)]
    assert 0 < len(on_day) < len(incidents)
    between = (f"sys_created_onBETWEENjavascript:gs.dateGenerate('{day}','start')"
               f"@javascript:gs.dateGenerate('{day}','end')")
    assert numbers(sn, "incident", between) == on_day
    assert numbers(sn, "incident", f"sys_created_onBETWEEN{day} 00:00:00@{day} 23:59:59") == on_day
    on = (f"sys_created_onON{day}@javascript:gs.dateGenerate('{day}','start')"
          f"@javascript:gs.dateGenerate('{day}','end')")
    assert numbers(sn, "incident", on) == on_day
    assert numbers(sn, "incident", f"sys_created_onON{day}") == on_day
    assert numbers(sn, "incident", "priorityBETWEEN2@3") == [
        r["number"] for r in incidents if r["priority"] in ("2", "3")]


def test_date_helpers_follow_the_stub_clock(sn: StubServiceNow) -> None:
    fresh = sn.insert("incident", {"short_description": "written just now"})["number"]
    since_yesterday = "sys_updated_on>javascript:gs.daysAgoStart(1)"
    assert numbers(sn, "incident", since_yesterday) == [fresh]
    assert numbers(sn, "incident", "sys_created_on>=javascript:gs.beginningOfToday()") == [fresh]
    assert numbers(sn, "incident", "opened_at>javascript:gs.hoursAgo(1)") == [fresh]
    assert numbers(sn, "incident",
                   "sys_created_onONLast 7 days@javascript:gs.beginningOfLast7Days()"
                   "@javascript:gs.endOfLast7Days()") == [fresh]
    sn.advance(3 * 86400)
    assert numbers(sn, "incident", since_yesterday) == []
    assert numbers(sn, "incident", "sys_created_on<javascript:gs.daysAgo(2)")[-1] == fresh
    later = sn.insert("incident", {"short_description": "three days on"})["number"]
    assert numbers(sn, "incident", since_yesterday) == [later]
    assert numbers(sn, "incident", "sys_created_on>javascript:gs.minutesAgo(5)") == [later]


def test_relative_operators_count_back_from_the_stub_clock(sn: StubServiceNow) -> None:
    fresh = sn.insert("incident", {"short_description": "relative"})["number"]
    assert numbers(sn, "incident", "sys_created_onRELATIVEGT@hour@ago@1") == [fresh]
    assert numbers(sn, "incident", "sys_created_onRELATIVEGE@dayofweek@ago@7") == [fresh]
    assert fresh not in numbers(sn, "incident", "sys_created_onRELATIVELT@hour@ago@1")
    sn.advance(2 * 3600)
    assert numbers(sn, "incident", "sys_created_onRELATIVEGT@hour@ago@1") == []
    assert fresh in numbers(sn, "incident", "sys_created_onRELATIVELT@hour@ago@1")
    assert numbers(sn, "incident", "sys_created_onRELATIVEGT@minute@ago@150") == [fresh]


def test_sameas_compares_two_fields(sn: StubServiceNow) -> None:
    incidents = sn.records("incident")
    same = [r["number"] for r in incidents if r["caller_id"] == r["opened_by"]]
    assert 0 < len(same) < len(incidents)
    assert numbers(sn, "incident", "caller_idSAMEASopened_by") == same
    assert numbers(sn, "incident", "caller_idNSAMEASopened_by") == [
        r["number"] for r in incidents if r["number"] not in same]


def test_instanceof_takes_a_class_and_its_extensions(sn: StubServiceNow) -> None:
    cases = [r["number"] for r in sn.records("sn_customerservice_case")]
    assert numbers(sn, "task", "sys_class_nameINSTANCEOFsn_customerservice_case") == cases
    assert {r["sys_class_name"] for r in listed(
        sn, "task", "sys_class_nameINSTANCEOFsn_customerservice_case")} == {
        "sn_customerservice_case", "sn_bom_financial_service"}


def test_dynamic_filters_me_and_my_groups(sn: StubServiceNow) -> None:
    admin = user(sn, "admin")
    mine = sn.insert("incident", {"short_description": "mine", "assigned_to": admin})["number"]
    assert numbers(sn, "incident", f"assigned_toDYNAMIC{ME}") == [mine]
    service_desk = next(g["sys_id"] for g in sn.records("sys_user_group")
                        if g["name"] == "Service Desk")
    expected = [r["number"] for r in sn.records("incident")
                if r["assignment_group"] == service_desk]
    assert expected and numbers(sn, "incident", f"assignment_groupDYNAMIC{MY_GROUPS}") == expected
    assert numbers(sn, "incident", "assignment_group=javascript:getMyGroups()") == expected


def test_name_value_parameters_filter_like_query_terms(sn: StubServiceNow) -> None:
    incidents = sn.records("incident")
    expected = [r["number"] for r in incidents if r["active"] == "true" and r["priority"] == "1"]
    assert numbers(sn, "incident", "", active="true", priority="1") == expected
    assert numbers(sn, "incident", "active=true^priority=1") == expected
    assert numbers(sn, "incident", "priority=1", active="TRUE") == expected
    assert refused(sn, "incident", "", no_such_field="x") == "the field 'no_such_field'"


def test_scripts_the_stub_cannot_run_are_refused(sn: StubServiceNow) -> None:
    assert refused(sn, "incident", "sys_idINjavascript:new MyUtil().ids()") == (
        "the query term 'sys_idINjavascript:new MyUtil().ids()'")


@pytest.mark.servicenow(auth=("code", "basic"), queries="lenient")
def test_a_lenient_stub_ignores_scripts_it_cannot_run(sn: StubServiceNow) -> None:
    everything = numbers(sn, "incident", "")
    assert numbers(sn, "incident", "sys_idINjavascript:new MyUtil().ids()") == everything
    assert numbers(sn, "incident", "number=INC0010003^sys_id=javascript:nope()") == [
        "INC0010003"]


def test_reference_text_operators_and_ordering_use_the_display_value(sn: StubServiceNow) -> None:
    beth = user(sn, "beth.anglin")
    assert numbers(sn, "incident", "assigned_toSTARTSWITHbeth") == [
        r["number"] for r in sn.records("incident") if r["assigned_to"] == beth]
    names = {u["sys_id"]: u["name"] for u in sn.users}
    shown = listed(sn, "incident", "assigned_toISNOTEMPTY^ORDERBYassigned_to",
                   sysparm_fields="assigned_to")
    assert [names[r["assigned_to"]] for r in shown] == sorted(
        names[r["assigned_to"]] for r in shown)


def test_dot_walking_through_two_references(sn: StubServiceNow) -> None:
    shown = listed(sn, "incident", "caller_id.company.name=acme north america",
                   sysparm_fields="number,caller_id.company.name")
    assert len(shown) == 30
    assert {r["caller_id.company.name"] for r in shown} == {"ACME North America"}
    assert numbers(sn, "incident", "caller_id.company.name=Nobody") == []


@pytest.mark.parametrize("term", [
    "sys_created_onON", "sys_created_onON@", "sys_created_onONtoday", "sys_created_onBETWEEN@",
    "sys_created_onONToday@javascript:gs.beginningOfToday()", "priorityRELATIVEGT",
    "priorityRELATIVEGT@@@", "sys_created_onRELATIVEGT@fortnight@ago@1",
    "sys_created_onRELATIVELT@hour@sideways@1", "assigned_toDYNAMIC", "assigned_toDYNAMICabc",
    "sys_class_nameINSTANCEOF", "sys_class_nameINSTANCEOFno_such_table", "caller_idSAMEAS",
    "caller_idSAMEASno_such_field", "numberINjavascript:",
    "sys_created_on>javascript:gs.daysAgo(x)",
    "sys_created_on>javascript:gs.dateGenerate('x','y')", "sys_created_on>javascript:gs.daysAgo(1",
    "numberBETWEENjavascript:gs.nope()@x", "number>javascript:getMyGroups()",
])
def test_instance_terms_that_cannot_be_read_are_refused(sn: StubServiceNow, term: str) -> None:
    problem = refused(sn, "incident", f"{term}^ORDERBYnumber")
    assert problem in (f"the query term {term!r}", f"the field {term.partition('SAMEAS')[2]!r}")


@pytest.mark.servicenow(auth=("code", "basic"), queries="lenient")
@pytest.mark.parametrize("term", ["sys_created_onON@", "assigned_toDYNAMICabc",
                                  "caller_idSAMEASno_such_field", "number>javascript:nope()",
                                  "numberNOTLIKEx", "123TEXTQUERY321=email"])
def test_a_lenient_stub_ignores_terms_it_cannot_read(sn: StubServiceNow, term: str) -> None:
    assert numbers(sn, "incident", f"{term}^ORDERBYnumber") == [
        f"INC{n:07d}" for n in range(10001, 10031)]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60))
def test_any_query_text_is_answered_without_a_server_error(
    sn: StubServiceNow, text: str
) -> None:
    answer = requests.get(f"{sn.url}/api/now/table/incident", auth=ADMIN, timeout=5,
                          params={"sysparm_query": text, "sysparm_fields": "number"})
    if answer.status_code == 400:
        assert answer.json()["error"]["message"] == "Query not supported by the stub"
    else:
        assert answer.status_code == 200
        assert isinstance(answer.json()["result"], list)
