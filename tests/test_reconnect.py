"""conn.reconnect(): a new consent for the same connection object, single-flight across threads."""

from __future__ import annotations

import threading

import pytest

import snworker
from snworker.testing import approve, deny
from tests.conftest import BrowserRecorder, connect

INCIDENTS = "/api/now/table/incident"


def get(conn: snworker.ServiceNowConnection) -> int:
    return conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status


def test_eight_threads_that_meet_an_expired_grant_cause_one_consent(stub):
    recorder = BrowserRecorder()
    with connect(stub, open_browser=recorder) as conn:
        stub.revoke_refresh_tokens()
        barrier = threading.Barrier(8)
        outcomes: list[object] = []

        def app_thread() -> None:
            barrier.wait(10)
            try:
                get(conn)
            except snworker.AuthTokenExpiredError:
                conn.reconnect()  # the pattern README shows
            outcomes.append(get(conn))

        threads = [threading.Thread(target=app_thread) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert outcomes == [200] * 8
        assert stub.grant_counts["authorization_code"] == 2  # connect, and one reconnect
        assert len(recorder.urls) == 2


def test_a_thread_that_met_the_error_before_a_reconnect_finished_needs_none(stub):
    with connect(stub) as conn:
        stub.revoke_refresh_tokens()
        met, go_on = threading.Event(), threading.Event()
        outcomes: list[int] = []

        def late() -> None:
            try:
                get(conn)
            except snworker.AuthTokenExpiredError:
                met.set()
                go_on.wait(10)  # another thread reconnects meanwhile
                conn.reconnect()
            outcomes.append(get(conn))

        thread = threading.Thread(target=late)
        thread.start()
        assert met.wait(10)
        conn.reconnect()
        go_on.set()
        thread.join(20)
        assert outcomes == [200]
        assert stub.grant_counts["authorization_code"] == 2


def test_a_refused_reconnect_leaves_the_connection_as_it_was(stub):
    with connect(stub) as conn:
        stub.revoke_refresh_tokens()
        with pytest.raises(snworker.AuthTokenExpiredError):
            get(conn)
        with pytest.raises(snworker.AuthorizationError) as caught:
            conn.reconnect(open_browser=deny)
        assert caught.value.reason == "denied"
        with pytest.raises(snworker.AuthTokenExpiredError):
            get(conn)
        conn.reconnect(open_browser=approve)
        assert get(conn) == 200


def test_reconnect_on_a_working_connection_replaces_and_revokes_its_grant(stub):
    with connect(stub) as conn:
        assert get(conn) == 200
        conn.reconnect()
        assert get(conn) == 200
        assert stub.grant_counts["authorization_code"] == 2
        assert conn.current_user and conn.current_user["user_name"] == "admin"
        _wait_for(lambda: stub.revocation_count == 1)  # the replaced grant, in the background


def test_reconnect_on_a_closed_connection_raises(stub):
    conn = connect(stub)
    conn.disconnect()
    with pytest.raises(snworker.ConnectionClosedError):
        conn.reconnect()


def _wait_for(condition, within: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)
