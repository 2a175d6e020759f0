"""Section 11: asyncio (`snworker.aio`), against httpx's AsyncClient in this process.

Against a stub of its own in a child process, with handler threads for every request at once:

- concurrency: 200 requests at once, each answered after 50 ms (an injected delay). The ideal
  is all 200 in 50 ms (4,000 requests/s); each side's share of it, and snworker's rate against
  `httpx.AsyncClient` (200 connections allowed) holding a token in this process;
- cancellation: a task awaiting a request the stub holds for 10 s is cancelled; the time from
  `task.cancel()` to the stub seeing the connection closed (the stub's own clock, the same wall
  clock), which is when the worker's thread is free again: its read fails on the socket the
  Cancel shut down. httpx cancelling its own request is the reference;
- per-request overhead: sequential small GETs through `snworker.aio` against the same through
  the sync `execute_api_request`, each with a worker of its own.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import httpx

import snworker
import snworker.aio
from benchmarks import baseline
from benchmarks.measure import Block, ratio, timed_loop
from benchmarks.sections import IO_VARIABLE, Bench, comparison
from snworker.testing import StubServiceNow, approve
from snworker.testing.app import CLIENT_CLOSED
from snworker.testing.remote import RemoteStub

CONCURRENT = 200
DELAY = 0.05
IDEAL_PER_S = CONCURRENT / DELAY
HELD = 10.0  # how long the stub holds a request that is then cancelled
PATH = "/api/now/table/incident"
SMALL_PATH = "/api/now/table/incident?sysparm_limit=1"
FRAMING = "conn" if os.name == "nt" else "fd"


def aio(bench: Bench) -> dict[str, Any]:
    """The section's figures."""
    stub = StubServiceNow.start_process(threads=CONCURRENT + 40)
    try:
        return asyncio.run(_measure(bench, stub))
    finally:
        stub.close()


async def _measure(bench: Bench, stub: RemoteStub) -> dict[str, Any]:
    scale = bench.scale
    token = await asyncio.to_thread(baseline.authorize, stub.url, stub.client_id,
                                    stub.redirect_uri)
    client = httpx.AsyncClient(
        base_url=stub.url, timeout=30.0,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        limits=httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=CONCURRENT))
    del token
    saved = os.environ.get(IO_VARIABLE)
    os.environ[IO_VARIABLE] = FRAMING
    try:
        aconn = await snworker.aio.connect(stub.url, stub.client_id,
                                           redirect_uri=stub.redirect_uri, open_browser=approve)
        conn = await asyncio.to_thread(snworker.connect, stub.url, stub.client_id,
                                       redirect_uri=stub.redirect_uri, open_browser=approve)
    finally:
        if saved is None:
            os.environ.pop(IO_VARIABLE, None)
        else:
            os.environ[IO_VARIABLE] = saved
    try:
        return {
            "framing": FRAMING,
            "concurrent": await _concurrency(stub, client, aconn, scale.blocks),
            "cancel": await _cancellation(stub, client, aconn, max(3, scale.blocks)),
            "overhead": await _overhead(aconn, conn, scale.blocks, scale.get_per_block),
        }
    finally:
        await client.aclose()
        await aconn.disconnect()
        await asyncio.to_thread(conn.disconnect)


# --- 200 at once ------------------------------------------------------------------------


async def _burst(stub: RemoteStub, send: Callable[[int], Awaitable[int]]) -> float:
    """Seconds for CONCURRENT requests at once, each held DELAY s by the stub."""
    await asyncio.to_thread(stub.inject, status=None, delay=DELAY, times=CONCURRENT,
                            path_prefix=PATH)
    started = time.perf_counter()
    statuses = await asyncio.gather(*[send(n) for n in range(CONCURRENT)])
    elapsed = time.perf_counter() - started
    if statuses != [200] * CONCURRENT:
        raise RuntimeError(f"a burst request failed: {sorted(set(statuses))}")
    return elapsed


async def _concurrency(stub: RemoteStub, client: httpx.AsyncClient,
                       aconn: snworker.aio.AsyncServiceNowConnection,
                       blocks: int) -> dict[str, Any]:
    async def by_httpx(n: int) -> int:
        response = await client.get(PATH, params={"sysparm_limit": 1, "sysparm_offset": n})
        return response.status_code

    async def by_snworker(n: int) -> int:
        response = await aconn.execute_api_request(
            PATH, params={"sysparm_limit": 1, "sysparm_offset": n})
        return response.status

    for send in (by_httpx, by_snworker):  # warm: connections open, threads started
        await _burst(stub, send)
    times: dict[str, list[float]] = {"reference": [], "snworker": []}
    for index in range(blocks):
        order = [("reference", by_httpx), ("snworker", by_snworker)]
        for name, send in order if index % 2 == 0 else reversed(order):
            times[name].append(await _burst(stub, send))
    rates = {name: CONCURRENT / statistics.median(values) for name, values in times.items()}
    return {
        "requests": CONCURRENT,
        "delay_ms": DELAY * 1000,
        "ideal_per_s": IDEAL_PER_S,
        "reference_per_s": round(rates["reference"], 1),
        "snworker_per_s": round(rates["snworker"], 1),
        "reference_share_of_ideal": round(rates["reference"] / IDEAL_PER_S, 3),
        "snworker_share_of_ideal": round(rates["snworker"] / IDEAL_PER_S, 3),
        "throughput_ratio": ratio(rates["snworker"], rates["reference"]),
        "burst_ms": {name: [round(t * 1000, 1) for t in values]
                     for name, values in times.items()},
    }


# --- cancel ------------------------------------------------------------------------------


async def _closed_after(stub: RemoteStub, seen: int, cancelled_at: float) -> float | None:
    """Seconds from `cancelled_at` (wall clock) to the stub logging the client gone."""
    for _ in range(400):
        closed = [r for r in await asyncio.to_thread(lambda: stub.requests)
                  if r["status"] == CLIENT_CLOSED]
        if len(closed) > seen:
            return float(closed[-1]["time"]) - cancelled_at
        await asyncio.sleep(0.01)
    return None


async def _cancel_once(stub: RemoteStub, request: Callable[[], Awaitable[Any]]) -> float | None:
    seen = sum(r["status"] == CLIENT_CLOSED for r in await asyncio.to_thread(
        lambda: stub.requests))
    await asyncio.to_thread(stub.inject, status=None, delay=HELD, times=1, path_prefix=PATH)
    task = asyncio.ensure_future(request())
    for _ in range(1000):  # until the request is at the stub, held there
        if not await asyncio.to_thread(lambda: stub.pending_faults):
            break
        await asyncio.sleep(0.005)
    cancelled_at = time.time()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    return await _closed_after(stub, seen, cancelled_at)


async def _cancellation(stub: RemoteStub, client: httpx.AsyncClient,
                        aconn: snworker.aio.AsyncServiceNowConnection,
                        samples: int) -> dict[str, Any]:
    found: dict[str, list[float | None]] = {"reference": [], "snworker": []}
    for _ in range(samples):
        found["reference"].append(await _cancel_once(stub, partial(client.get, PATH)))
        found["snworker"].append(await _cancel_once(
            stub, partial(aconn.execute_api_request, PATH, timeout=30)))
    figures: dict[str, Any] = {"held_s": HELD, "samples": samples}
    for name, values in found.items():
        seen = [v for v in values if v is not None]
        figures[f"{name}_ms"] = round(statistics.median(seen) * 1000, 2) if seen else None
        figures[f"{name}_max_ms"] = round(max(seen) * 1000, 2) if seen else None
        figures[f"{name}_not_seen"] = len(values) - len(seen)
    return figures


# --- per request ----------------------------------------------------------------------


async def _async_loop(operation: Callable[[], Awaitable[object]], count: int) -> Block:
    latencies = [0] * count
    clock = time.perf_counter_ns
    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    for index in range(count):
        started = clock()
        await operation()
        latencies[index] = clock() - started
    return Block(latencies, time.process_time() - cpu_start, time.perf_counter() - wall_start,
                 count)


async def _overhead(aconn: snworker.aio.AsyncServiceNowConnection,
                    conn: snworker.ServiceNowConnection, blocks: int,
                    count: int) -> dict[str, Any]:
    """Sync blocks run on the loop's thread: nothing else runs on the loop meanwhile."""
    sync_get = partial(conn.execute_api_request, SMALL_PATH)
    async_get = partial(aconn.execute_api_request, SMALL_PATH)
    for _ in range(20):
        sync_get()
        await async_get()
    sync_blocks: list[Block] = []
    async_blocks: list[Block] = []
    for index in range(blocks):
        order = ["sync", "async"] if index % 2 == 0 else ["async", "sync"]
        for side in order:
            if side == "sync":
                sync_blocks.append(timed_loop(sync_get, count))
            else:
                async_blocks.append(await _async_loop(async_get, count))
    figures = comparison(sync_blocks, async_blocks)
    figures["reference_label"] = "sync execute_api_request"
    figures["snworker_label"] = "await snworker.aio execute_api_request"
    return figures


def main() -> None:
    """`python -m benchmarks.aio [--quick]`: this section alone, its figures as JSON."""
    import json
    import sys

    from benchmarks import sections

    scale = sections.QUICK if "--quick" in sys.argv[1:] else sections.FULL
    alone = Bench(stub=None, connections={}, new_session=None, scale=scale,  # type: ignore[arg-type]
                  record_path="")
    print(json.dumps(aio(alone), indent=2))


if __name__ == "__main__":
    main()
