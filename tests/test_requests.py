"""execute_api_request: methods, bodies, parameters, and refusal of bad input before sending."""

from __future__ import annotations

import pytest

import snworker
from tests.conftest import api_requests

INCIDENTS = "/api/now/table/incident"


def test_post_patch_put_delete_round_trip(conn, stub):
    created = conn.execute_api_request(INCIDENTS, "POST", {"short_description": "printer on fire"})
    assert created.status == 201
    sys_id = created.data["sys_id"]
    assert created.headers["Location"].endswith(f"/incident/{sys_id}")
    patched = conn.execute_api_request(f"{INCIDENTS}/{sys_id}", "PATCH", {"state": "2"})
    assert patched.data["state"] == "2"
    put = conn.execute_api_request(f"{INCIDENTS}/{sys_id}", "PUT", {"state": "3"})
    assert put.data["state"] == "3"
    stored = next(r for r in stub.records("incident") if r["sys_id"] == sys_id)
    assert stored["short_description"] == "printer on fire" and stored["state"] == "3"
    deleted = conn.execute_api_request(f"{INCIDENTS}/{sys_id}", "DELETE")
    assert deleted.status == 204 and deleted.content == b"" and deleted.data is None
    assert all(r["sys_id"] != sys_id for r in stub.records("incident"))


def test_suppress_response_body(conn):
    resp = conn.execute_api_request(INCIDENTS, "POST", {"short_description": "quiet"}, True)
    assert resp.status in (200, 201, 204)
    assert resp.content == b""


def test_head_has_no_body(conn):
    resp = conn.execute_api_request(INCIDENTS, "HEAD", params={"sysparm_limit": 1})
    assert resp.status == 200 and resp.content == b""


def test_parameters_booleans_lists_and_none(conn, stub):
    conn.execute_api_request(INCIDENTS, params={
        "sysparm_limit": 1, "sysparm_exclude_reference_link": True, "sysparm_fields": None,
        "sysparm_display_value": ["false"],
    })
    query = api_requests(stub)[-1]["query"]
    assert query["sysparm_limit"] == "1"
    assert query["sysparm_exclude_reference_link"] == "true"
    assert "sysparm_fields" not in query


def test_extra_headers_reach_the_instance(conn, stub):
    conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}, headers={"X-Trace": "abc"})
    headers = {k.lower(): v for k, v in api_requests(stub)[-1]["headers"].items()}
    assert headers["x-trace"] == "abc"
    assert headers["accept"] == "application/json"


def test_bytes_body_is_sent_as_is(conn, stub):
    resp = conn.execute_api_request(INCIDENTS, "POST", b'{"short_description":"raw"}')
    assert resp.data["short_description"] == "raw"


def test_an_error_status_raises_api_request_error_with_the_envelope(conn):
    with pytest.raises(snworker.ApiRequestError) as caught:
        conn.execute_api_request(f"{INCIDENTS}/0123456789abcdef0123456789abcdef")
    error = caught.value
    assert error.status == 404
    assert error.message == "No Record found"
    assert error.detail and "ACL" in error.detail
    assert "application/json" in error.headers["content-type"]


def test_typed_results(conn):
    from snworker.entities import Core

    resp = conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1},
                                    result_type=list[Core.Incident])
    incident: Core.Incident = resp.data[0]
    assert incident["number"].startswith("INC")


BAD_PATHS = [
    "https://evil.example/x",
    "http://127.0.0.1:1/api/now/table/incident",
    "//evil.example/x",
    "evil.example/x",
    "",
    "/api/now/table/incident\r\nX-Injected: 1",
    "/api/now/table/incident\n",
    "/api/../oauth_token.do",
    "/api/%2e%2e/oauth_revoke_token.do",
    "/api/now\\..\\x",
    "/%2f%2fevil.example/x",
    "/api/now/table/incident#frag",
]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_paths_that_could_leave_the_instance_are_refused(conn, stub, path):
    before = len(stub.requests)
    with pytest.raises(snworker.InvalidRequestError):
        conn.execute_api_request(path)
    assert len(stub.requests) == before  # nothing was sent
    assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200


@pytest.mark.parametrize("kwargs", [
    {"http_method": "TRACE"},
    {"http_method": "get\r\n"},
    {"http_method": 7},
    {"headers": {"Authorization": "Bearer mine"}},
    {"headers": {"cookie": "a=b"}},
    {"headers": {"Host": "evil.example"}},
    {"headers": {"Proxy-Authorization": "x"}},
    {"headers": {"X-A": "b\r\nX-B: c"}},
    {"headers": {"Bad Name": "x"}},
    {"headers": {"X-A": 1}},
    {"data": {"when": object()}},
    {"data": {"n": float("nan")}},
    {"params": {"a": object()}},
    {"params": {1: "a"}},
    {"timeout": 0},
    {"timeout": float("inf")},
    {"timeout": "5"},
])
def test_bad_input_is_refused_before_sending_and_the_connection_stays_usable(conn, stub, kwargs):
    kwargs = dict(kwargs)
    method = kwargs.pop("http_method", "POST")
    before = len(stub.requests)
    with pytest.raises(snworker.InvalidRequestError):
        conn.execute_api_request(INCIDENTS, method, kwargs.pop("data", None), **kwargs)
    assert len(stub.requests) == before
    assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200


def test_a_path_with_a_query_string_is_allowed(conn, stub):
    resp = conn.execute_api_request(f"{INCIDENTS}?sysparm_limit=2")
    assert len(resp.data) == 2


def test_the_response_data_is_parsed_once_and_lazily(conn):
    resp = conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1})
    assert resp.data is resp.data
    assert resp.json()["result"] == resp.data
