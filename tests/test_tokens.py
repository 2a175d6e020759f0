"""Token lifecycle through a real worker: silent refresh, expiry, retries, deadlines, revoke."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import snworker
from snworker.testing import StubServiceNow
from tests.conftest import api_requests, connect

INCIDENTS = "/api/now/table/incident"
FAST = snworker.RetryPolicy(backoff_initial=0.05, backoff_max=0.2)


def token_requests(sn: StubServiceNow) -> list[dict[str, Any]]:
    return [r for r in sn.requests if r["path"] == "/oauth_token.do"]


def unauthorized(sn: StubServiceNow) -> int:
    return sum(1 for r in api_requests(sn) if r["status"] == 401)


def all_at_once(count: int, call: Callable[[], Any]) -> list[Any]:
    """Run `call` in `count` threads released together; their results or exceptions."""
    barrier = threading.Barrier(count)
    outcomes: list[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait(10)
        try:
            outcomes[index] = call()
        except BaseException as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def get_one(conn: snworker.ServiceNowConnection) -> int:
    return conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status


def test_32_threads_meeting_a_token_the_stub_expired_cause_one_refresh(stub):
    with connect(stub, retry=FAST) as conn:
        stub.expire_access_tokens()
        outcomes = all_at_once(32, lambda: get_one(conn))
        assert outcomes == [200] * 32
        assert stub.grant_counts["refresh_token"] == 1
        assert len(token_requests(stub)) == 2  # the code exchange and one refresh


def test_32_threads_meeting_a_token_the_worker_knows_is_expired_cause_one_refresh(stub):
    # The stub says a token lives 3 s: the worker renews it before use with 0.75 s left (a
    # quarter of its life, since that is less than the 60 s margin).
    stub.set_lifespans(access=4)
    with connect(stub, retry=snworker.RetryPolicy(refresh_margin=60)) as conn:
        time.sleep(2.4)
        outcomes = all_at_once(32, lambda: get_one(conn))
        assert outcomes == [200] * 32
        assert stub.grant_counts["refresh_token"] == 1
        assert unauthorized(stub) == 0


def test_proactive_refresh_happens_before_the_stub_would_answer_401(stub):
    stub.set_lifespans(access=4)
    with connect(stub, retry=snworker.RetryPolicy(refresh_margin=60)) as conn:
        assert get_one(conn) == 200
        assert stub.grant_counts["refresh_token"] == 0
        time.sleep(2.4)
        assert get_one(conn) == 200
        assert stub.grant_counts["refresh_token"] == 1
        refresh_at = token_requests(stub)[-1]
        assert sn_index(stub, refresh_at) < sn_index(stub, api_requests(stub)[-1])
        assert unauthorized(stub) == 0


def test_a_short_lived_token_is_not_renewed_before_every_call(stub):
    stub.set_lifespans(access=30)  # half the default 60 s margin
    with connect(stub) as conn:
        for _ in range(20):
            assert get_one(conn) == 200
        assert stub.grant_counts["refresh_token"] == 0
        assert unauthorized(stub) == 0


def sn_index(sn: StubServiceNow, entry: dict[str, Any]) -> int:
    return sn.requests.index(entry)


def test_reactive_refresh_after_a_401_resends_once(stub):
    with connect(stub) as conn:
        stub.expire_access_tokens()
        assert get_one(conn) == 200
        assert unauthorized(stub) == 1
        assert stub.grant_counts["refresh_token"] == 1
        assert get_one(conn) == 200  # the renewed token serves on
        assert stub.grant_counts["refresh_token"] == 1


def test_the_clock_past_the_access_lifespan_is_handled_silently(stub):
    with connect(stub) as conn:
        stub.advance(1801)
        assert get_one(conn) == 200
        assert stub.grant_counts["refresh_token"] == 1


def test_revoked_refresh_tokens_end_the_connection_until_it_reconnects(stub):
    with connect(stub) as conn:
        stub.revoke_refresh_tokens()
        outcomes = all_at_once(8, lambda: get_one(conn))
        assert all(isinstance(o, snworker.AuthTokenExpiredError) for o in outcomes), outcomes
        refreshes = [r for r in token_requests(stub)[1:]]
        assert len(refreshes) == 1  # the refusal was shared too
        seen = len(stub.requests)
        started = time.monotonic()
        with pytest.raises(snworker.AuthTokenExpiredError, match=r"; call conn\.reconnect\(\)$"):
            get_one(conn)
        assert time.monotonic() - started < 1.0  # answered at once, not after a deadline
        assert len(stub.requests) == seen  # later calls send nothing
        with connect(stub) as fresh:
            assert get_one(fresh) == 200
        with pytest.raises(snworker.AuthTokenExpiredError):
            get_one(conn)


def test_the_refresh_token_expiring_on_the_stub_clock_gives_auth_token_expired(stub):
    with connect(stub) as conn:
        stub.advance(8_640_001)
        with pytest.raises(snworker.AuthTokenExpiredError):
            get_one(conn)


def test_503_twice_then_200_succeeds_on_the_third_attempt(stub):
    with connect(stub, retry=FAST) as conn:
        stub.inject(status=503, times=2, path_prefix=INCIDENTS)
        before = len(api_requests(stub))
        assert get_one(conn) == 200
        assert [r["status"] for r in api_requests(stub)[before:]] == [503, 503, 200]


def test_429_with_retry_after_waits_at_least_that_long(stub):
    with connect(stub, retry=FAST) as conn:
        stub.inject(status=429, times=1, path_prefix=INCIDENTS, retry_after=1)
        started = time.monotonic()
        assert get_one(conn) == 200
        assert time.monotonic() - started >= 1.0
        statuses = [r["status"] for r in api_requests(stub)[-2:]]
        assert statuses == [429, 200]


def test_retry_after_is_capped_by_the_policy(stub):
    policy = snworker.RetryPolicy(backoff_initial=0.05, retry_after_max=0.2)
    with connect(stub, retry=policy) as conn:
        stub.inject(status=429, times=1, path_prefix=INCIDENTS, retry_after=30)
        started = time.monotonic()
        assert get_one(conn) == 200
        assert time.monotonic() - started < 2.0


def test_a_post_meeting_503_is_not_resent(stub):
    with connect(stub, retry=FAST) as conn:
        stub.inject(status=503, times=1, path_prefix=INCIDENTS, method="POST")
        count = len(stub.records("incident"))
        with pytest.raises(snworker.ApiRequestError) as caught:
            conn.execute_api_request(INCIDENTS, "POST", {"short_description": "once"})
        assert caught.value.status == 503
        posts = [r for r in api_requests(stub) if r["method"] == "POST"]
        assert len(posts) == 1
        assert len(stub.records("incident")) == count


def test_a_post_meeting_429_is_resent(stub):
    with connect(stub, retry=FAST) as conn:
        stub.inject(status=429, times=1, path_prefix=INCIDENTS, method="POST", retry_after=0)
        resp = conn.execute_api_request(INCIDENTS, "POST", {"short_description": "twice"})
        assert resp.status == 201


def test_a_dropped_connection_is_retried_for_get_but_not_for_post(stub):
    with connect(stub, retry=FAST) as conn:
        stub.inject(status=None, drop=True, times=1, path_prefix=INCIDENTS)
        assert get_one(conn) == 200
        stub.inject(status=None, drop=True, times=1, path_prefix=INCIDENTS, method="POST")
        with pytest.raises(snworker.ApiRequestError) as caught:
            conn.execute_api_request(INCIDENTS, "POST", {"short_description": "maybe"})
        assert caught.value.status is None


def test_exhausted_retries_raise_with_the_last_status(stub):
    policy = snworker.RetryPolicy(attempts=3, backoff_initial=0.05, backoff_max=0.1)
    with connect(stub, retry=policy) as conn:
        stub.inject(status=502, times=10, path_prefix=INCIDENTS)
        before = len(api_requests(stub))
        with pytest.raises(snworker.ApiRequestError) as caught:
            get_one(conn)
        assert caught.value.status == 502
        assert len(api_requests(stub)) - before == 3


def test_token_endpoint_503_twice_during_a_refresh_still_renews(stub):
    with connect(stub, retry=FAST) as conn:
        stub.expire_access_tokens()
        stub.inject(status=503, times=2, path_prefix="/oauth_token.do")
        assert get_one(conn) == 200
        assert stub.grant_counts["refresh_token"] == 1
        assert [r["status"] for r in token_requests(stub)[1:]] == [503, 503, 200]


def test_a_refresh_that_keeps_failing_keeps_the_tokens_for_the_next_call(stub):
    policy = snworker.RetryPolicy(attempts=2, backoff_initial=0.05, backoff_max=0.1)
    with connect(stub, retry=policy) as conn:
        stub.expire_access_tokens()
        stub.inject(status=503, times=2, path_prefix="/oauth_token.do")
        with pytest.raises(snworker.ApiRequestError) as caught:
            get_one(conn)
        assert not isinstance(caught.value, snworker.AuthTokenExpiredError)
        assert get_one(conn) == 200  # the refresh token was kept: this one renews
        assert stub.grant_counts["refresh_token"] == 1


def test_disconnect_sends_one_revocation(stub):
    conn = connect(stub)
    conn.disconnect()
    conn.disconnect()
    assert stub.revocation_count == 1
    assert get_revoked_refresh_fails(stub)


def get_revoked_refresh_fails(sn: StubServiceNow) -> bool:
    """The refresh token the worker held no longer works at the stub."""
    import requests

    for secret in sn.issued_secrets():
        resp = requests.post(f"{sn.url}/oauth_token.do", data={
            "grant_type": "refresh_token", "refresh_token": secret, "client_id": sn.client_id,
        }, timeout=5)
        if resp.status_code == 200:
            return False
    return True


def test_disconnect_is_bounded_when_the_instance_hangs(stub):
    conn = connect(stub)
    stub.inject(status=None, delay=30, times=1, path_prefix="/oauth_revoke_token.do")
    started = time.monotonic()
    conn.disconnect(timeout=1.0)
    assert time.monotonic() - started < 4.0


def test_disconnect_is_bounded_when_the_instance_is_gone():
    sn = StubServiceNow().start()
    conn = connect(sn)
    sn.stop()
    started = time.monotonic()
    conn.disconnect(timeout=1.0)
    assert time.monotonic() - started < 4.0


def test_a_request_past_its_deadline_times_out_and_the_connection_works_on(stub):
    with connect(stub) as conn:
        stub.inject(status=None, delay=3.0, times=1, path_prefix=INCIDENTS)
        started = time.monotonic()
        with pytest.raises(snworker.RequestTimeoutError) as caught:
            conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}, timeout=0.5)
        assert isinstance(caught.value, TimeoutError)
        assert time.monotonic() - started < 1.5
        record = stub.records("incident")[3]
        resp = conn.execute_api_request(f"{INCIDENTS}/{record['sys_id']}")
        assert resp.data["sys_id"] == record["sys_id"]  # not the late answer of the first call


def test_a_deadline_error_says_whether_the_request_was_sent(stub):
    with connect(stub) as conn:
        stub.inject(status=None, delay=2.0, times=1, path_prefix=INCIDENTS)
        with pytest.raises(snworker.RequestTimeoutError) as caught:
            conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}, timeout=0.5)
        assert "was sent" in str(caught.value) and "did not answer" in str(caught.value)
        time.sleep(1.7)
        assert api_requests(stub)[-1]["path"] == INCIDENTS  # the instance did receive it
        # A 503 whose Retry-After goes past the deadline: answered, not tried again.
        stub.inject(status=503, times=1, path_prefix=INCIDENTS, retry_after=0)
        stub.inject(status=None, delay=1.0, times=1, path_prefix=INCIDENTS)
        with pytest.raises(snworker.RequestTimeoutError) as caught:
            conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}, timeout=0.6)
        assert "was sent" in str(caught.value)


def test_retries_stop_at_the_deadline(stub):
    # The worker does not start a wait that would end past the caller's deadline: it answers
    # with the last status instead, and sends nothing more.
    policy = snworker.RetryPolicy(attempts=10, backoff_initial=0.3, backoff_max=0.3)
    with connect(stub, retry=policy) as conn:
        stub.inject(status=503, times=100, path_prefix=INCIDENTS)
        started = time.monotonic()
        with pytest.raises(snworker.ApiRequestError) as caught:
            get_one_with_timeout(conn, 0.5)
        assert time.monotonic() - started < 0.8
        assert caught.value.status in (503, None)
        seen = len(api_requests(stub))
        time.sleep(0.6)
        assert len(api_requests(stub)) == seen


def test_a_caller_that_gives_up_during_a_slow_refresh_cancels_its_request(stub):
    with connect(stub) as conn:
        stub.expire_access_tokens()
        stub.inject(status=None, delay=2.0, times=1, path_prefix="/oauth_token.do")
        started = time.monotonic()
        with pytest.raises(snworker.RequestTimeoutError):
            get_one_with_timeout(conn, 0.5)
        assert time.monotonic() - started < 1.2
        time.sleep(2.0)  # the refresh finishes; the cancelled request's answer is dropped
        record = stub.records("incident")[5]
        resp = conn.execute_api_request(f"{INCIDENTS}/{record['sys_id']}")
        assert resp.data["sys_id"] == record["sys_id"]
        assert stub.grant_counts["refresh_token"] == 1


def get_one_with_timeout(conn: snworker.ServiceNowConnection, timeout: float) -> int:
    return conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1},
                                    timeout=timeout).status


def test_a_rate_limit_is_ridden_out(stub):
    with connect(stub, retry=FAST) as conn:
        stub.rate_limit(limit=3, window=1, path_prefix=INCIDENTS)
        started = time.monotonic()
        statuses = [get_one(conn) for _ in range(5)]
        assert statuses == [200] * 5
        assert any(r["status"] == 429 for r in api_requests(stub))
        assert time.monotonic() - started < 10
