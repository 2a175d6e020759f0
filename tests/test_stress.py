"""Bounded stress: faults under many threads, and many connect/disconnect cycles."""

from __future__ import annotations

import random
import sys
import threading
import time

import psutil
import pytest

import snworker
from tests.conftest import connect
from tests.processes import descendants, process_gone

pytestmark = pytest.mark.slow

THREADS = 32
CALLS = 40


@pytest.mark.timeout(120)
def test_faults_and_expiry_under_load_never_lose_or_swap_an_answer(stub):
    policy = snworker.RetryPolicy(backoff_initial=0.02, backoff_max=0.1)
    incidents = stub.records("incident")
    # Tokens live 2 s, so they expire again and again under the load. (Expiring them at the
    # stub at random moments instead would sometimes refuse a token a moment after it was
    # issued, which no instance does, and which rightly ends the connection.)
    stub.set_lifespans(access=2)
    with connect(stub, retry=policy) as conn:
        outcomes: list[str] = []
        wrong: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def chaos() -> None:
            rng = random.Random(7)
            while not stop.wait(0.05):
                match rng.randrange(5):
                    case 0:
                        stub.inject(status=503, times=3, path_prefix="/api/now/table/incident")
                    case 1:
                        stub.inject(status=None, drop=True, times=1,
                                    path_prefix="/api/now/table/incident")
                    case 2:
                        stub.inject(status=None, delay=0.3, times=2,
                                    path_prefix="/api/now/table/incident")
                    case 3:
                        stub.inject(status=502, times=1, path_prefix="/oauth_token.do")
                    case _:
                        stub.inject(status=429, times=1, retry_after=0,
                                    path_prefix="/api/now/table/incident")

        def caller(index: int) -> None:
            rng = random.Random(index)
            for call in range(CALLS):
                record = incidents[(index + call) % len(incidents)]
                timeout = 0.15 if rng.random() < 0.1 else 10.0
                try:
                    resp = conn.execute_api_request(
                        f"/api/now/table/incident/{record['sys_id']}",
                        params={"sysparm_fields": "sys_id"}, timeout=timeout)
                    kind = "ok" if resp.data == {"sys_id": record["sys_id"]} else "wrong"
                except snworker.RequestTimeoutError:
                    kind = "timeout"
                except snworker.ApiRequestError as exc:
                    kind = f"error {exc.status}"
                with lock:
                    outcomes.append(kind)
                    if kind == "wrong":
                        wrong.append(record["sys_id"])

        chaos_thread = threading.Thread(target=chaos)
        chaos_thread.start()
        threads = [threading.Thread(target=caller, args=(i,)) for i in range(THREADS)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(100)
        stop.set()
        chaos_thread.join(5)
        assert not any(t.is_alive() for t in threads), "a caller hung"
        assert wrong == []
        assert len(outcomes) == THREADS * CALLS
        assert outcomes.count("ok") >= THREADS * CALLS * 0.8, _tally(outcomes)
        assert stub.grant_counts["refresh_token"] >= 1
        assert time.monotonic() - started < 100
        # Whatever happened, the connection still serves, once the faults still queued at the
        # stub have been used up.
        for _ in range(10):
            try:
                resp = conn.execute_api_request("/api/now/table/incident",
                                                params={"sysparm_limit": 1}, timeout=10)
                break
            except snworker.ApiRequestError:
                continue
        assert resp.status == 200


def _tally(outcomes: list[str]) -> dict[str, int]:
    return {k: outcomes.count(k) for k in set(outcomes)}


@pytest.mark.timeout(120)
def test_connect_disconnect_cycles_leave_nothing_behind(stub):
    with connect(stub) as warm:  # the first spawn starts helpers that live on
        warm.execute_api_request("/api/now/table/incident", params={"sysparm_limit": 1})
    time.sleep(0.2)
    me = psutil.Process()
    fds = me.num_fds() if sys.platform != "win32" else me.num_handles()
    threads = threading.active_count()
    children = {p.pid for p in descendants()}
    workers = []
    for _ in range(25):
        with connect(stub) as conn:
            workers.append(conn.worker_pid)
            conn.execute_api_request("/api/now/table/incident", params={"sysparm_limit": 1})
    assert all(process_gone(pid, 2.0) for pid in workers)
    time.sleep(0.2)
    assert stub.revocation_count == 26
    assert (me.num_fds() if sys.platform != "win32" else me.num_handles()) <= fds + 2
    assert threading.active_count() <= threads + 1
    assert {p.pid for p in descendants()} <= children
