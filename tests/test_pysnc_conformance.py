"""pysnc, ServiceNow's own Python client, used against the stub as an application would.

Every scenario runs twice: pysnc with Basic auth straight to the stub, and pysnc given
`auth=snworker.requests_session(conn)`, through a worker that holds the only credential. The
same assertions hold both ways, down to the requests the stub received.

The one shim: pysnc refuses an instance URL that is not https, and the stub serves plain HTTP on
loopback, so its URL check (`pysnc.client.get_instance`) is given the loopback URL as it is.
Everything else is pysnc unmodified, over real HTTP.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import requests

pysnc = pytest.importorskip("pysnc")

from pysnc import ServiceNowClient  # noqa: E402
from pysnc.auth import ServiceNowClientCredentialsFlow  # noqa: E402

import snworker  # noqa: E402
from snworker.testing import StubServiceNow  # noqa: E402
from snworker.testing.platform import SEED_PASSWORD  # noqa: E402

SECRET = "pysnc-secret"


pytestmark = pytest.mark.servicenow(auth=("code", "basic", "client_credentials"),
                                    client_secret=SECRET)


@pytest.fixture
def sn(servicenow_stub: StubServiceNow, monkeypatch: pytest.MonkeyPatch) -> StubServiceNow:
    def loopback_instance(instance: str) -> str:
        assert instance.startswith(("http://127.0.0.1:", "https://")), instance
        return instance.rstrip("/")

    monkeypatch.setattr(pysnc.client, "get_instance", loopback_instance)
    return servicenow_stub


@pytest.fixture(params=["basic", "worker"])
def client(request: pytest.FixtureRequest, sn: StubServiceNow) -> Iterator[Any]:
    """pysnc with Basic auth, or with a session that sends through a worker.

    Afterwards, every request the stub received from the client was authenticated the way the
    client was meant to be: by Basic auth, or by the worker's bearer token.
    """
    if request.param == "basic":
        client = ServiceNowClient(sn.url, ("admin", SEED_PASSWORD))
    else:
        conn = request.getfixturevalue("servicenow_connection")
        client = ServiceNowClient(conn.instance_url, auth=snworker.requests_session(conn))
    sn.requests_before_client = len(sn.requests)  # type: ignore[attr-defined]
    yield client
    sent = [r for r in client_requests(sn) if r["path"].startswith("/api/")]
    scheme = "Basic ***" if request.param == "basic" else "Bearer ***"
    assert sent and {r["headers"].get("Authorization") for r in sent} == {scheme}


def client_requests(sn: StubServiceNow) -> list[Any]:
    """What the stub received since the client was made (not the worker's consent)."""
    return sn.requests[getattr(sn, "requests_before_client", 0):]


def table_requests(sn: StubServiceNow, method: str = "GET", table: str = "incident") -> list[Any]:
    return [r for r in client_requests(sn)
            if r["method"] == method and r["path"] == f"/api/now/table/{table}"]


def test_an_encoded_query_with_ordering_pages_through_every_match(
    sn: StubServiceNow, client: Any
) -> None:
    expected = sorted(r["number"] for r in sn.records("incident") if r["active"] == "true")
    gr = client.GlideRecord("incident", batch_size=4)
    gr.add_encoded_query("active=true^ORDERBYnumber")
    gr.query()
    assert len(gr) == len(expected)
    assert [record.number for record in gr] == expected
    pages = table_requests(sn)
    assert len(pages) == math.ceil(len(expected) / 4) > 1
    assert [p["query"]["sysparm_offset"] for p in pages[:3]] == ["0", "4", "8"]


def test_get_by_sys_id_and_by_field(sn: StubServiceNow, client: Any) -> None:
    stored = sn.records("incident")[4]
    gr = client.GlideRecord("incident")
    assert gr.get(stored["sys_id"]) is True
    assert gr.number == stored["number"]
    assert gr.short_description == stored["short_description"]
    other = client.GlideRecord("incident")
    assert other.get("number", "INC0010007") is True and other.number == "INC0010007"
    assert client.GlideRecord("incident").get("0" * 32) is False


def test_insert_then_update_a_fresh_record_then_delete_it(sn: StubServiceNow, client: Any) -> None:
    gr = client.GlideRecord("incident")
    gr.initialize()
    gr.short_description = "Inserted by pysnc"
    sys_id = gr.insert()
    assert sys_id and gr.number == "INC0010031"
    assert gr.state == "1" and gr.active == "true"
    gr.state = "2"
    gr.work_notes = "Started"
    assert gr.update() == sys_id
    stored = next(r for r in sn.records("incident") if r["sys_id"] == sys_id)
    assert (stored["state"], stored["short_description"]) == ("2", "Inserted by pysnc")
    assert [j["value"] for j in sn.records("sys_journal_field")
            if j["element_id"] == sys_id] == ["Started"]
    assert gr.get_display_value("state") == "In Progress"
    assert gr.delete() is True
    assert sys_id not in {r["sys_id"] for r in sn.records("incident")}


def test_display_values_and_dot_walked_fields(sn: StubServiceNow, client: Any) -> None:
    stored = next(r for r in sn.records("incident") if r["assigned_to"] and r["state"] == "2")
    people = {u["sys_id"]: u for u in sn.users}
    gr = client.GlideRecord("incident")
    gr.fields = "number,state,assigned_to,caller_id,caller_id.name,caller_id.email"
    gr.add_query("number", stored["number"])
    gr.query()
    assert gr.next()
    assert gr.get_display_value("state") == "In Progress" and gr.get_value("state") == "2"
    assert gr.assigned_to.get_value() == stored["assigned_to"]
    assert gr.assigned_to.get_display_value() == people[stored["assigned_to"]]["name"]
    caller = people[stored["caller_id"]]
    assert gr.caller_id.name == caller["name"]
    assert gr.get_value("caller_id.email") == caller["email"]


def test_not_like_and_a_date_helper(sn: StubServiceNow, client: Any) -> None:
    gr = client.GlideRecord("incident")
    gr.add_query("short_description", "NOT LIKE", "vpn")
    gr.query()
    numbers = [r.number for r in gr]
    assert numbers and len(numbers) == len(
        [r for r in sn.records("incident") if "vpn" not in r["short_description"].lower()])
    fresh = sn.insert("incident", {"short_description": "today"})
    recent = client.GlideRecord("incident")
    recent.add_encoded_query("sys_updated_on>=javascript:gs.daysAgoStart(1)")
    recent.query()
    assert [r.number for r in recent] == [fresh["number"]]


def test_attachments_add_query_and_read(sn: StubServiceNow, client: Any) -> None:
    gr = client.GlideRecord("incident")
    assert gr.get("number", "INC0010003")
    location = gr.add_attachment("notes.txt", b"first line\nsecond line", "text/plain")
    assert location.startswith(f"{sn.url}/api/now/attachment/")
    attachments = gr.get_attachments()
    assert len(attachments) == 1
    [(name, kind, content)] = [(a.file_name, a.content_type, a.read()) for a in attachments]
    assert (name, kind, content) == ("notes.txt", "text/plain", b"first line\nsecond line")
    one = client.Attachment("incident")
    assert one.get(location.rsplit("/", 1)[1]) and one.readlines() == ["first line",
                                                                       "second line"]
    seeded = client.Attachment("incident")
    seeded.query()
    assert sorted(a.file_name for a in seeded) == ["mail-queue.log", "notes.txt"]


def test_update_multiple_through_the_batch_api(sn: StubServiceNow, client: Any) -> None:
    gr = client.GlideRecord("incident", batch_size=5)
    gr.add_query("state", "2")
    gr.query()
    targets = []
    for record in gr:
        record.urgency = "1"
        targets.append(record.sys_id.get_value())
    assert gr.update_multiple() is True
    assert [r for r in client_requests(sn) if r["path"] == "/api/now/v1/batch"]
    stored = {r["sys_id"]: r for r in sn.records("incident")}
    assert targets and all(stored[t]["urgency"] == "1" for t in targets)
    assert all(r["urgency"] == "3" for r in stored.values() if r["sys_id"] not in targets)


def test_delete_multiple_through_the_batch_api(sn: StubServiceNow, client: Any) -> None:
    for index in range(6):
        sn.insert("incident", {"short_description": f"bulk {index}"})
    gr = client.GlideRecord("incident", batch_size=4)
    gr.add_query("short_description", "STARTSWITH", "bulk")
    assert gr.delete_multiple() is True
    assert not [r for r in sn.records("incident") if r["short_description"].startswith("bulk")]
    assert len(sn.records("incident")) == 30
    assert table_requests(sn, "DELETE") == []  # every delete went inside a batch


def test_a_long_query_goes_through_the_batch_api(sn: StubServiceNow, client: Any) -> None:
    wanted = [f"INC{n:07d}" for n in range(10001, 12501)]
    gr = client.GlideRecord("incident")
    gr.add_encoded_query(f"numberIN{','.join(wanted)}^ORDERBYnumber")
    gr.query()
    assert [r.number for r in gr] == sorted(r["number"] for r in sn.records("incident"))
    assert [r["method"] for r in client_requests(sn) if r["path"].startswith("/api/")] == ["POST"]
    assert sn.requests[-1]["path"] == "/api/now/v1/batch"


def test_the_client_credentials_flow(sn: StubServiceNow) -> None:
    flow = ServiceNowClientCredentialsFlow(sn.client_id, SECRET)
    client = ServiceNowClient(sn.url, flow)
    gr = client.GlideRecord("sys_user")
    gr.add_encoded_query("sys_id=javascript:gs.getUserID()")
    gr.query()
    assert [r.user_name for r in gr] == ["admin"]
    assert sn.grant_counts["client_credentials"] == 1


@pytest.mark.parametrize("status, error", [
    (400, pysnc.exceptions.RequestException),
    (403, pysnc.exceptions.RoleException),
    (404, pysnc.exceptions.NotFoundException),
])
def test_error_statuses_reach_pysnc_with_the_instance_s_envelope(
    sn: StubServiceNow, client: Any, status: int, error: type[Exception]
) -> None:
    sn.inject(status=status, times=1, path_prefix="/api/now/table/incident")
    gr = client.GlideRecord("incident")
    with pytest.raises(error) as caught:
        gr.query()
    [envelope] = caught.value.args
    assert envelope["status"] == "failure"
    assert envelope["error"]["detail"] == "Fault injected by the stub instance"
    assert [r["status"] for r in table_requests(sn)] == [status]


def test_pysnc_s_own_retries_decide_and_nothing_stacks_on_them(
    sn: StubServiceNow, client: Any
) -> None:
    # pysnc mounts Retry(total=4, status_forcelist=[429, 500, 502, 503]) on its session.
    sn.inject(status=503, times=1, path_prefix="/api/now/table/incident", retry_after=0)
    gr = client.GlideRecord("incident")
    gr.add_query("number", "INC0010001")
    gr.query()
    assert [r.number for r in gr] == ["INC0010001"]
    assert [r["status"] for r in table_requests(sn)] == [503, 200]
    sn.inject(status=503, times=9, path_prefix="/api/now/table/incident", retry_after=0)
    with pytest.raises(requests.exceptions.RetryError):
        client.GlideRecord("incident").query()
    assert [r["status"] for r in table_requests(sn)][2:] == [503] * 5  # 1 + pysnc's 4 retries
    sn.clear_faults()
