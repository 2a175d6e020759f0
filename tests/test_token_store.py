"""The worker's token store and retry helpers, driven directly with a refresher function."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from snworker.worker.failures import ApiFailure, TokenExpired
from snworker.worker.tokens import TokenGrant, TokenStore
from snworker.worker.transport import retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def grant(access: str, refresh: str | None, expires_at: float) -> TokenGrant:
    return TokenGrant(access, refresh, expires_at)


def test_expiry_is_absolute_and_answers_with_a_leeway():
    g = TokenGrant.from_response({"access_token": "a", "expires_in": 1799}, now=100.0)
    assert g.expires_at == 1899.0
    assert not g.is_expired(60, now=1838.9)
    assert g.is_expired(60, now=1839.0)


def test_single_flight_refresh_from_many_threads():
    clock = Clock()
    calls: list[str] = []
    release = threading.Event()

    def refresher(refresh_token: str) -> TokenGrant:
        calls.append(refresh_token)
        release.wait(5)
        return grant("a2", None, clock.now + 1800)

    store = TokenStore(refresher, 60, clock)
    store.install(grant("a1", "r1", clock.now + 30))  # inside the margin already
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(store.access_token()))
               for _ in range(20)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    release.set()
    for t in threads:
        t.join(5)
    assert calls == ["r1"]
    assert results == ["a2"] * 20
    assert store.refresh_token == "r1"  # no rotation in the answer: the old one is kept


def test_a_rotated_refresh_token_replaces_the_old_one():
    clock = Clock()
    store = TokenStore(lambda rt: grant("a2", "r2", clock.now + 1800), 60, clock)
    store.install(grant("a1", "r1", clock.now + 1800))
    assert store.renew_after_unauthorized("a1") == "a2"
    assert store.refresh_token == "r2"


def test_a_401_for_an_already_replaced_token_does_not_refresh_again():
    clock = Clock()
    calls: list[str] = []

    def refresher(rt: str) -> TokenGrant:
        calls.append(rt)
        return grant(f"a{len(calls) + 1}", "r1", clock.now + 1800)

    store = TokenStore(refresher, 60, clock)
    store.install(grant("a1", "r1", clock.now + 1800))
    assert store.renew_after_unauthorized("a1") == "a2"
    assert store.renew_after_unauthorized("a1") == "a2"
    assert calls == ["r1"]


def test_a_refused_refresh_wipes_the_tokens_for_everyone():
    clock = Clock()

    def refresher(rt: str) -> TokenGrant:
        raise TokenExpired("refused")

    store = TokenStore(refresher, 60, clock)
    store.install(grant("a1", "r1", clock.now + 10))
    with pytest.raises(TokenExpired):
        store.access_token()
    assert store.refresh_token is None
    assert store.last_refresh_token == "r1"  # still revoked at disconnect
    with pytest.raises(TokenExpired):
        store.access_token()


def test_a_transient_refresh_failure_keeps_the_tokens():
    clock = Clock()
    outcomes = iter([ApiFailure("503", 503), grant("a2", "r1", clock.now + 1800)])

    def refresher(rt: str) -> TokenGrant:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    store = TokenStore(refresher, 60, clock)
    store.install(grant("a1", "r1", clock.now + 10))
    with pytest.raises(ApiFailure):
        store.access_token()
    assert store.refresh_token == "r1"
    assert store.access_token() == "a2"


def test_expire_wipes_the_grant_and_keeps_the_last_refresh_token_to_revoke():
    clock = Clock()
    store = TokenStore(lambda rt: grant("a2", "r2", clock.now + 1800), 60, clock)
    store.install(grant("a1", "r1", clock.now + 1800))
    store.renew_after_unauthorized("a1")
    store.expire("the connection is closed")
    assert store.refresh_token is None
    assert store.last_refresh_token == "r2"
    with pytest.raises(TokenExpired, match="closed"):
        store.access_token()


def test_the_refresh_margin_is_capped_by_the_token_lifespan():
    clock = Clock()
    calls: list[str] = []

    def refresher(rt: str) -> TokenGrant:
        calls.append(rt)
        return TokenGrant(f"a{len(calls) + 1}", rt, clock.now + 30, 30)

    store = TokenStore(refresher, 60, clock)
    store.install(TokenGrant("a1", "r1", clock.now + 30, 30))
    for _ in range(20):  # a 30 s token with a 60 s margin: not renewed before every call
        store.access_token()
        clock.now += 1
    assert calls == []  # 20 s used of 30: more than a quarter left
    clock.now += 3  # 7 s left, under a quarter of the lifespan
    assert store.access_token() == "a2"
    assert calls == ["r1"]


def test_tokens_stay_out_of_reprs():
    assert "SECRET" not in repr(TokenGrant("SECRET", "SECRET", 1.0))


def test_retry_after_in_seconds_and_as_an_http_date():
    assert retry_after("3") == 3.0
    assert retry_after(None) is None
    assert retry_after("soon") is None
    when = datetime.now(UTC) + timedelta(seconds=10)
    assert 8.0 <= (retry_after(format_datetime(when, usegmt=True)) or 0) <= 10.0
    past = datetime.now(UTC) - timedelta(seconds=10)
    assert retry_after(format_datetime(past, usegmt=True)) == 0.0
