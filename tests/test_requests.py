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


# --- any status back, and one attempt for a caller that retries on its own ------------------


def test_raise_for_status_false_returns_the_error_as_the_instance_sent_it(conn, stub):
    missing = f"{INCIDENTS}/0123456789abcdef0123456789abcdef"
    resp = conn.execute_api_request(missing, raise_for_status=False)
    assert resp.status == 404
    assert resp.json()["error"]["message"] == "No Record found"
    assert resp.json()["status"] == "failure"
    assert "application/json" in resp.headers["Content-Type"]
    stub.inject(status=503, times=1, path_prefix=INCIDENTS, retry_after=0)
    unavailable = conn.execute_api_request(INCIDENTS, raise_for_status=False, retry=False)
    assert unavailable.status == 503 and unavailable.json()["status"] == "failure"
    assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200


def test_an_error_body_that_reflects_the_token_is_redacted(conn, stub):
    from snworker.testing import ScriptedResponse

    def reflect(request):
        return ScriptedResponse(400, {"seen": request.headers["Authorization"]},
                                {"X-Seen": request.headers["Authorization"]})

    stub.route("/api/x_test/v1/reflect", reflect)
    resp = conn.execute_api_request("/api/x_test/v1/reflect", raise_for_status=False)
    assert resp.status == 400
    tokens = [s for s in stub.issued_secrets() if len(s) >= 20]
    assert tokens
    assert "[redacted by snworker]" in resp.data["seen"]
    assert "[redacted by snworker]" in resp.headers["X-Seen"]
    for token in tokens:
        assert token not in resp.content.decode() + repr(dict(resp.headers))


def test_retry_false_makes_one_attempt_where_the_default_retries(conn, stub):
    def attempts() -> list[int]:
        return [r["status"] for r in api_requests(stub) if r["path"] == INCIDENTS]

    stub.inject(status=503, times=1, path_prefix=INCIDENTS, retry_after=0)
    assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
    assert attempts()[-2:] == [503, 200]
    before = len(attempts())
    stub.inject(status=503, times=1, path_prefix=INCIDENTS, retry_after=0)
    with pytest.raises(snworker.ApiRequestError) as caught:
        conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}, retry=False)
    assert caught.value.status == 503
    assert attempts()[before:] == [503]  # one attempt: the caller's own retries decide
    stub.inject(status=None, times=1, path_prefix=INCIDENTS, drop=True)
    with pytest.raises(snworker.ApiRequestError) as dropped:
        conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}, retry=False)
    assert dropped.value.status is None
    assert len(attempts()) == before + 2


def test_an_expired_access_token_is_still_renewed_without_retries(conn, stub):
    stub.expire_access_tokens()
    resp = conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}, retry=False,
                                    raise_for_status=False)
    assert resp.status == 200
    assert stub.grant_counts["refresh_token"] == 1


@pytest.mark.parametrize("field", ["raise_for_status", "retry"])
def test_the_worker_refuses_flags_that_are_not_booleans(conn, stub, field):
    from snworker.messages import Request

    channel = conn._channel
    before = len(api_requests(stub))
    flags = {"raise_for_status": True, "retry": True, field: "no"}
    answer = channel.call(Request(channel.next_id(), "GET", INCIDENTS, (), (), False, 5.0,
                                  **flags), 5.0)
    assert answer.kind == "invalid_request" and field in answer.message
    assert len(api_requests(stub)) == before
