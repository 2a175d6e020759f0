"""Section 8: a request through an agent against one through a worker of the connection's own.

A is always a spawned worker (the default framing), B an agent that the same stub authorized:

- small GET, one client: latency, interleaved blocks;
- 4 and 16 caller threads in one client process: throughput;
- 4 client processes x 4 threads: the total throughput of four processes that each start a
  worker of their own (A) against four processes attached to one agent (B). Each round starts the
  processes afresh; they connect, report ready, and only then run, all at once.

On Windows the agent speaks over a named pipe, here over a Unix socket; the rest is the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from functools import partial
from typing import Any

import snworker
from benchmarks.measure import Block, alternate, ratio, summarize, threaded_loop, timed_loop
from benchmarks.sections import Bench, _warm, comparison
from snworker import agent as agents
from snworker.testing import approve

CLIENTS = 4
THREADS_PER_CLIENT = 4
CLIENT_TIMEOUT = 120.0

CLIENT = textwrap.dedent("""
    import json, sys, threading, time
    import snworker
    from snworker.testing import approve
    mode, url, client_id, redirect, path, threads, count = sys.argv[1:8]
    threads, count = int(threads), int(count)
    if mode == "agent":
        conn = snworker.attach()
    else:
        conn = snworker.connect(url, client_id, redirect_uri=redirect, open_browser=approve)
    for _ in range(5):
        conn.execute_api_request(path)
    print("ready", flush=True)
    sys.stdin.readline()
    barrier = threading.Barrier(threads + 1)

    def work():
        barrier.wait()
        for _ in range(count):
            conn.execute_api_request(path).data

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    print(json.dumps({"requests": threads * count, "seconds": time.perf_counter() - started}),
          flush=True)
    conn.disconnect()
""")


def agent(bench: Bench) -> dict[str, Any]:
    """An agent's cost against a spawned worker's, from one client and from several."""
    stub = bench.stub
    directory = tempfile.mkdtemp(prefix="snworker-bench-")
    info, channel = agents.start(stub.url, stub.client_id, redirect_uri=stub.redirect_uri,
                                 open_browser=approve, idle=600,
                                 address=os.path.join(directory, "agent", "agent.sock"))
    channel.release()
    attached = snworker.attach(info.address)
    try:
        result = _one_client(bench, attached)
        result["clients"] = _many_clients(bench, info.address)
    finally:
        attached.disconnect()
        try:
            agents.control(info.address, "stop")
        except snworker.ServiceNowError:
            pass
        agents.wait_gone(info.pid, 10)
    result["grants"] = dict(stub.grant_counts)
    return result


def _one_client(bench: Bench, attached: snworker.ServiceNowConnection) -> dict[str, Any]:
    spawned = partial(bench.snworker_get, bench.record_path)

    def through_agent() -> Any:
        return attached.execute_api_request(bench.record_path).data

    _warm(spawned, bench.scale.warmup)
    _warm(through_agent, bench.scale.warmup)
    blocks_a, blocks_b = alternate(bench.scale.blocks,
                                   partial(timed_loop, spawned, bench.scale.get_per_block),
                                   partial(timed_loop, through_agent, bench.scale.get_per_block))
    result: dict[str, Any] = {"small_get": comparison(blocks_a, blocks_b)}
    for threads in (4, 16):
        per_thread = bench.scale.thread_requests_per_block // threads
        blocks_a, blocks_b = alternate(
            bench.scale.blocks,
            partial(threaded_loop, [spawned] * threads, per_thread),
            partial(threaded_loop, [through_agent] * threads, per_thread))
        figures = comparison(blocks_a, blocks_b)
        figures["throughput_ratio"] = ratio(figures["snworker"]["ops_per_s"],
                                            figures["reference"]["ops_per_s"])
        result[f"threads_{threads}"] = figures
    return result


def _many_clients(bench: Bench, address: str) -> dict[str, Any]:
    per_thread = max(1, bench.scale.thread_requests_per_block // THREADS_PER_CLIENT)
    rounds = max(2, bench.scale.blocks // 2)
    blocks_a, blocks_b = alternate(
        rounds, partial(_client_round, bench, "worker", address, per_thread),
        partial(_client_round, bench, "agent", address, per_thread))
    a, b = summarize(blocks_a), summarize(blocks_b)
    return {
        "processes": CLIENTS, "threads_per_process": THREADS_PER_CLIENT,
        "reference_ops_per_s": round(a.ops_per_s, 1),
        "agent_ops_per_s": round(b.ops_per_s, 1),
        "throughput_ratio": ratio(b.ops_per_s, a.ops_per_s),
    }


def _client_round(bench: Bench, mode: str, address: str, per_thread: int) -> Block:
    """Start CLIENTS processes, let them connect, run them at once; their total throughput."""
    stub = bench.stub
    env = dict(os.environ, SNWORKER_AGENT=address)
    command = [sys.executable, "-c", CLIENT, mode, stub.url, stub.client_id, stub.redirect_uri,
               bench.record_path, str(THREADS_PER_CLIENT), str(per_thread)]
    clients = [subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True) for _ in range(CLIENTS)]
    try:
        for client in clients:
            assert client.stdout is not None
            if client.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a {mode} client did not get ready")
        for client in clients:
            assert client.stdin is not None
            client.stdin.write("go\n")
            client.stdin.flush()
        reports = []
        deadline = time.monotonic() + CLIENT_TIMEOUT
        for client in clients:
            assert client.stdout is not None
            reports.append(json.loads(client.stdout.readline()))
            client.wait(max(1.0, deadline - time.monotonic()))
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait(5)
    requests = sum(r["requests"] for r in reports)
    seconds = max(r["seconds"] for r in reports)
    return Block(operations=requests, wall_s=seconds, cpu_s=0.0, latencies_ns=[int(seconds * 1e9)])
