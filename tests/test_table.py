"""snworker.table.Table against the stub."""

from __future__ import annotations

import pytest

import snworker
from snworker.entities import Core
from snworker.table import Table


def test_iter_pages_through_every_match(conn, stub):
    incidents = Table[Core.Incident](conn, "incident")
    numbers = [r["number"] for r in incidents.iter("ORDERBYnumber", fields=["number"],
                                                    page_size=7)]
    expected = sorted(r["number"] for r in stub.records("incident"))
    assert numbers == expected
    assert len(numbers) > 7 * 3
    offsets = [r["query"].get("sysparm_offset") for r in stub.requests
               if r["path"] == "/api/now/v2/table/incident"]
    assert offsets[:3] == ["0", "7", "14"]


def test_iter_honours_limit_and_query(conn, stub):
    incidents = Table[Core.Incident](conn, "incident")
    got = list(incidents.iter("ORDERBYnumber", limit=5, page_size=2))
    assert len(got) == 5
    assert list(incidents.iter("number=NOPE")) == []


def test_get_create_update_delete(conn):
    incidents = Table[Core.Incident](conn, "incident")
    created = incidents.create({"short_description": "via Table"})
    sys_id = created["sys_id"]
    assert incidents.get(sys_id, fields=["short_description"]) == {
        "short_description": "via Table"}
    assert incidents.update(sys_id, {"state": "2"})["state"] == "2"
    incidents.delete(sys_id)
    assert incidents.get(sys_id) is None


@pytest.mark.parametrize("bad", ["", "incident; drop", "../x"])
def test_bad_table_names_are_refused(conn, bad):
    with pytest.raises(snworker.InvalidRequestError):
        Table(conn, bad)


def test_bad_sys_ids_are_refused_before_sending(conn, stub):
    before = len(stub.requests)
    with pytest.raises(snworker.InvalidRequestError):
        Table(conn, "incident").get("../../oauth_token.do")
    assert len(stub.requests) == before
