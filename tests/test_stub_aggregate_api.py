"""The stub's Aggregate API: counts and statistics over a query, grouped or not."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import ADMIN

from snworker.testing import StubServiceNow


@pytest.fixture(scope="module")
def sn() -> Iterator[StubServiceNow]:
    with StubServiceNow(auth=("code", "basic")) as stub:
        yield stub


def stats(sn: StubServiceNow, table: str, **params: str) -> Any:
    answer = requests.get(f"{sn.url}/api/now/stats/{table}", auth=ADMIN, params=params,
                          timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def test_count_with_a_query(sn: StubServiceNow) -> None:
    active = [r for r in sn.records("incident") if r["active"] == "true"]
    assert stats(sn, "incident", sysparm_count="true", sysparm_query="active=true") == {
        "stats": {"count": str(len(active))}}
    assert stats(sn, "task", sysparm_count="true")["stats"]["count"] == str(
        len(sn.records("task")))


def test_average_minimum_maximum_and_sum(sn: StubServiceNow) -> None:
    priorities = [int(r["priority"]) for r in sn.records("incident")]
    result = stats(sn, "incident", sysparm_avg_fields="priority,reopen_count",
                   sysparm_min_fields="priority,number", sysparm_max_fields="priority",
                   sysparm_sum_fields="priority", sysparm_count="true")
    assert result == {"stats": {
        "count": "30",
        "avg": {"priority": f"{sum(priorities) / len(priorities):.4f}", "reopen_count": "0.0000"},
        "min": {"priority": str(min(priorities)), "number": "INC0010001"},
        "max": {"priority": str(max(priorities))},
        "sum": {"priority": str(sum(priorities))},
    }}
    assert stats(sn, "incident", sysparm_avg_fields="no_such_field") == {"stats": {}}


def test_grouped_results_list_their_group_fields(sn: StubServiceNow) -> None:
    counts = Counter(r["state"] for r in sn.records("incident"))
    groups = stats(sn, "incident", sysparm_count="true", sysparm_group_by="state")
    assert [g["groupby_fields"] for g in groups] == [
        [{"field": "state", "value": state}] for state in sorted(counts, key=int)]
    assert [g["stats"]["count"] for g in groups] == [
        str(counts[state]) for state in sorted(counts, key=int)]
    shown = stats(sn, "incident", sysparm_count="true", sysparm_group_by="state",
                  sysparm_display_value="all")
    assert shown[0]["groupby_fields"] == [{"field": "state", "value": "1",
                                           "display_value": "New"}]
    labels = stats(sn, "incident", sysparm_count="true", sysparm_group_by="state",
                   sysparm_display_value="true")
    assert labels[-1]["groupby_fields"][0]["value"] == "Closed"


def test_grouping_by_two_fields_and_having(sn: StubServiceNow) -> None:
    pairs = Counter((r["state"], r["category"]) for r in sn.records("incident"))
    groups = stats(sn, "incident", sysparm_count="true", sysparm_group_by="state,category")
    assert sum(int(g["stats"]["count"]) for g in groups) == 30
    assert len(groups) == len(pairs)
    big = stats(sn, "incident", sysparm_count="true", sysparm_group_by="category",
                sysparm_having="count^category^>^7")
    categories = Counter(r["category"] for r in sn.records("incident"))
    assert {g["groupby_fields"][0]["value"] for g in big} == {
        c for c, n in categories.items() if n > 7}


def test_an_unknown_table_is_refused(sn: StubServiceNow) -> None:
    answer = requests.get(f"{sn.url}/api/now/stats/no_such_table", auth=ADMIN, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "Invalid table no_such_table"
