"""Stub control (faults, rate limits, clock, log, reset): in-thread, over HTTP, in a process."""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from snworker.testing import RemoteStub, StubControlError, StubServiceNow
from snworker.testing.oauth import s256
from snworker.testing.platform import SEED_PASSWORD
from snworker.testing.server import _read_ready_line
from tests.conftest import port_is_free

REDIRECT = "http://127.0.0.1:8765/callback"


@pytest.fixture
def sn() -> Iterator[StubServiceNow]:
    with StubServiceNow() as stub:
        yield stub


def access_token(stub: StubServiceNow | RemoteStub) -> str:
    stub.set_consent("allow")
    verifier = secrets.token_urlsafe(48)
    consent = requests.get(f"{stub.url}/oauth_auth.do", allow_redirects=False, timeout=5, params={
        "response_type": "code", "client_id": stub.client_id, "redirect_uri": REDIRECT,
        "state": "s", "code_challenge": s256(verifier), "code_challenge_method": "S256"})
    code = parse_qs(urlsplit(consent.headers["Location"]).query)["code"][0]
    tokens = requests.post(f"{stub.url}/oauth_token.do", timeout=5, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "client_id": stub.client_id, "code_verifier": verifier}).json()
    return str(tokens["access_token"])


def get(stub: StubServiceNow | RemoteStub, token: str | None = None,
        path: str = "/api/now/table/incident") -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{stub.url}{path}", headers=headers, timeout=10,
                        params={"sysparm_limit": 1})


# --- faults ---------------------------------------------------------------------------------


def test_injected_status_applies_the_given_number_of_times(sn: StubServiceNow) -> None:
    token = access_token(sn)
    sn.inject(status=503, times=2)
    answers = [get(sn, token) for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 200]
    assert answers[0].json() == {
        "error": {"message": "Service Unavailable",
                  "detail": "Fault injected by the stub instance"},
        "status": "failure",
    }
    assert "Retry-After" not in answers[0].headers


def test_injections_queue_in_order_and_filter_by_path_and_method(sn: StubServiceNow) -> None:
    token = access_token(sn)
    sn.inject(status=502, times=1, method="POST")
    sn.inject(status=500, times=1, path_prefix="/api/now/table/sys_user")
    sn.inject(status=504, times=1, retry_after=7)
    first = get(sn, token)
    assert (first.status_code, first.headers["Retry-After"]) == (504, "7")
    assert get(sn, token, "/api/now/table/sys_user").status_code == 500
    assert get(sn, token).status_code == 200
    posted = requests.post(f"{sn.url}/api/now/table/incident", json={}, timeout=5,
                           headers={"Authorization": f"Bearer {token}"})
    assert posted.status_code == 502


def test_injected_429_carries_rate_limit_headers(sn: StubServiceNow) -> None:
    sn.inject(status=429, times=1, retry_after=3)
    answer = get(sn)
    assert answer.status_code == 429
    assert answer.json()["error"]["message"] == "Rate limit exceeded"
    assert answer.headers["Retry-After"] == "3"
    assert all(name in answer.headers
               for name in ("X-RateLimit-Limit", "X-RateLimit-Reset", "X-RateLimit-Rule"))
    assert int(answer.headers["X-RateLimit-Reset"]) >= int(time.time())


def test_token_endpoint_faults(sn: StubServiceNow) -> None:
    sn.inject(status=401, times=1, path_prefix="/oauth_token.do")
    sn.inject(status=503, times=1, path_prefix="/oauth_token.do")
    refused = requests.post(f"{sn.url}/oauth_token.do", data={"grant_type": "x"}, timeout=5)
    assert refused.status_code == 401
    assert refused.json() == {"error_description": "access_denied", "error": "server_error"}
    unavailable = requests.post(f"{sn.url}/oauth_token.do", data={}, timeout=5)
    assert unavailable.status_code == 503
    assert access_token(sn)


def test_injected_headers_go_on_injected_and_normal_answers(sn: StubServiceNow) -> None:
    token = access_token(sn)
    sn.inject(status=302, times=1, headers={"Location": "http://127.0.0.1:1/elsewhere"})
    sn.inject(status=None, times=1, headers={"X-Echo": "hello", "Link": "<x>;rel=\"self\""})
    moved = requests.get(f"{sn.url}/api/now/table/incident", allow_redirects=False, timeout=5,
                         headers={"Authorization": f"Bearer {token}"})
    assert (moved.status_code, moved.headers["Location"]) == (302, "http://127.0.0.1:1/elsewhere")
    served = get(sn, token)
    assert served.status_code == 200 and served.json()["result"]
    assert (served.headers["X-Echo"], served.headers["Link"]) == ("hello", '<x>;rel="self"')
    assert "X-Echo" not in get(sn, token).headers


def test_delay_adds_latency_and_then_answers(sn: StubServiceNow) -> None:
    sn.inject(status=None, times=1, delay=0.3)
    started = time.perf_counter()
    answer = get(sn)
    assert time.perf_counter() - started >= 0.3
    assert answer.status_code == 401
    sn.inject(status=503, times=1, delay=0.2)
    started = time.perf_counter()
    assert get(sn).status_code == 503
    assert time.perf_counter() - started >= 0.2


def test_drop_closes_the_connection_without_an_answer(sn: StubServiceNow) -> None:
    token = access_token(sn)
    sn.inject(status=None, times=1, drop=True)
    with pytest.raises(requests.ConnectionError):
        get(sn, token)
    assert get(sn, token).status_code == 200
    assert [r["status"] for r in sn.requests[-2:]] == [0, 200]


def test_concurrent_clients_are_served_in_parallel(sn: StubServiceNow) -> None:
    sn.inject(status=None, times=32, delay=0.5)
    started = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(lambda _: get(sn).status_code, range(32)))
    assert statuses == [401] * 32
    assert time.perf_counter() - started < 2.0


def test_faults_can_be_listed_and_cleared(sn: StubServiceNow) -> None:
    token = access_token(sn)
    sn.inject(status=503, times=3, path_prefix="/api/now/table/incident")
    sn.inject(status=401, times=1, path_prefix="/oauth_token.do")
    sn.inject(status=None, times=2, delay=0.01, path_prefix="/api/now/attachment", method="get")
    assert get(sn, token).status_code == 503
    pending = sn.pending_faults
    assert [(f["path_prefix"], f["times"], f["status"]) for f in pending] == [
        ("/api/now/table/incident", 2, 503), ("/oauth_token.do", 1, 401),
        ("/api/now/attachment", 2, None)]
    assert pending[2]["method"] == "GET" and pending[2]["delay"] == 0.01
    assert sn.clear_faults("/api/now") == 2
    assert [f["path_prefix"] for f in sn.pending_faults] == ["/oauth_token.do"]
    assert get(sn, token).status_code == 200
    assert sn.clear_faults() == 1 and sn.pending_faults == []
    assert sn.clear_faults() == 0


@pytest.mark.parametrize("times", [0, -1, 1.5])
def test_inject_wants_at_least_one_request(sn: StubServiceNow, times: Any) -> None:
    with pytest.raises(ValueError, match="clear_faults"):
        sn.inject(status=503, times=times)
    assert sn.pending_faults == []


def test_rate_limit_headers_come_on_every_response_the_rule_covers(sn: StubServiceNow) -> None:
    token = access_token(sn)
    sn.rate_limit(limit=3, window=60, path_prefix="/api/now/table")
    answers = [get(sn, token) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    for answer in answers:
        assert answer.headers["X-RateLimit-Limit"] == "3"
        assert answer.headers["X-RateLimit-Rule"] == answers[0].headers["X-RateLimit-Rule"]
        assert int(answer.headers["X-RateLimit-Reset"]) >= int(time.time()) + 55
    assert re.fullmatch(r"[0-9a-f]{32}", answers[0].headers["X-RateLimit-Rule"])
    assert "Retry-After" not in answers[0].headers and "Retry-After" in answers[3].headers
    uncovered = get(sn, token, "/api/now/attachment")
    assert uncovered.status_code == 200 and "X-RateLimit-Limit" not in uncovered.headers
    sn.rate_limit(None)
    assert "X-RateLimit-Limit" not in get(sn, token).headers


def test_rate_limit(sn: StubServiceNow) -> None:
    token = access_token(sn)
    sn.rate_limit(limit=2, window=60)
    assert [get(sn, token).status_code for _ in range(2)] == [200, 200]
    limited = get(sn, token)
    assert limited.status_code == 429
    assert limited.json()["error"]["message"] == "Rate limit exceeded"
    assert limited.headers["X-RateLimit-Limit"] == "2"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert int(limited.headers["X-RateLimit-Reset"]) >= int(time.time()) + 50
    assert limited.headers["X-RateLimit-Rule"]
    assert get(sn, token, "/api/other").status_code != 429
    sn.advance(61)
    token = access_token(sn)
    assert get(sn, token).status_code == 200
    sn.rate_limit(None)
    assert [get(sn, token).status_code for _ in range(4)] == [200] * 4


# --- observations and reset ----------------------------------------------------------------------


def test_request_log_entries(sn: StubServiceNow) -> None:
    sn.advance(100)
    before = time.time() + 100
    get(sn, "some-token")
    [entry] = sn.requests
    assert entry["method"] == "GET"
    assert entry["path"] == "/api/now/table/incident"
    assert entry["query"] == {"sysparm_limit": "1"}
    assert entry["status"] == 401
    assert entry["headers"]["Authorization"] == "Bearer ***"
    assert before - 1 <= entry["time"] <= time.time() + 101
    sn.records("incident")
    requests.get(f"{sn.url}/_stub/issued-secrets", timeout=5)
    assert len(sn.requests) == 1


def test_reset_returns_to_the_fresh_state(sn: StubServiceNow) -> None:
    token = access_token(sn)
    fresh_incidents = sn.records("incident")
    sn.insert("incident", {"short_description": "extra"})
    sn.register_client("other", ["http://127.0.0.1:1/cb"])
    sn.set_lifespans(access=5)
    sn.inject(status=500, times=5)
    sn.rate_limit(limit=1)
    sn.advance(10)
    sn.define_table("u_widget", {"u_name": "string"})
    sn.define_table("incident", {"u_region": "string"})
    sn.define_transform("u_import", "incident", {"u_short": "short_description"})
    sn.route("/api/x_acme/v1/ping", lambda request: "pong")
    clock = sn.advance(0)
    sn.reset()
    assert sn.advance(0) < clock
    assert sn.records("incident") == fresh_incidents
    assert "u_region" not in fresh_incidents[0] and sn.records("u_widget") == []
    assert sn.pending_faults == []
    assert sn.grant_counts == {"authorization_code": 0, "refresh_token": 0}
    assert sn.requests == [] and sn.issued_secrets() == [] and sn.revocation_count == 0
    assert get(sn, token).status_code == 401
    page = requests.get(f"{sn.url}/oauth_auth.do", timeout=5, allow_redirects=False,
                        params={"client_id": "other", "state": "s"})
    assert page.status_code == 400
    new_token = access_token(sn)
    assert [get(sn, new_token).status_code for _ in range(2)] == [200, 200]
    assert get(sn, new_token, "/api/x_acme/v1/ping").status_code == 400
    assert get(sn, new_token, "/api/now/table/u_widget").status_code == 400
    imported = requests.post(f"{sn.url}/api/now/import/u_import", json={"u_short": "x"},
                             headers={"Authorization": f"Bearer {new_token}"}, timeout=5)
    assert imported.status_code == 400


def test_reset_restores_the_seed_every_time() -> None:
    # Its speed is section 9 of the benchmarks (a shared stub reset against a fresh one).
    with StubServiceNow() as sn:
        seeded = sn.records("incident")
        for _ in range(3):
            sn.insert("incident", {"short_description": "dirty"})
            sn.reset()
            assert sn.records("incident") == seeded


def test_no_seed() -> None:
    with StubServiceNow(seed=False) as sn:
        assert sn.records("incident") == []
        assert sn.users == []


def test_registered_client_shows_its_name(sn: StubServiceNow) -> None:
    sn.register_client("reports", ["http://127.0.0.1:7000/cb"], app_name="Reports Desk")
    page = requests.get(f"{sn.url}/oauth_auth.do", timeout=5, params={
        "response_type": "code", "client_id": "reports", "redirect_uri": "http://127.0.0.1:7000/cb",
        "state": "s", "code_challenge": s256("v" * 43), "code_challenge_method": "S256"})
    assert "Reports Desk would like to connect to your ServiceNow account" in page.text


# --- over HTTP ------------------------------------------------------------------------------------


def test_control_endpoints_speak_json(sn: StubServiceNow) -> None:
    token = access_token(sn)
    secrets_issued = requests.get(f"{sn.url}/_stub/issued-secrets", timeout=5).json()["result"]
    assert token in secrets_issued
    counts = requests.post(f"{sn.url}/_stub/grant_counts", json={}, timeout=5).json()
    assert counts == {"result": {"authorization_code": 1, "refresh_token": 0}}
    records = requests.get(f"{sn.url}/_stub/records", params={"table": "customer_account"},
                           timeout=5).json()["result"]
    assert [r["name"] for r in records] == [r["name"] for r in sn.records("customer_account")]


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("no-such-operation", b"{}"),
        ("advance", b'{"seconds": "soon"}'),
        ("advance", b'{"seconds": -5}'),
        ("advance", b"{}"),
        ("advance", b"[1]"),
        ("advance", b"not json"),
        ("inject", b'{"status": 42}'),
        ("inject", b'{"headers": ["Location"]}'),
        ("set-consent", b'{"mode": "maybe"}'),
        ("insert", b'{"table": "incident", "record": [1]}'),
        ("register-client", b'{"client_id": "x", "redirect_uris": "http://a"}'),
        ("inject", b'{"times": 0}'),
        ("clear-faults", b'{"path_prefix": "/api", "extra": 1}'),
        ("define-table", b'{"name": "Bad Name", "columns": {}}'),
        ("define-table", b'{"name": "u_x", "columns": {"u_y": 5}}'),
        ("define-transform", b'{"staging_table": "u_s", "target_table": "nope", "field_map": {}}'),
        ("insert", b'{"table": "incident", "record": {"u_no_column": "x"}}'),
    ],
)
def test_bad_control_requests_are_refused(sn: StubServiceNow, operation: str, body: bytes) -> None:
    answer = requests.post(f"{sn.url}/_stub/{operation}", data=body, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["status"] == "failure"


def test_remote_stub_attaches_to_a_running_stub(sn: StubServiceNow) -> None:
    remote = RemoteStub(sn.url)
    with remote:
        assert (remote.client_id, remote.redirect_uri) == (sn.client_id, sn.redirect_uri)
        stored = remote.insert("incident", {"short_description": "from afar"})
        assert stored in sn.records("incident")
        assert remote.records("incident") == sn.records("incident")
        assert remote.users == sn.users
        with pytest.raises(StubControlError):
            remote.set_consent("maybe")  # type: ignore[arg-type]
        remote.inject(status=502, times=2, path_prefix="/api/now/table/sys_user")
        assert sn.pending_faults == remote.pending_faults
        assert remote.pending_faults[0]["status"] == 502
        assert remote.clear_faults("/api/now/table") == 1 and sn.pending_faults == []
        with pytest.raises(StubControlError, match="clear_faults"):
            remote.inject(times=0)
        assert "u_name" in remote.define_table("u_remote", {"u_name": "string"})
        assert remote.insert("u_remote", {"u_name": "far"})["u_name"] == "far"
    assert get(sn).status_code == 401


def test_stub_in_a_separate_process() -> None:
    with StubServiceNow.start_process(access_lifespan=120, client_id="proc-client",
                                      auth=("code", "basic"), threads=4) as remote:
        assert remote.client_id == "proc-client"
        basic = requests.get(f"{remote.url}/api/now/table/incident", timeout=5,
                             params={"sysparm_limit": 1}, auth=("admin", SEED_PASSWORD))
        assert basic.status_code == 200
        token = access_token(remote)
        assert get(remote, token).status_code == 200
        remote.advance(121)
        assert get(remote, token).status_code == 401
        token = access_token(remote)
        remote.inject(status=503, times=1, retry_after=2)
        failed = get(remote, token)
        assert (failed.status_code, failed.headers["Retry-After"]) == (503, "2")
        assert get(remote, token).status_code == 200
        assert remote.grant_counts["authorization_code"] == 2
        assert [r["status"] for r in remote.requests if r["path"].startswith("/api/")] == [
            200, 200, 401, 503, 200]
        remote.reset()
        assert remote.requests == []
        process = remote._process
        port = urlsplit(remote.url).port
    assert process is not None and process.poll() is not None
    assert port is not None and port_is_free(port)


def test_a_stub_process_that_never_says_ready_times_out_within_its_bound() -> None:
    # The ready line is read by a thread, not select(): Windows' select() takes no pipe.
    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                              stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    began = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match=r"did not start within 0\.5 s"):
            _read_ready_line(silent, 0.5)
        assert time.monotonic() - began < 5
    finally:
        silent.kill()
        silent.wait(10)


# --- lifecycle ---------------------------------------------------------------------------------


def stub_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("waitress-")}


def wait_until_handlers_idle(stub: StubServiceNow) -> None:
    """Wait for every handler thread to be back waiting for work.

    A client can read its response a moment before the thread that wrote it is counted idle
    again; a request sent in that moment rightly finds no idle thread and starts another.
    """
    dispatcher = stub._server._server.task_dispatcher  # type: ignore[union-attr]
    deadline = time.monotonic() + 5
    while dispatcher.active_count and time.monotonic() < deadline:
        time.sleep(0.001)
    assert dispatcher.active_count == 0


def test_handler_threads_start_only_as_requests_need_them() -> None:
    before = stub_threads()
    with StubServiceNow() as sn:
        assert stub_threads() == before
        for _ in range(5):
            assert get(sn).status_code == 401
            wait_until_handlers_idle(sn)
        started = stub_threads() - before
        assert len(started) == 1
    assert not any(t.is_alive() for t in started)


def test_threads_caps_the_requests_served_at_once() -> None:
    before = stub_threads()
    with StubServiceNow(threads=2) as sn:
        sn.inject(status=None, times=4, delay=0.3)
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(lambda _: get(sn).status_code, range(4))) == [401] * 4
        assert time.perf_counter() - started >= 0.6
        assert len(stub_threads() - before) == 2
    with pytest.raises(ValueError):
        StubServiceNow(threads=0)


def test_stop_closes_open_connections_and_frees_the_port() -> None:
    # How fast start and stop are is section 9 of the benchmarks; this is what stop does.
    stub = StubServiceNow().start()
    port = urlsplit(stub.url).port
    session = requests.Session()
    assert session.get(f"{stub.url}/api/now/table/incident", timeout=5).status_code == 401
    started = time.perf_counter()
    stub.stop()
    # The session's keep-alive connection is closed, not waited for (waitress would wait up
    # to its 120 s channel timeout).
    assert time.perf_counter() - started < 5
    assert port is not None and port_is_free(port)
    with pytest.raises(requests.ConnectionError):
        session.get(f"http://127.0.0.1:{port}/api/now/table/incident", timeout=5)
    stub.stop()
    with pytest.raises(RuntimeError):
        _ = stub.url


def test_fixed_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with StubServiceNow(port=port) as sn:
        assert sn.url == f"http://127.0.0.1:{port}"
        assert get(sn).status_code == 401


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        StubServiceNow(consent="sometimes")  # type: ignore[arg-type]


def test_control_arguments_typed_in_thread(sn: StubServiceNow) -> None:
    with pytest.raises(ValueError):
        sn.advance("soon")  # type: ignore[arg-type]
    args: dict[str, Any] = {"limit": "many"}
    with pytest.raises(ValueError):
        sn.rate_limit(**args)
