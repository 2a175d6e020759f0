"""Many caller threads on one connection: every call gets its own answer."""

from __future__ import annotations

import threading

import pytest

THREADS = 16
CALLS = 50


@pytest.mark.timeout(120)
def test_sixteen_threads_by_fifty_requests_get_their_own_answers(conn, stub):
    incidents = sorted(stub.records("incident"), key=lambda r: r["number"])
    errors: list[BaseException] = []
    checked = [0] * THREADS
    barrier = threading.Barrier(THREADS)

    def caller(index: int) -> None:
        try:
            barrier.wait(10)
            for call in range(CALLS):
                record = incidents[(index * CALLS + call) % len(incidents)]
                resp = conn.execute_api_request(
                    f"/api/now/table/incident/{record['sys_id']}",
                    params={"sysparm_fields": "sys_id,number"},
                )
                assert resp.data == {"sys_id": record["sys_id"], "number": record["number"]}
                checked[index] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(100)
    assert not errors, errors[:3]
    assert checked == [CALLS] * THREADS
