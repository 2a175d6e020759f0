"""The stub's Table API over a real socket: records, parameters, versions, and bad input."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from snworker.testing import StubServiceNow, table_columns
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
        for table in SEEDED_TABLES:
            assert first.records(table) == second.records(table)
            assert first.records(table), table
        assert len(first.records("incident")) >= 25
    code = ("from snworker.testing import StubServiceNow; import json; "
            f"print(json.dumps({{t: StubServiceNow().records(t) for t in {SEEDED_TABLES!r}}}))")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=60, check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1] and json.loads(runs[0])["problem"]


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
    assert classes == {"task", "incident", "problem", "change_request", "change_task", "sc_request",
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


def test_a_thousand_records_list_in_one_page(sn: StubServiceNow, client: Client) -> None:
    # How fast is section 9 of the benchmarks; this is what comes back.
    for index in range(970):
        sn.insert("incident", {"short_description": f"load {index}", "state": "2"})
    for display in ("false", "all"):
        answer = client.call("GET", "/api/now/table/incident", params={
            "sysparm_limit": 1000, "sysparm_display_value": display})
        assert answer.status_code == 200
        records = answer.json()["result"]
        assert len(records) == 1000
        assert len({record["sys_id"]["value"] if display == "all" else record["sys_id"]
                    for record in records}) == 1000
        assert set(records[0]) == set(table_columns("incident"))


def test_several_megabyte_records_come_back_whole(sn: StubServiceNow, client: Client) -> None:
    stored = sn.insert("incident", {"description": "y" * (8 * 1024 * 1024)})
    path = f"/api/now/table/incident/{stored['sys_id']}"
    answer = client.call("GET", path)
    assert answer.status_code == 200
    assert json.loads(answer.content)["result"]["description"] == "y" * (8 * 1024 * 1024)


# --- records as the platform keeps them ---------------------------------------------------------

SEEDED_TABLES = ("task", "incident", "problem", "change_request", "sc_request", "sc_req_item",
                 "sc_cat_item", "sys_user", "sys_user_group", "sys_user_grmember", "cmdb_ci",
                 "sys_choice", "core_company", "customer_account", "customer_contact",
                 "sn_customerservice_case", "sn_bom_financial_service", "sys_attachment",
                 "sys_journal_field")


def created(client: Client, table: str, values: dict[str, Any], **params: str) -> Any:
    answer = client.call("POST", f"/api/now/table/{table}", json=values,
                         params={"sysparm_exclude_reference_link": "true", **params})
    assert answer.status_code == 201, answer.text
    return answer.json()["result"]


def patched(client: Client, table: str, sys_id: str, values: dict[str, Any]) -> Any:
    answer = client.call("PATCH", f"/api/now/table/{table}/{sys_id}", json=values,
                         params={"sysparm_exclude_reference_link": "true"})
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def test_every_seeded_table_is_served_with_every_column(sn: StubServiceNow, client: Client) -> None:
    for table in SEEDED_TABLES:
        records = client.result(f"/api/now/table/{table}", sysparm_limit=3)
        assert records, table
        for record in records:
            assert set(record) == set(table_columns(table)), table
            assert all(isinstance(v, str | dict) for v in record.values()), table


def test_a_new_incident_gets_the_platform_defaults(sn: StubServiceNow, client: Client) -> None:
    admin = next(u for u in sn.users if u["user_name"] == "admin")
    record = created(client, "incident", {"short_description": "Printer on fire"})
    assert (record["active"], record["state"], record["impact"], record["urgency"],
            record["priority"], record["category"]) == ("true", "1", "3", "3", "5", "inquiry")
    assert record["opened_by"] == admin["sys_id"]
    assert record["opened_at"] == record["sys_created_on"]
    assert record["number"] == record["task_effective_number"] == "INC0010031"
    assert record["caller_id"] == record["closed_at"] == record["comments"] == ""
    assert (record["incident_state"], record["notify"], record["sys_domain"],
            record["sys_domain_path"]) == ("1", "1", "global", "/")
    assert record["business_service"] == record["service_offering"] == ""
    active = client.result("/api/now/table/incident", sysparm_query="active=true^state=1",
                           sysparm_fields="sys_id")
    assert {"sys_id": record["sys_id"]} in active
    resolved = patched(client, "incident", record["sys_id"], {"state": "6"})
    assert resolved["incident_state"] == "6"  # it follows state, as the platform keeps them


@pytest.mark.parametrize(("table", "number"), [
    ("task", "TASK0010004"), ("incident", "INC0010031"), ("problem", "PRB0040005"),
    ("change_request", "CHG0030006"), ("change_task", "CTASK0010005"),
    ("kb_knowledge", "KB0010008"), ("sc_request", "REQ0010003"),
    ("sc_req_item", "RITM0010005"), ("sn_customerservice_case", "CS0001007"),
    ("sn_bom_financial_service", "FSC0001006"), ("customer_account", "ACC0000004"),
])
def test_each_table_numbers_from_its_own_counter(client: Client, table: str, number: str) -> None:
    assert created(client, table, {"short_description": "numbered"})["number"] == number
    assert created(client, table, {"short_description": "again"})["number"][-1] == str(
        int(number[-1]) + 1)


def test_fields_a_table_does_not_have_are_dropped(sn: StubServiceNow, client: Client) -> None:
    record = created(client, "incident", {"short_descriptoin": "typo", "urgency": "2"})
    assert "short_descriptoin" not in record and record["short_description"] == ""
    assert record["urgency"] == "2"
    after = patched(client, "incident", record["sys_id"], {"short_descriptoin": "typo again"})
    assert "short_descriptoin" not in after and after["sys_mod_count"] == "0"
    stored = next(r for r in sn.records("incident") if r["sys_id"] == record["sys_id"])
    assert "short_descriptoin" not in stored


def test_journal_fields_append_entries_and_read_back_empty(
    sn: StubServiceNow, client: Client
) -> None:
    record = created(client, "incident", {"short_description": "noisy", "comments": "first"})
    assert record["comments"] == ""
    after = patched(client, "incident", record["sys_id"], {"comments": "second",
                                                           "work_notes": "internal"})
    assert (after["comments"], after["work_notes"]) == ("", "")
    assert after["sys_mod_count"] == "1"
    entries = client.result("/api/now/table/sys_journal_field",
                            sysparm_query=f"element_id={record['sys_id']}^ORDERBYsys_created_on")
    assert [(e["element"], e["value"], e["name"]) for e in entries] == [
        ("comments", "first", "incident"), ("comments", "second", "incident"),
        ("work_notes", "internal", "incident")]
    assert {e["sys_created_by"] for e in entries} == {"admin"}


def test_closing_sets_active_false_and_reopening_sets_it_true(
    sn: StubServiceNow, client: Client
) -> None:
    admin = next(u for u in sn.users if u["user_name"] == "admin")
    incident = created(client, "incident", {"short_description": "to close"})
    sn.advance(60)
    resolved = patched(client, "incident", incident["sys_id"], {"state": "6"})
    assert resolved["active"] == "true" and resolved["resolved_by"] == admin["sys_id"]
    assert resolved["resolved_at"] == resolved["sys_updated_on"]
    closed = patched(client, "incident", incident["sys_id"], {"state": "7"})
    assert closed["active"] == "false" and closed["closed_by"] == admin["sys_id"]
    assert closed["closed_at"] == closed["sys_updated_on"]
    assert {"sys_id": incident["sys_id"]} not in client.result(
        "/api/now/table/incident", sysparm_query="active=true", sysparm_fields="sys_id")
    reopened = patched(client, "incident", incident["sys_id"], {"state": "2"})
    assert reopened["active"] == "true"
    case = created(client, "sn_bom_financial_service", {"short_description": "case"})
    assert patched(client, "sn_bom_financial_service", case["sys_id"],
                   {"state": "3"})["active"] == "false"
    task = created(client, "task", {"short_description": "task"})
    assert patched(client, "task", task["sys_id"], {"state": "3"})["active"] == "false"


def test_an_incident_closed_through_the_task_table_follows_incident_rules(
    sn: StubServiceNow, client: Client
) -> None:
    incident = created(client, "incident", {"short_description": "closed via task"})
    assert patched(client, "task", incident["sys_id"], {"state": "3"})["active"] == "true"
    assert patched(client, "task", incident["sys_id"], {"state": "8"})["active"] == "false"


def test_priority_follows_impact_and_urgency(client: Client) -> None:
    record = created(client, "incident", {"short_description": "big", "impact": 1,
                                          "urgency": 1})
    assert record["priority"] == "1"
    assert patched(client, "incident", record["sys_id"], {"urgency": "3"})["priority"] == "3"
    kept = created(client, "incident", {"short_description": "p2", "priority": "2"})
    assert kept["priority"] == "2"


def test_input_display_values_are_resolved_to_stored_values(
    sn: StubServiceNow, client: Client
) -> None:
    beth = next(u for u in sn.users if u["user_name"] == "beth.anglin")
    values = {"short_description": "shown", "caller_id": "beth anglin", "state": "In Progress",
              "category": "Network", "assigned_to": beth["sys_id"], "cmdb_ci": "No such CI"}
    record = created(client, "incident", values, sysparm_input_display_value="true")
    assert (record["caller_id"], record["state"], record["category"]) == (
        beth["sys_id"], "2", "network")
    assert record["assigned_to"] == beth["sys_id"] and record["cmdb_ci"] == ""
    plain = created(client, "incident", {"state": "In Progress"})
    assert plain["state"] == "In Progress"


def test_display_values_come_from_the_records_own_class(sn: StubServiceNow, client: Client) -> None:
    change = sn.records("change_request")[0]
    shown = client.result(f"/api/now/table/change_request/{change['sys_id']}",
                          sysparm_display_value="true", sysparm_exclude_reference_link="true",
                          sysparm_fields="state,type,sys_class_name,cmdb_ci,risk")
    assert shown == {"state": "Scheduled", "type": "Normal", "sys_class_name": "Change Request",
                     "cmdb_ci": "EXCH-SD-05", "risk": "Moderate"}
    via_task = client.result(f"/api/now/table/task/{change['sys_id']}",
                             sysparm_display_value="true")
    assert via_task["state"] == "Scheduled"
    assert "type" not in via_task and "number" in via_task


def test_identical_writes_change_nothing(sn: StubServiceNow, client: Client) -> None:
    record = created(client, "incident", {"short_description": "same"})
    sn.advance(30)
    again = patched(client, "incident", record["sys_id"], {"short_description": "same"})
    assert (again["sys_mod_count"], again["sys_updated_on"]) == ("0", record["sys_updated_on"])


def test_passwords_never_read_back(sn: StubServiceNow, client: Client) -> None:
    assert {u["user_password"] for u in sn.users} == {""}
    assert {u["user_password"] for u in client.result("/api/now/table/sys_user")} == {""}
    stored = sn.insert("sys_user", {"user_name": "new.user", "user_password": "s3cret",
                                    "first_name": "New", "last_name": "User"})
    assert stored["user_password"] == "" and stored["name"] == "New User"


def test_sys_choice_holds_the_choices_the_definitions_give(client: Client) -> None:
    choices = client.result("/api/now/table/sys_choice",
                            sysparm_query="name=incident^element=state^ORDERBYsequence")
    assert [(c["value"], c["label"]) for c in choices] == [
        ("1", "New"), ("2", "In Progress"), ("3", "On Hold"), ("6", "Resolved"),
        ("7", "Closed"), ("8", "Canceled")]


def test_define_table_adds_tables_and_columns(sn: StubServiceNow, client: Client) -> None:
    columns = sn.define_table("u_widget", {
        "u_name": "string",
        "u_size": {"type": "integer", "default": "1"},
        "u_owner": {"type": "reference", "reference": "sys_user"},
        "u_kind": {"type": "string", "choices": {"gear": "Gear", "cog": "Cog"}},
    }, display="u_name")
    assert {"u_name", "u_size", "u_owner", "u_kind", "sys_id"} <= set(columns)
    widget = created(client, "u_widget", {"u_name": "gear", "u_color": "red"},
                     sysparm_display_value="all")
    assert widget["u_size"] == {"display_value": "1", "value": "1"}
    assert "u_color" not in widget
    sn.define_table("incident", {"u_region": "string"})
    assert created(client, "incident", {"u_region": "EMEA"})["u_region"] == "EMEA"
    assert "u_region" in client.result("/api/now/table/incident", sysparm_limit=1)[0]
    with pytest.raises(ValueError, match="u_nope"):
        sn.insert("incident", {"u_nope": "x"})
    with pytest.raises(ValueError):
        sn.define_table("u_orphan", {"u_x": "string"}, extends="no_such_table")
    task_kind = sn.define_table("u_chore", {"u_room": "string"}, extends="task",
                                number_prefix="CHORE")
    assert "assigned_to" in task_kind
    assert created(client, "u_chore", {"u_room": "kitchen"})["number"] == "CHORE0000001"
    assert "u_chore" in {r["sys_class_name"] for r in client.result("/api/now/table/task")}
    sn.reset()
    assert client.call("GET", "/api/now/table/u_widget").status_code == 401
    assert sn.records("u_widget") == []


def test_table_columns_reads_the_shipped_definitions() -> None:
    incident = table_columns("incident")
    assert incident["caller_id"] == "reference" and incident["state"] == "integer"
    assert incident["number"] == "string" and incident["opened_at"] == "glide_date_time"
    assert incident["comments"] == "journal_input" and incident["sys_id"] == "GUID"
    assert set(table_columns("task")) < set(incident)
    assert set(table_columns("sn_customerservice_case")) < set(
        table_columns("sn_bom_financial_service"))
    with pytest.raises(KeyError):
        table_columns("no_such_table")


def test_the_task_list_shows_tasks_columns(sn: StubServiceNow, client: Client) -> None:
    incident = sn.records("incident")[0]
    as_task = client.result(f"/api/now/table/task/{incident['sys_id']}")
    assert set(as_task) == set(table_columns("task"))
    assert as_task["sys_class_name"] == "incident"
