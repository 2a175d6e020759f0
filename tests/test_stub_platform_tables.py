"""The tables real clients touch beyond incidents, the schema tables, approvals, JOIN and RLQUERY.

Each table's seed is read through the Table API and through pysnc; the schema tables are
compared with `table_columns`; each query construct is checked against an answer computed here
from the records themselves.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import ADMIN, connect
from pysnc import ServiceNowClient

import snworker
from snworker.testing import StubServiceNow, approve, table_columns
from snworker.testing.schema import Schema
from snworker.testing.server import _read_ready_line
from tests.processes import NO_CRYPTOGRAPHY, UNDER_WINE, wine_limit

pytestmark = [pytest.mark.servicenow(auth=("code", "basic")), pytest.mark.timeout(60)]

NEW_TABLES = (
    "kb_knowledge", "kb_knowledge_base", "kb_category", "sys_update_set", "sys_update_xml",
    "sys_user_role", "sys_user_has_role", "sys_user_role_contains", "sys_group_has_role",
    "sys_user_grmember", "change_request", "change_task", "sysapproval_approver", "sc_cat_item",
    "sc_category", "item_option_new", "sys_user_preference", "sys_properties", "sys_script",
    "cmdb_ci", "cmdb_ci_hardware", "cmdb_ci_computer", "cmdb_ci_server", "cmdb_ci_linux_server",
    "cmdb_ci_win_server", "cmdb_ci_netgear", "cmdb_ci_printer", "cmdb_ci_service",
    "cmdb_ci_appl", "cmdb_rel_ci", "cmdb_rel_type", "sys_db_object", "sys_dictionary",
)


def listed(sn: StubServiceNow, table: str, query: str = "", **params: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{sn.url}/api/now/table/{table}", auth=ADMIN, timeout=10, params={
        "sysparm_query": query, "sysparm_exclude_reference_link": "true", **params})
    assert answer.status_code == 200, answer.text
    result: list[dict[str, Any]] = answer.json()["result"]
    return result


def ids(records: list[dict[str, Any]]) -> list[str]:
    return sorted(r["sys_id"] for r in records)


def by_name(sn: StubServiceNow, table: str, field: str, value: str) -> dict[str, str]:
    return next(r for r in sn.records(table) if r[field] == value)


@pytest.fixture(scope="module")
def tls_stub() -> Iterator[StubServiceNow]:
    """An https stub that takes Basic auth, shared by the read-only tests of this module."""
    if UNDER_WINE:
        pytest.skip(f"Wine limit: {NO_CRYPTOGRAPHY} (the stub's TLS authority needs it)")
    with StubServiceNow(auth=("code", "basic"), tls=True) as stub:
        yield stub


@pytest.fixture
def pysnc_client(tls_stub: StubServiceNow, monkeypatch: pytest.MonkeyPatch) -> ServiceNowClient:
    """pysnc as it is, trusting the stub's authority (requests reads REQUESTS_CA_BUNDLE)."""
    assert tls_stub.ca_file is not None
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_stub.ca_file)
    return ServiceNowClient(tls_stub.url, ADMIN)


# --- the seed ------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", NEW_TABLES)
def test_each_table_serves_its_seed_with_every_column(sn: StubServiceNow, table: str) -> None:
    records = listed(sn, table, sysparm_limit="5000")
    assert records and ids(records) == ids(sn.records(table))
    assert all(set(r) == set(table_columns(table)) for r in records)


def test_pysnc_reads_each_table_as_the_table_api_serves_it(
    tls_stub: StubServiceNow, pysnc_client: ServiceNowClient
) -> None:
    for table in NEW_TABLES:
        gr = pysnc_client.GlideRecord(table, batch_size=500)
        gr.query()
        got = sorted(str(record.sys_id) for record in gr)
        assert got == ids(tls_stub.records(table)), table


def test_a_knowledge_base_with_categories_and_articles(sn: StubServiceNow) -> None:
    it = by_name(sn, "kb_knowledge_base", "title", "IT")
    vpn = by_name(sn, "kb_category", "label", "VPN")
    network = by_name(sn, "kb_category", "label", "Network")
    assert vpn["parent_id"] == network["sys_id"] and network["parent_id"] == it["sys_id"]
    published = listed(sn, "kb_knowledge",
                       f"kb_knowledge_base={it['sys_id']}^workflow_state=published",
                       sysparm_fields="number,short_description,kb_category.label")
    assert [r["short_description"] for r in published] == [
        "How to set up email on a phone", "Mailbox is full: what to do",
        "Connect to the VPN from home", "Printer on floor 3: clearing a jam"]
    assert published[0]["number"] == "KB0010001"
    assert {r["kb_category.label"] for r in published} == {"Email", "VPN", "Hardware"}


def test_a_role_hierarchy_with_users_in_it(sn: StubServiceNow) -> None:
    def roles_of(user_name: str) -> set[str]:
        rows = listed(sn, "sys_user_has_role", f"user.user_name={user_name}",
                      sysparm_fields="role.name")
        return {r["role.name"] for r in rows}

    assert roles_of("admin") == {"admin", "itil", "approver_user", "knowledge_admin",
                                 "knowledge", "catalog_admin"}
    assert roles_of("beth.anglin") == {"itil", "approver_user", "knowledge"}  # groups, own
    assert roles_of("david.loo") == {"sn_customerservice_agent"}
    inherited = listed(sn, "sys_user_has_role", "user.user_name=abel.tuter^role.name=itil",
                       sysparm_fields="inherited,granted_by.name")
    assert {(r["inherited"], r["granted_by.name"]) for r in inherited} == {
        ("true", "Service Desk"), ("true", "Hardware")}
    contains = listed(sn, "sys_user_role_contains", "role.name=admin",
                      sysparm_fields="contains.name")
    assert {r["contains.name"] for r in contains} == {"itil", "knowledge_admin", "catalog_admin"}


def test_the_cmdb_parent_lists_its_classes_rows(sn: StubServiceNow) -> None:
    every = listed(sn, "cmdb_ci", sysparm_fields="name,sys_class_name")
    classes = {r["name"]: r["sys_class_name"] for r in every}
    assert classes["lnux100"] == "cmdb_ci_linux_server"
    assert classes["EXCH-SD-05"] == "cmdb_ci_win_server"
    assert classes["Email"] == "cmdb_ci_service"
    servers = listed(sn, "cmdb_ci_server", sysparm_fields="name,os,sys_class_name")
    assert {(r["name"], r["sys_class_name"]) for r in servers} == {
        ("lnux100", "cmdb_ci_linux_server"), ("EXCH-SD-05", "cmdb_ci_win_server")}
    hardware = listed(sn, "cmdb_ci", "sys_class_nameINSTANCEOFcmdb_ci_hardware",
                      sysparm_fields="name")
    assert {r["name"] for r in hardware} == {"EXCH-SD-05", "lnux100", "VPN-GW-01", "PRN-F3-01",
                                             "CORE-SW-A", "LT-ABEL-01"}
    uses = listed(sn, "cmdb_rel_ci", "child.name=EXCH-SD-05",
                  sysparm_fields="parent.name,type.name")
    assert {(r["parent.name"], r["type.name"]) for r in uses} == {
        ("Email", "Depends on::Used by"), ("Exchange 2019", "Runs on::Runs")}


def test_the_catalog_has_categories_items_and_variables(sn: StubServiceNow) -> None:
    laptops = listed(sn, "sc_cat_item", "category.title=Laptops", sysparm_fields="name")
    assert {r["name"] for r in laptops} == {"Standard Laptop", "Developer Laptop"}
    variables = listed(sn, "item_option_new", "cat_item.name=Developer Laptop^ORDERBYorder",
                       sysparm_fields="name,type,mandatory")
    assert variables == [{"name": "operating_system", "type": "5", "mandatory": "true"},
                         {"name": "deliver_to", "type": "8", "mandatory": "true"}]


# --- approvals -----------------------------------------------------------------------------------


def approvals_of(sn: StubServiceNow, change: str) -> list[dict[str, Any]]:
    return listed(sn, "sysapproval_approver", f"sysapproval={change}^ORDERBYapprover",
                  sysparm_fields="sys_id,approver.user_name,state,source_table")


def test_the_seed_has_an_approved_change_and_one_waiting(sn: StubServiceNow) -> None:
    approved = by_name(sn, "change_request", "number", "CHG0030001")
    assert (approved["state"], approved["approval"]) == ("-2", "approved")
    assert [(a["approver.user_name"], a["state"]) for a in approvals_of(sn, approved["sys_id"])
            ] == [("abel.tuter", "not_required"), ("beth.anglin", "approved")]
    waiting = by_name(sn, "change_request", "number", "CHG0030005")
    assert (waiting["state"], waiting["approval"]) == ("-3", "requested")
    assert [a["state"] for a in approvals_of(sn, waiting["sys_id"])] == ["requested"] * 2
    tasks = listed(sn, "change_task", f"change_request={approved['sys_id']}",
                   sysparm_fields="number,change_task_type")
    assert [r["change_task_type"] for r in tasks] == ["planning", "implementation"]


def patch(sn: StubServiceNow, table: str, sys_id: str, values: dict[str, str]) -> Any:
    answer = requests.patch(f"{sn.url}/api/now/table/{table}/{sys_id}", json=values, auth=ADMIN,
                            timeout=10, params={"sysparm_exclude_reference_link": "true"})
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


@pytest.mark.parametrize(("decision", "approval", "state"), [
    ("approved", "approved", "-2"), ("rejected", "rejected", "-5")])
def test_entering_the_approval_state_asks_the_group_and_one_answer_moves_the_change(
    sn: StubServiceNow, decision: str, approval: str, state: str
) -> None:
    network = by_name(sn, "sys_user_group", "name", "Network")
    hardware = by_name(sn, "sys_user_group", "name", "Hardware")
    change = sn.insert("change_request", {"short_description": "Swap the firewall",
                                          "assignment_group": hardware["sys_id"]})
    assert approvals_of(sn, change["sys_id"]) == []
    assert patch(sn, "change_request", change["sys_id"], {"state": "-3"})["approval"] == (
        "requested")
    asked = approvals_of(sn, change["sys_id"])
    assert [(a["approver.user_name"], a["state"], a["source_table"]) for a in asked] == [
        ("abel.tuter", "requested", "change_request"),
        ("beth.anglin", "requested", "change_request")]
    patch(sn, "sysapproval_approver", asked[1]["sys_id"], {"state": decision})
    moved = by_name(sn, "change_request", "sys_id", change["sys_id"])
    assert (moved["approval"], moved["state"]) == (approval, state)
    assert [a["state"] for a in approvals_of(sn, change["sys_id"])] == ["not_required", decision]
    # A group with one member asks that member.
    other = sn.insert("change_request", {"assignment_group": network["sys_id"], "state": "-3"})
    assert [a["approver.user_name"] for a in approvals_of(sn, other["sys_id"])] == [
        "beth.anglin"]


# --- the schema tables ---------------------------------------------------------------------------


def described(sn: StubServiceNow) -> dict[str, tuple[str, dict[str, dict[str, str]]]]:
    """Every table as the schema tables say: its parent, and the columns it defines."""
    tables = {r["sys_id"]: r["name"] for r in sn.records("sys_db_object")}
    parents = {r["name"]: tables.get(r["super_class"], "") for r in sn.records("sys_db_object")}
    columns: dict[str, dict[str, dict[str, str]]] = {name: {} for name in parents}
    for row in sn.records("sys_dictionary"):
        if row["element"]:
            columns[row["name"]][row["element"]] = row
    return {name: (parents[name], columns[name]) for name in parents}


def all_columns(schema: dict[str, tuple[str, dict[str, dict[str, str]]]], table: str
                ) -> dict[str, dict[str, str]]:
    parent, own = schema[table]
    return {**(all_columns(schema, parent) if parent else {}), **own}


def test_the_schema_tables_agree_with_table_columns(sn: StubServiceNow) -> None:
    schema = described(sn)
    shipped = Schema.shipped()
    assert set(schema) == set(shipped.names())
    for table in shipped.names():
        assert schema[table][0] == (shipped.definition(table).extends or ""), table
        rows = all_columns(schema, table)
        assert {name: row["internal_type"] for name, row in rows.items()} == table_columns(
            table), table
        for name, row in rows.items():
            column = shipped.table(row["name"]).columns[name]
            assert row["reference"] == (column.reference or ""), (table, name)
            assert row["mandatory"] in ("true", "false") and int(row["max_length"]) > 0


def test_the_schema_tables_answer_a_clients_questions(sn: StubServiceNow) -> None:
    incident = listed(sn, "sys_db_object", "name=incident", sysparm_fields="super_class.name")
    assert incident == [{"super_class.name": "task"}]
    active = listed(sn, "sys_dictionary", "name=task^element=active",
                    sysparm_fields="internal_type,max_length,mandatory")
    assert active == [{"internal_type": "boolean", "max_length": "40", "mandatory": "false"}]
    caller = listed(sn, "sys_dictionary", "name=incident^element=caller_id",
                    sysparm_fields="internal_type,reference")
    assert caller == [{"internal_type": "reference", "reference": "sys_user"}]


def test_define_table_writes_the_schema_rows_and_reset_takes_them_away(
    sn: StubServiceNow
) -> None:
    sn.define_table("u_widget", {"u_size": "integer",
                                 "u_owner": {"type": "reference", "reference": "sys_user"}},
                    extends="task", number_prefix="WID")
    sn.define_table("incident", {"u_region": "string"})
    sn.insert("u_loose", {"u_colour": "red"})          # a table that comes into being
    schema = described(sn)
    assert schema["u_widget"][0] == "task"
    assert set(schema["u_widget"][1]) == {"u_size", "u_owner"}
    assert schema["u_widget"][1]["u_owner"]["reference"] == "sys_user"
    assert "u_region" in schema["incident"][1]
    assert set(all_columns(schema, "u_loose")) == set(sn.records("u_loose")[0])
    assert schema["u_loose"][1]["u_colour"]["internal_type"] == "string"
    sn.reset()
    assert "u_widget" not in described(sn) and "u_region" not in described(sn)["incident"][1]


def test_a_stub_without_seed_data_still_describes_its_tables() -> None:
    with StubServiceNow(seed=False) as sn:
        assert sn.records("incident") == []
        assert set(described(sn)) == set(Schema.shipped().names())


# --- query constructs ----------------------------------------------------------------------------


def test_join_keeps_the_records_with_a_match_in_the_other_table(sn: StubServiceNow) -> None:
    incidents = sn.records("incident")
    callers = {r["caller_id"] for r in incidents if r["priority"] == "1"}
    users = listed(sn, "sys_user", "JOINsys_user.sys_id=incident.caller_id!priority=1")
    assert ids(users) == sorted(callers) and len(users) == 1   # not the 9 users
    # Referenced from the other side, with a condition on the main table after the JOIN.
    referenced = {r["cmdb_ci"] for r in incidents if r["cmdb_ci"]}
    expected = sorted(r["sys_id"] for r in sn.records("cmdb_ci")
                      if r["sys_id"] in referenced and r["sys_class_name"] != "cmdb_ci_service")
    assert ids(listed(sn, "cmdb_ci", "JOINcmdb_ci.sys_id=incident.cmdb_ci!"
                                     "^sys_class_name!=cmdb_ci_service")) == expected
    # The platform's own example: the CIs that depend on a CI.
    exch = by_name(sn, "cmdb_ci", "name", "EXCH-SD-05")["sys_id"]
    dependants = listed(sn, "cmdb_ci", f"JOINcmdb_ci.sys_id=cmdb_rel_ci.parent!child={exch}",
                        sysparm_fields="name")
    assert sorted(r["name"] for r in dependants) == ["Email", "Exchange 2019"]


def test_rlquery_counts_the_related_records(sn: StubServiceNow) -> None:
    relations = sn.records("cmdb_rel_ci")
    parents = Counter(r["parent"] for r in relations)
    cis = sn.records("cmdb_ci")
    for bound, keep in ((">=1", lambda n: n >= 1), (">1", lambda n: n > 1),
                        ("=0", lambda n: n == 0), ("<2", lambda n: n < 2)):
        expected = sorted(r["sys_id"] for r in cis if keep(parents[r["sys_id"]]))
        got = listed(sn, "cmdb_ci", f"RLQUERYcmdb_rel_ci.parent,{bound}^ENDRLQUERY")
        assert ids(got) == expected, bound
    # With conditions on the related records, and on the main table after ENDRLQUERY.
    runs_on = by_name(sn, "cmdb_rel_type", "name", "Runs on::Runs")["sys_id"]
    expected = sorted({r["parent"] for r in relations if r["type"] != runs_on})
    query = f"RLQUERYcmdb_rel_ci.parent,>=1^type!={runs_on}^ENDRLQUERY^nameISNOTEMPTY"
    assert ids(listed(sn, "cmdb_ci", query)) == expected
    # The related-list query: users with at least one incident assigned to them.
    assigned = {r["assigned_to"] for r in sn.records("incident") if r["assigned_to"]}
    got = listed(sn, "sys_user", "RLQUERYincident.assigned_to,>=1^ENDRLQUERY")
    assert ids(got) == sorted(assigned) and len(got) == 3   # of 9 users


def test_pysnc_join_and_related_list_queries(
    tls_stub: StubServiceNow, pysnc_client: ServiceNowClient
) -> None:
    incidents = tls_stub.records("incident")
    gr = pysnc_client.GlideRecord("sys_user")
    join = gr.add_join_query("incident", join_table_field="caller_id")
    join.add_query("priority", "1")
    gr.query()
    assert [str(r.sys_id) for r in gr] == sorted(
        {r["caller_id"] for r in incidents if r["priority"] == "1"})
    gr = pysnc_client.GlideRecord("sys_user")
    gr.add_rl_query("incident", "assigned_to", ">=1", False)
    gr.query()
    assert sorted(str(r.sys_id) for r in gr) == sorted(
        {r["assigned_to"] for r in incidents if r["assigned_to"]})
    gr = pysnc_client.GlideRecord("cmdb_ci")
    gr.add_rl_query("cmdb_rel_ci", "child", ">=2", False)
    gr.query()
    assert sorted(str(r.name) for r in gr) == ["CORE-SW-A", "EXCH-SD-05"]


def test_one_argument_date_generate(sn: StubServiceNow) -> None:
    incidents = sn.records("incident")
    low, high = incidents[10]["sys_created_on"], incidents[15]["sys_created_on"]
    expected = sorted(r["sys_id"] for r in incidents if low <= r["sys_created_on"] <= high)
    query = (f"sys_created_on>=javascript:gs.dateGenerate('{low}')"
             f"^sys_created_on<=javascript:gs.dateGenerate('{high}')")
    assert ids(listed(sn, "incident", query)) == expected and len(expected) == 6


@pytest.mark.parametrize("query", [
    "JOINsys_user.sys_id=incident.caller_id",                      # no "!"
    "JOINincident.caller_id=sys_user.sys_id!active=true",          # not the table queried
    "JOINsys_user.sys_id=no_such_table.caller_id!",
    "JOINsys_user.sys_id=incident.no_such_field!",
    "JOINsys_user.sys_id=incident.caller_id!no_such_field=1",
    "RLQUERYincident.assigned_to,>=1",                              # no ENDRLQUERY
    "RLQUERYincident.assigned_to,some^ENDRLQUERY",
    "RLQUERYincident.no_such_field,>=1^ENDRLQUERY",
    "123TEXTQUERY321=email",                                        # keyword search
    "GROUPBYdepartment",
    "active=true^user_nameMATCH_PATabel",
    "sys_created_on>=javascript:gs.dateGenerate('2024-01-02')",
])
def test_a_construct_the_stub_does_not_implement_is_refused(sn: StubServiceNow, query: str
                                                             ) -> None:
    answer = requests.get(f"{sn.url}/api/now/table/sys_user", auth=ADMIN, timeout=10,
                          params={"sysparm_query": query})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["message"] == "Query not supported by the stub"
    assert error["detail"].startswith("The stub does not support ")
    # The aggregate API reads queries alike.
    stats = requests.get(f"{sn.url}/api/now/stats/sys_user", auth=ADMIN, timeout=10,
                         params={"sysparm_query": query, "sysparm_count": "true"})
    assert stats.status_code == 400


# --- https ---------------------------------------------------------------------------------------


def test_the_tls_stub_is_trusted_only_through_its_authority(tls_stub: StubServiceNow) -> None:
    assert tls_stub.url.startswith("https://127.0.0.1:") and tls_stub.ca_file is not None
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls_stub.url}/api/now/table/incident", auth=ADMIN, timeout=10,
                     verify=True)
    answer = requests.get(f"{tls_stub.url}/api/now/table/incident", auth=ADMIN, timeout=10,
                          verify=tls_stub.ca_file, params={"sysparm_limit": "2"})
    assert answer.status_code == 200 and len(answer.json()["result"]) == 2
    assert answer.headers["Link"].startswith(f"<{tls_stub.url}/api/now/table/incident?")


def test_snworker_connects_to_a_tls_stub_with_its_ca_bundle(
    tls_stub: StubServiceNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tls_stub.ca_file is not None
    ca_file = tls_stub.ca_file

    def browser(url: str) -> Any:
        # Only the browser stand-in trusts the authority through the environment; the worker,
        # started before it opens, trusts it through ca_bundle alone.
        with monkeypatch.context() as patched:
            patched.setenv("REQUESTS_CA_BUNDLE", ca_file)
            return approve(url)

    with connect(tls_stub, open_browser=browser, ca_bundle=ca_file) as conn:
        answer = conn.execute_api_request("/api/now/table/incident", "GET",
                                          params={"sysparm_limit": 1})
        assert answer.status == 200 and len(answer.data) == 1
    with pytest.raises(snworker.ServiceNowError, match="TLS"):
        connect(tls_stub, open_browser=browser).execute_api_request(
            "/api/now/table/incident", "GET")


# --- the command line ----------------------------------------------------------------------------


@pytest.fixture
def cli_stub(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """`snworker stub` with the test's arguments (the parameter), in a subprocess."""
    arguments: list[str] = request.param
    if UNDER_WINE and "--tls" in arguments:
        pytest.skip(f"Wine limit: {NO_CRYPTOGRAPHY} (the stub's TLS authority needs it)")
    process = subprocess.Popen([sys.executable, "-m", "snworker", "stub", *arguments],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        # A thread reads the ready line: Windows' select() takes no pipe.
        yield _read_ready_line(process, 30)
    finally:
        process.terminate()
        process.communicate(timeout=10)


@pytest.mark.parametrize("cli_stub", [[
    "--auth", "basic,password", "--client-secret", "s3cret", "--user", "alice:Wonder-land",
    "--access-lifespan", "120"]], indirect=True)
def test_the_cli_stub_serves_a_basic_auth_client(cli_stub: dict[str, str]) -> None:
    url = cli_stub["url"]
    assert url.startswith("http://127.0.0.1:") and "ca_file" not in cli_stub
    answer = requests.get(f"{url}/api/now/table/incident", auth=("alice", "Wonder-land"),
                          timeout=10, params={"sysparm_fields": "number"})
    assert answer.status_code == 200 and len(answer.json()["result"]) == 30
    assert requests.get(f"{url}/api/now/table/incident", auth=("alice", "wrong"),
                        timeout=10).status_code == 401
    token = requests.post(f"{url}/oauth_token.do", timeout=10, data={
        "grant_type": "password", "client_id": "snworker-test", "client_secret": "s3cret",
        "username": "admin", "password": "snworker-stub"}).json()
    assert token["expires_in"] <= 120 and token["refresh_token"]


@pytest.mark.parametrize("cli_stub", [[
    "--tls", "--auth", "basic", "--user", "bob:Builder-1", "--no-seed"]], indirect=True)
def test_pysnc_runs_unpatched_against_the_cli_stub_over_tls(
    cli_stub: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca_file = cli_stub["url"], cli_stub["ca_file"]
    assert url.startswith("https://127.0.0.1:") and os.path.isfile(ca_file)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    client = ServiceNowClient(url, ("bob", "Builder-1"))
    gr = client.GlideRecord("sys_user")
    gr.query()
    assert [str(r.user_name) for r in gr] == ["bob"]             # no seed: bob alone
    gr = client.GlideRecord("incident")
    gr.initialize()
    gr.short_description = "Made through pysnc over https"
    gr.insert()
    gr = client.GlideRecord("incident")
    gr.add_query("short_description", "LIKE", "pysnc")
    gr.query()
    assert [str(r.number) for r in gr] == ["INC0010001"]


@pytest.mark.parametrize("arguments", [["--auth", "basic,telepathy"], ["--user", "nopassword"],
                                       ["--consent", "maybe"]])
def test_the_cli_stub_refuses_bad_settings(arguments: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "snworker", "stub", *arguments],
                          capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and done.stdout == b""
    assert done.stderr.strip()


@wine_limit(f"{NO_CRYPTOGRAPHY} (the stub's TLS authority needs it)")
def test_a_tls_stub_in_another_process_is_controlled_over_https() -> None:
    with StubServiceNow.start_process(tls=True, queries="lenient") as remote:
        assert remote.url.startswith("https://") and remote.ca_file is not None
        assert os.path.isfile(remote.ca_file)
        remote.define_table("u_widget", {"u_size": "integer"})
        rows = [r for r in remote.records("sys_dictionary") if r["name"] == "u_widget"]
        assert {r["element"] for r in rows} >= {"u_size", "sys_id"}
