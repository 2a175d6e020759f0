"""The stub's Batch API: many requests in one, each answered by the same handlers."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import requests
from conftest import ADMIN

from snworker.testing import StubServiceNow

pytestmark = pytest.mark.servicenow(auth=("code", "basic"))


def item(id_: str, method: str, url: str, body: object = None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": id_, "method": method, "url": url,
                             "headers": [{"name": "Content-Type", "value": "application/json"},
                                         {"name": "Accept", "value": "application/json"}],
                             **extra}
    if body is not None:
        entry["body"] = base64.b64encode(json.dumps(body).encode()).decode()
    return entry


def batch(sn: StubServiceNow, items: list[Any], auth: Any = ADMIN) -> requests.Response:
    return requests.post(f"{sn.url}/api/now/v1/batch", auth=auth, timeout=10,
                         json={"batch_request_id": 7, "rest_requests": items})


def body(answer: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(answer["body"]))


def test_each_request_is_served_and_answered_in_order(sn: StubServiceNow) -> None:
    target = sn.records("incident")[2]
    answer = batch(sn, [
        item("list", "GET", "/api/now/table/incident?sysparm_limit=2&sysparm_fields=number"),
        item("create", "POST", "/api/now/table/incident", {"short_description": "batched"}),
        item("patch", "PATCH", f"/api/now/v2/table/incident/{target['sys_id']}", {"state": "2"}),
        item("missing", "GET", f"/api/now/table/incident/{'0' * 32}"),
    ])
    assert answer.status_code == 200
    result = answer.json()
    assert result["batch_request_id"] == "7" and result["unserviced_requests"] == []
    served = {s["id"]: s for s in result["serviced_requests"]}
    assert list(served) == ["list", "create", "patch", "missing"]
    assert served["list"]["status_code"] == 200
    assert body(served["list"]) == {"result": [{"number": "INC0010001"},
                                               {"number": "INC0010002"}]}
    headers = {h["name"]: h["value"] for h in served["list"]["headers"]}
    assert headers["X-Total-Count"] == "30"
    assert served["create"]["status_code"] == 201
    created = body(served["create"])["result"]
    assert created["number"] == "INC0010031" and created["opened_by"]["value"]
    assert served["patch"]["status_code"] == 200 and body(served["patch"])["result"]["state"] == "2"
    assert (served["missing"]["status_code"], served["missing"]["status_text"]) == (
        404, "Not Found")
    assert body(served["missing"])["error"]["message"] == "No Record found"
    stored = {r["sys_id"]: r for r in sn.records("incident")}
    assert stored[target["sys_id"]]["state"] == "2" and created["sys_id"] in stored


def test_deletes_in_a_batch(sn: StubServiceNow) -> None:
    victims = [r["sys_id"] for r in sn.records("incident")[:3]]
    answer = batch(sn, [item(v, "DELETE", f"/api/now/table/incident/{v}") for v in victims])
    assert [s["status_code"] for s in answer.json()["serviced_requests"]] == [204] * 3
    assert len(sn.records("incident")) == 27


def test_requests_that_cannot_be_served_are_listed_unserviced(sn: StubServiceNow) -> None:
    answer = batch(sn, [
        item("nested", "POST", "/api/now/v1/batch", {"rest_requests": []}),
        item("elsewhere", "GET", "http://example.com/api/now/table/incident"),
        item("verb", "BREW", "/api/now/table/incident"),
        {"method": "GET", "url": "/api/now/table/incident"},
        dict(item("bad-body", "POST", "/api/now/table/incident"), body="%%%not base64"),
        item("ok", "GET", "/api/now/table/incident?sysparm_limit=1"),
    ])
    result = answer.json()
    assert [s["id"] for s in result["serviced_requests"]] == ["ok"]
    assert result["unserviced_requests"] == ["nested", "elsewhere", "verb", "", "bad-body"]


def test_response_headers_can_be_left_out(sn: StubServiceNow) -> None:
    answer = batch(sn, [item("x", "GET", "/api/now/table/incident?sysparm_limit=1",
                             exclude_response_headers=True)])
    [served] = answer.json()["serviced_requests"]
    assert "headers" not in served and served["status_code"] == 200


def test_a_query_too_long_for_a_url_goes_through_a_batch(sn: StubServiceNow) -> None:
    numbers = [f"INC{n:07d}" for n in range(10001, 12500)]
    query = f"numberIN{','.join(numbers)}^ORDERBYnumber"
    assert len(query) > 10_000
    answer = batch(sn, [item("long", "GET",
                             f"/api/now/table/incident?sysparm_fields=number&sysparm_query={query}")])
    [served] = answer.json()["serviced_requests"]
    assert [r["number"] for r in body(served)["result"]] == [f"INC{n:07d}"
                                                            for n in range(10001, 10031)]


def test_the_batch_and_its_requests_need_authentication(sn: StubServiceNow) -> None:
    assert batch(sn, [item("x", "GET", "/api/now/table/incident")], auth=None).status_code == 401
    wrong = batch(sn, [item("x", "GET", "/api/now/table/incident")], auth=("admin", "wrong"))
    assert wrong.status_code == 401


@pytest.mark.parametrize("payload", [b"not json", b"[]", b'{"rest_requests": "x"}'])
def test_a_body_that_is_not_a_batch_is_refused(sn: StubServiceNow, payload: bytes) -> None:
    answer = requests.post(f"{sn.url}/api/now/v1/batch", auth=ADMIN, data=payload, timeout=5,
                           headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json()["status"] == "failure"
