"""The access Policy, enforced by the worker: requests outside it are refused, and never sent."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

import snworker
from snworker.testing import StubServiceNow
from tests.conftest import api_requests, connect

BATCH = "/api/now/v1/batch"


@pytest.fixture(scope="module")
def sn() -> Iterator[StubServiceNow]:
    with StubServiceNow() as stub:
        stub.define_transform("u_incident_import", "incident",
                              {"u_summary": "short_description"}, name="Incident import")
        yield stub


@pytest.fixture(scope="module")
def reader(sn: StubServiceNow) -> Iterator[snworker.ServiceNowConnection]:
    """GET and HEAD on incident only."""
    policy = snworker.Policy(methods=("GET",), tables=("incident",))
    with connect(sn, policy=policy) as conn:
        yield conn


def batch(*requests: tuple[str, str, Any]) -> dict[str, Any]:
    items = []
    for n, (method, url, body) in enumerate(requests):
        item: dict[str, Any] = {"id": str(n), "method": method, "url": url}
        if body is not None:
            item["body"] = base64.b64encode(json.dumps(body).encode()).decode()
        items.append(item)
    return {"batch_request_id": "1", "rest_requests": items}


def refused(sn: StubServiceNow, conn: snworker.ServiceNowConnection, path: str,
            method: str = "GET", data: Any = None, **kwargs: Any) -> str:
    """The refusal's text; fails unless the request was refused with nothing sent."""
    before = len(api_requests(sn))
    with pytest.raises(snworker.InvalidRequestError, match="access policy") as caught:
        conn.execute_api_request(path, method, data, **kwargs)
    assert len(api_requests(sn)) == before, "a refused request reached the instance"
    return str(caught.value)


@pytest.mark.timeout(60)
def test_a_read_only_policy_refuses_every_write(sn, reader):
    assert reader.execute_api_request("/api/now/table/incident",
                                      params={"sysparm_limit": 1}).status == 200
    assert reader.execute_api_request("/api/now/table/incident", "HEAD").status == 200
    [record] = reader.execute_api_request("/api/now/table/incident",
                                          params={"sysparm_limit": 1}).data
    one = f"/api/now/table/incident/{record['sys_id']}"
    assert "POST is not allowed" in refused(sn, reader, "/api/now/table/incident", "POST",
                                            {"short_description": "x"})
    refused(sn, reader, one, "PATCH", {"short_description": "x"})
    refused(sn, reader, one, "PUT", {"short_description": "x"})
    refused(sn, reader, one, "DELETE")
    assert len(sn.records("incident")) == len(reader.execute_api_request(
        "/api/now/table/incident").data)  # nothing was written


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", [
    "/api/now/table/sys_user",
    "/api/now/v2/table/sys_user",
    "/api/now/v1/table/sys_user/6816f79cc0a8016401c5a33be04be441",
    "/api/now/table/%73ys_user",          # percent-encoded
    "/api/now/table/SYS_USER",            # another case
    "/api/now//table/sys_user",           # an empty segment the instance skips
    "/api/now/stats/sys_user",            # Aggregate
    "/api/now/v1/stats/sys_user",
])
def test_a_table_policy_refuses_other_tables_through_every_api(sn, reader, path):
    assert "table 'sys_user' is not allowed" in refused(sn, reader, path)


@pytest.mark.timeout(60)
def test_a_table_policy_allows_its_tables_through_the_aggregate_and_attachment_apis(sn, reader):
    stats = reader.execute_api_request("/api/now/stats/incident", params={"sysparm_count": True})
    assert stats.status == 200
    listed = reader.execute_api_request("/api/now/attachment",
                                        params={"sysparm_query": "table_name=incident"})
    assert listed.status == 200


@pytest.mark.timeout(60)
@pytest.mark.parametrize("params", [
    {"sysparm_query": "table_name=sys_user"},
    {"sysparm_query": "table_name=incident^ORtable_name=sys_user"},
    {"sysparm_query": "table_name=incident^NQtable_name=sys_user"},
    {},  # every table's attachments
])
def test_attachments_of_other_tables_are_refused(sn, reader, params):
    refused(sn, reader, "/api/now/attachment", params=params)


@pytest.mark.timeout(60)
def test_an_attachment_by_sys_id_is_checked_by_the_table_it_belongs_to(sn, reader):
    attached = {}
    with connect(sn) as writer:  # no policy
        for table in ("incident", "sys_user"):
            [record] = writer.execute_api_request(f"/api/now/table/{table}",
                                                  params={"sysparm_limit": 1}).data
            attached[table] = writer.execute_api_request(
                "/api/now/attachment/file", "POST", f"{table} notes".encode(),
                headers={"Content-Type": "text/plain"}, params={
                    "table_name": table, "table_sys_id": record["sys_id"],
                    "file_name": "notes.txt"}).data["sys_id"]
    mine, other = attached["incident"], attached["sys_user"]
    assert reader.execute_api_request(f"/api/now/attachment/{mine}/file",
                                      headers={"Accept": "*/*"}).content == b"incident notes"
    assert reader.execute_api_request(f"/api/now/attachment/{mine}").status == 200
    for path in (f"/api/now/attachment/{other}/file", f"/api/now/v1/attachment/{other}"):
        with pytest.raises(snworker.InvalidRequestError, match="belongs to table 'sys_user'"):
            reader.execute_api_request(path)
    # Only the worker's own look-up of the table went out; the content never did.
    assert not [r for r in api_requests(sn) if r["path"].endswith(f"{other}/file")]
    refused(sn, reader, BATCH, "POST", batch(("GET", f"/api/now/attachment/{mine}", None)))


@pytest.mark.timeout(60)
def test_scripted_apis_and_pages_are_refused(sn, reader):
    refused(sn, reader, "/api/x_acme/v1/anything")
    refused(sn, reader, "/sys_user_list.do", params={"CSV": ""})


@pytest.mark.timeout(60)
def test_batch_sub_requests_are_decoded_and_each_checked(sn, reader):
    # Reads of the allowed table go through (pysnc batches long queries this way).
    ok = reader.execute_api_request(BATCH, "POST", batch(
        ("GET", "/api/now/table/incident?sysparm_limit=1", None)))
    assert ok.status == 200
    assert json.loads(ok.content)["serviced_requests"][0]["status_code"] == 200
    # One sub-request that reads another table, or writes, refuses the whole batch.
    refused(sn, reader, BATCH, "POST", batch(
        ("GET", "/api/now/table/incident", None), ("GET", "/api/now/table/sys_user", None)))
    refused(sn, reader, BATCH, "POST", batch(
        ("POST", "/api/now/table/incident", {"short_description": "x"})))
    refused(sn, reader, BATCH, "POST", batch(
        ("GET", "/api/now/table/%73ys_user", None)))
    refused(sn, reader, BATCH, "POST", batch(
        ("POST", BATCH, batch(("GET", "/api/now/table/sys_user", None)))))
    refused(sn, reader, BATCH, "POST", {"rest_requests": [{"id": "1", "method": "GET",
                                                          "url": "/api/now/table/incident",
                                                          "body": "%%% not base64"}]})
    refused(sn, reader, BATCH, "POST", b"not json")


@pytest.mark.timeout(60)
def test_import_sets_are_checked_by_their_staging_table(sn):
    policy = snworker.Policy(tables=("incident",))
    with connect(sn, policy=policy) as conn:
        refused(sn, conn, "/api/now/import/u_incident_import", "POST", {"u_summary": "x"})
    with connect(sn, policy=snworker.Policy(tables=("incident", "u_incident_import"))) as conn:
        answer = conn.execute_api_request("/api/now/import/u_incident_import", "POST",
                                          {"u_summary": "through the policy"})
        assert answer.status == 201


@pytest.mark.timeout(60)
def test_apis_name_what_else_is_allowed(sn):
    sn.route("/api/x_acme/v1/ping", lambda request: {"pong": True})
    policy = snworker.Policy(tables=("incident",), apis=("/api/now/table", "/api/x_acme/v1"))
    with connect(sn, policy=policy) as conn:
        assert conn.execute_api_request("/api/x_acme/v1/ping").data == {"pong": True}
        assert conn.execute_api_request("/api/now/table/incident",
                                        params={"sysparm_limit": 1}).status == 200
        assert "not under an allowed API" in refused(sn, conn, "/api/now/stats/incident")
        refused(sn, conn, "/api/now/table/sys_user")


@pytest.mark.timeout(60)
def test_the_parent_cannot_lift_the_policy_with_another_consent(sn):
    conn = connect(sn, policy=snworker.Policy(methods=("GET",)))
    try:
        # Code in the application asks the worker for a new consent without the policy.
        conn._settings = replace(conn._settings, access=())
        conn.reconnect()
        refused(sn, conn, "/api/now/table/incident", "POST", {"short_description": "x"})
    finally:
        conn.disconnect()


def test_a_policy_is_checked_in_the_parent_too():
    with pytest.raises(snworker.InvalidRequestError, match="methods"):
        snworker.Policy(methods=("FETCH",))
    with pytest.raises(snworker.InvalidRequestError, match="tables"):
        snworker.Policy(tables=(1, 2))  # type: ignore[arg-type]
    assert snworker.Policy(tables="Incident").tables == ("incident",)
    assert snworker.Policy.from_wire(snworker.Policy(methods=("get",)).to_wire()) == \
        snworker.Policy(methods=("GET",))
