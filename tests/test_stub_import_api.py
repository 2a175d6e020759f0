"""The stub's Import Set API: staging rows transformed into a target table."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from conftest import ADMIN

from snworker.testing import StubServiceNow

pytestmark = pytest.mark.servicenow(auth=("code", "basic"))


@pytest.fixture
def sn(servicenow_stub: StubServiceNow) -> StubServiceNow:
    servicenow_stub.define_transform("u_incident_import", "incident", {
        "u_ref": "correlation_id", "u_summary": "short_description", "u_urgency": "urgency",
    }, coalesce="u_ref", name="Incident import")
    return servicenow_stub


def load(sn: StubServiceNow, row: dict[str, Any], table: str = "u_incident_import") -> Any:
    return requests.post(f"{sn.url}/api/now/import/{table}", json=row, auth=ADMIN, timeout=5)


def test_a_row_is_inserted_into_the_target_table(sn: StubServiceNow) -> None:
    answer = load(sn, {"u_ref": "EXT-1", "u_summary": "From the monitoring system",
                       "u_urgency": "1", "u_unknown": "dropped"})
    assert answer.status_code == 201, answer.text
    result = answer.json()
    assert result["staging_table"] == "u_incident_import"
    assert result["import_set"] == "ISET0010001"
    [outcome] = result["result"]
    incident = next(r for r in sn.records("incident") if r["sys_id"] == outcome["sys_id"])
    assert outcome == {
        "transform_map": "Incident import", "table": "incident", "display_name": "number",
        "display_value": incident["number"], "status": "inserted", "sys_id": incident["sys_id"],
        "record_link": f"{sn.url}/api/now/table/incident/{incident['sys_id']}",
    }
    assert (incident["short_description"], incident["urgency"], incident["correlation_id"]) == (
        "From the monitoring system", "1", "EXT-1")
    [row] = sn.records("u_incident_import")
    assert (row["sys_import_state"], row["sys_target_sys_id"], row["u_ref"]) == (
        "inserted", incident["sys_id"], "EXT-1")
    assert "u_unknown" not in row
    [import_set] = sn.records("sys_import_set")
    assert row["sys_import_set"] == import_set["sys_id"]


def test_coalescing_updates_the_matching_record(sn: StubServiceNow) -> None:
    first = load(sn, {"u_ref": "EXT-2", "u_summary": "first"}).json()["result"][0]
    second = load(sn, {"u_ref": "EXT-2", "u_summary": "second"}).json()
    assert second["import_set"] == "ISET0010002"
    [outcome] = second["result"]
    assert (outcome["status"], outcome["sys_id"]) == ("updated", first["sys_id"])
    same = load(sn, {"u_ref": "EXT-2", "u_summary": "second"}).json()["result"][0]
    assert same["status"] == "ignored"
    matching = [r for r in sn.records("incident") if r["correlation_id"] == "EXT-2"]
    assert [r["short_description"] for r in matching] == ["second"]


def test_a_staging_table_needs_to_exist_and_be_one(sn: StubServiceNow) -> None:
    assert load(sn, {"x": "1"}, "u_nothing").status_code == 400
    assert load(sn, {"x": "1"}, "incident").status_code == 400
    with pytest.raises(ValueError):
        sn.define_transform("u_bad", "incident", {"u_x": "no_such_column"})
    with pytest.raises(ValueError):
        sn.define_transform("u_bad", "no_such_table", {"u_x": "number"})


def test_transforms_are_gone_after_reset(sn: StubServiceNow) -> None:
    sn.reset()
    assert load(sn, {"u_ref": "x"}).status_code == 400
