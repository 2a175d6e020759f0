"""The stub's Table API over a real socket: records, parameters, versions, and bad input."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from snworker.testing import StubServiceNow
from snworker.testing.oauth import s256

REDIRECT = "http://127.0.0.1:8765/callback"


class Client:
    """A signed-in REST client of one stub."""

    def __init__(self, sn: StubServiceNow) -> None:
        self.sn = sn
        sn.set_consent("allow")
        verifier = secrets.token_urlsafe(48)
        params = {
            "response_type": "code", "client_id": sn.client_id, "redirect_uri": REDIRECT,
            "state": "s", "code_challenge": s256(verifier), "code_challenge_method": "S256",
        }
        consent = requests.get(
            f"{sn.url}/oauth_auth.do", params=params, allow_redirects=False, timeout=5
        )
        code = parse_qs(urlsplit(consent.headers["Location"]).query)["code"][0]
        tokens = requests.post(f"{sn.url}/oauth_token.do", timeout=5, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "client_id": sn.client_id, "code_verifier": verifier,
        }).json()
        self.headers = {"Authorization": f"Bearer {tokens['access_token']}"}

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return requests.request(
            method, f"{self.sn.url}{path}", headers=headers, timeout=10, **kwargs
        )

    def result(self, path: str, **params: Any) -> Any:
        answer = self.call("GET", path, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()["result"]


def envelope(message: str, detail: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


NO_RECORD = envelope(
    "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
)


@pytest.fixture
def sn() -> Iterator[StubServiceNow]:
    with StubServiceNow() as stub:
        yield stub


@pytest.fixture
def client(sn: StubServiceNow) -> Client:
    return Client(sn)


# --- seed data --------------------------------------------------------------------------------


def test_seed_data_is_deterministic_and_complete() -> None:
    with StubServiceNow() as first, StubServiceNow() as second:
        for table in ("sys_user", "incident", "task", "customer_account", "customer_contact",
                      "sn_customerservice_case", "sn_bom_financial_service"):
            assert first.records(table) == second.records(table)
            assert first.records(table), table
        assert len(first.records("incident")) >= 25


def test_seed_references_resolve(sn: StubServiceNow) -> None:
    every = {r["sys_id"]: r for r in sn.records("sys_user") + sn.records("task")
             + sn.records("customer_account") + sn.records("customer_contact")}
    references = 0
    for record in every.values():
        for field in ("assigned_to", "caller_id", "opened_by", "account", "contact"):
            if record.get(field):
                assert record[field] in every, (record["sys_id"], field)
                references += 1
    assert references > 50


def test_the_signed_in_user_is_the_admin(sn: StubServiceNow, client: Client) -> None:
    [user] = client.result(
        "/api/now/table/sys_user",
        sysparm_query="sys_id=javascript:gs.getUserID()", sysparm_limit=1,
        sysparm_exclude_reference_link="true",
    )
    assert user["user_name"] == "admin"
    assert user["name"] == "System Administrator"
    assert user in sn.users


# --- reading ----------------------------------------------------------------------------------


def test_list_has_count_and_pagination_links(client: Client) -> None:
    answer = client.call("GET", "/api/now/table/incident",
                         params={"sysparm_limit": 10, "sysparm_offset": 10})
    assert answer.status_code == 200
    assert len(answer.json()["result"]) == 10
    assert answer.headers["X-Total-Count"] == "30"
    links = {link.split(";rel=")[1].strip('"'): link.split(">")[0].lstrip("<")
             for link in answer.headers["Link"].split(",")}
    assert set(links) == {"first", "prev", "next", "last"}
    offsets = {rel: parse_qs(urlsplit(url).query)["sysparm_offset"][0]
               for rel, url in links.items()}
    assert offsets == {"first": "0", "prev": "0", "next": "20", "last": "20"}
    assert parse_qs(urlsplit(links["next"]).query)["sysparm_limit"] == ["10"]


def test_paging_walks_every_record_once(sn: StubServiceNow, client: Client) -> None:
    seen: list[str] = []
    for offset in range(0, 40, 7):
        page = client.result("/api/now/table/incident", sysparm_limit=7, sysparm_offset=offset,
                             sysparm_fields="sys_id")
        seen += [r["sys_id"] for r in page]
    assert seen == [r["sys_id"] for r in sn.records("incident")]


def test_pagination_headers_can_be_suppressed(client: Client) -> None:
    answer = client.call("GET", "/api/now/table/incident", params={
        "sysparm_limit": 5, "sysparm_suppress_pagination_header": "true",
        "sysparm_no_count": "true",
    })
    assert answer.status_code == 200
    assert "Link" not in answer.headers
    assert "X-Total-Count" not in answer.headers


@pytest.mark.parametrize("limit", ["abc", "-3", "0", ""])
def test_unusable_limits_fall_back_to_the_default(client: Client, limit: str) -> None:
    assert len(client.result("/api/now/table/incident", sysparm_limit=limit)) == 30


def test_v1_answers_404_for_an_empty_list_and_v2_an_empty_result(client: Client) -> None:
    params = {"sysparm_query": "number=NOPE"}
    v1 = client.call("GET", "/api/now/v1/table/incident", params=params)
    assert v1.status_code == 404
    assert v1.json()["error"]["message"] == "No Record found"
    for path in ("/api/now/v2/table/incident", "/api/now/table/incident"):
        answer = client.call("GET", path, params=params)
        assert answer.status_code == 200
        assert answer.json() == {"result": []}
        assert answer.headers["X-Total-Count"] == "0"


def test_get_one_record(sn: StubServiceNow, client: Client) -> None:
    stored = sn.records("incident")[3]
    for version in ("", "v1/", "v2/"):
        record = client.result(f"/api/now/{version}table/incident/{stored['sys_id']}",
                               sysparm_exclude_reference_link="true")
        assert record == stored


@pytest.mark.parametrize("sys_id", ["0" * 32, "not-a-sys-id", "%00", "x" * 300])
def test_unknown_or_malformed_sys_id_is_404(client: Client, sys_id: str) -> None:
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        answer = client.call(method, f"/api/now/table/incident/{sys_id}", json={"state": "2"})
        assert answer.status_code == 404, method
        assert answer.json() == NO_RECORD


def test_unknown_table_is_refused(client: Client) -> None:
    for method, path in [("GET", "/api/now/table/no_such_table"),
                         ("POST", "/api/now/v2/table/no_such_table"),
                         ("GET", f"/api/now/table/no_such_table/{'a' * 32}")]:
        answer = client.call(method, path, json={})
        assert answer.status_code == 400
        assert answer.json() == envelope("Invalid table no_such_table", None)


def test_a_parent_table_lists_its_extensions(sn: StubServiceNow, client: Client) -> None:
    classes = {r["sys_class_name"] for r in client.result("/api/now/table/task")}
    assert classes == {"task", "incident", "problem", "change_request", "sc_request",
                       "sc_req_item", "sn_customerservice_case", "sn_bom_financial_service"}
    cases = client.result("/api/now/table/sn_customerservice_case")
    assert {r["sys_class_name"] for r in cases} == {"sn_customerservice_case",
                                                     "sn_bom_financial_service"}
    incident = sn.records("incident")[0]
    assert client.result(f"/api/now/table/task/{incident['sys_id']}")["number"] == incident[
        "number"]
    answer = client.call("GET", f"/api/now/table/sys_user/{incident['sys_id']}")
    assert answer.status_code == 404


def test_fields_display_values_and_reference_links(sn: StubServiceNow, client: Client) -> None:
    incident = next(r for r in sn.records("incident") if r["assigned_to"])
    assignee = next(u for u in sn.users if u["sys_id"] == incident["assigned_to"])
    path = f"/api/now/table/incident/{incident['sys_id']}"
    fields = "number,state,assigned_to,assigned_to.user_name,no_such_field"

    plain = client.result(path, sysparm_fields=fields)
    assert plain == {
        "number": incident["number"],
        "state": incident["state"],
        "assigned_to": {"link": f"{sn.url}/api/now/table/sys_user/{assignee['sys_id']}",
                        "value": assignee["sys_id"]},
        "assigned_to.user_name": assignee["user_name"],
    }
    shown = client.result(path, sysparm_fields=fields, sysparm_display_value="true",
                          sysparm_exclude_reference_link="true")
    assert shown["assigned_to"] == assignee["name"]
    assert shown["state"] in {"New", "In Progress", "On Hold", "Resolved", "Closed"}
    both = client.result(path, sysparm_fields=fields, sysparm_display_value="all")
    assert both["assigned_to"] == {
        "display_value": assignee["name"],
        "link": f"{sn.url}/api/now/table/sys_user/{assignee['sys_id']}",
        "value": assignee["sys_id"],
    }
    assert both["number"] == {"display_value": incident["number"], "value": incident["number"]}
    bare = client.result(path, sysparm_fields="assigned_to", sysparm_exclude_reference_link="true")
    assert bare == {"assigned_to": assignee["sys_id"]}


def test_an_empty_reference_is_an_empty_string(sn: StubServiceNow, client: Client) -> None:
    incident = next(r for r in sn.records("incident") if not r["assigned_to"])
    record = client.result(f"/api/now/table/incident/{incident['sys_id']}",
                           sysparm_fields="assigned_to")
    assert record == {"assigned_to": ""}


def test_head_answers_without_a_body(client: Client) -> None:
    answer = client.call("HEAD", "/api/now/table/incident")
    assert answer.status_code == 200
    assert answer.content == b""


# --- writing ------------------------------------------------------------------------------------


def test_create_read_update_delete(sn: StubServiceNow, client: Client) -> None:
    created = client.call("POST", "/api/now/table/incident", json={
        "short_description": "Printer on fire", "urgency": 1, "active": True, "notes": None,
        "caller_id": {"value": sn.users[1]["sys_id"]},
    })
    assert created.status_code == 201
    record = created.json()["result"]
    assert record["urgency"] == "1" and record["active"] == "true" and "notes" not in record
    assert record["caller_id"]["value"] == sn.users[1]["sys_id"]
    assert record["number"] == "INC0010031"
    assert record["sys_class_name"] == "incident"
    assert len(record["sys_id"]) == 32
    location = created.headers["Location"]
    assert location == f"{sn.url}/api/now/table/incident/{record['sys_id']}"
    assert requests.get(location, headers=client.headers, timeout=5).json()["result"] == record

    sn.advance(600)
    patched = client.call("PATCH", urlsplit(location).path, json={"state": 2})
    assert patched.status_code == 200
    after = patched.json()["result"]
    assert after["state"] == "2" and after["short_description"] == "Printer on fire"
    assert after["sys_mod_count"] == "1"
    assert after["sys_updated_on"] > record["sys_updated_on"]
    assert after["sys_created_on"] == record["sys_created_on"]
    put = client.call("PUT", f"/api/now/v2/table/incident/{record['sys_id']}",
                      json={"state": "6", "sys_id": "0" * 32})
    assert put.json()["result"]["state"] == "6"
    assert put.json()["result"]["sys_id"] == record["sys_id"]

    deleted = client.call("DELETE", urlsplit(location).path)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert client.call("GET", urlsplit(location).path).status_code == 404
    assert record["sys_id"] not in {r["sys_id"] for r in sn.records("incident")}


def test_no_response_body_header(client: Client) -> None:
    quiet = {"X-no-response-body": "true"}
    created = client.call("POST", "/api/now/table/incident", json={"short_description": "q"},
                          headers=quiet)
    assert created.status_code == 201
    assert created.content == b""
    patched = client.call("PATCH", urlsplit(created.headers["Location"]).path,
                          json={"state": "2"}, headers=quiet)
    assert patched.status_code == 200
    assert patched.content == b""


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"{not json", "The payload is not valid JSON."),
        (b"\xff\xfe", "The payload is not valid JSON."),
        (b"[" * 100_000, "The payload is not valid JSON."),
        (b'[{"short_description": "a"}]', "The payload must be a JSON object."),
        (b'"text"', "The payload must be a JSON object."),
        (b"", "Empty request body"),
    ],
)
def test_bad_bodies_are_refused_in_the_envelope(
    sn: StubServiceNow, client: Client, body: bytes, detail: str
) -> None:
    target = sn.records("incident")[0]["sys_id"]
    for method, path in [("POST", "/api/now/table/incident"),
                         ("PATCH", f"/api/now/table/incident/{target}"),
                         ("PUT", f"/api/now/v1/table/incident/{target}")]:
        answer = client.call(method, path, data=body,
                             headers={"Content-Type": "application/json"})
        assert answer.status_code == 400, (method, answer.text)
        assert answer.json() == envelope("Exception while reading request", detail)
    assert len(sn.records("incident")) == 30


def test_unknown_paths_and_methods_answer_in_the_envelope(client: Client) -> None:
    answer = client.call("GET", "/api/now/nothing/here")
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "Requested URI does not represent any resource"
    answer = client.call("DELETE", "/api/now/table/incident")
    assert answer.status_code == 405
    assert answer.json()["status"] == "failure"
    answer = client.call("POST", f"/api/now/table/incident/{'a' * 32}", json={})
    assert answer.status_code == 405


def test_current_user_expression_in_queries(sn: StubServiceNow, client: Client) -> None:
    mine = client.call("POST", "/api/now/table/incident", json={
        "short_description": "mine", "assigned_to": sn.users[0]["sys_id"]}).json()["result"]
    found = client.result("/api/now/table/incident",
                          sysparm_query="assigned_to=javascript:gs.getUserID()",
                          sysparm_fields="sys_id")
    assert found == [{"sys_id": mine["sys_id"]}]


def test_insert_into_a_new_table_makes_it_exist(sn: StubServiceNow, client: Client) -> None:
    stored = sn.insert("u_widget", {"u_name": "gear", "u_size": 3})
    assert stored["u_size"] == "3"
    assert client.result("/api/now/table/u_widget") == [stored]


# --- size ---------------------------------------------------------------------------------------


def test_one_megabyte_field_round_trips(client: Client) -> None:
    text = "é" + "x" * (1024 * 1024)
    created = client.call("POST", "/api/now/table/incident", json={"description": text})
    assert created.status_code == 201
    path = urlsplit(created.headers["Location"]).path
    assert client.result(path)["description"] == text


def test_several_megabyte_records_come_back_quickly(sn: StubServiceNow, client: Client) -> None:
    stored = sn.insert("incident", {"description": "y" * (8 * 1024 * 1024)})
    path = f"/api/now/table/incident/{stored['sys_id']}"
    client.call("GET", path)
    started = time.perf_counter()
    answer = client.call("GET", path)
    elapsed = time.perf_counter() - started
    assert answer.status_code == 200
    assert len(json.loads(answer.content)["result"]["description"]) == 8 * 1024 * 1024
    assert elapsed < 1.0
