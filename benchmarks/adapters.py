"""Section 10: a requests session and an httpx transport over the worker, against the call itself.

A is always `execute_api_request(path).data` on the default framing's connection. Against it,
in the same rotation of blocks, each fetching and parsing the same JSON:

- adapter: `WorkerAdapter.send(prepared).json()`, what `snworker.requests_session` adds to a
  request that requests has prepared (the translation both ways, and the Response);
- session: `session.get(url).json()`, the whole of requests on top (merging the session's
  settings, preparing the URL, headers, cookies and body, hooks, redirects), which the same
  client pays in-process too;
- httpx: `client.get(path).json()` through `snworker.httpx_transport`, all of httpx included.

For the small record, section 4's 1 MB record, and 4 caller threads sharing one session (and
one connection) on the small record: there the figure is wall time per request, B / A. And, for
the first two, the session against a plain requests session with a token of its own
(`session_in_process`): what a requests client sees when it moves to snworker.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import requests

import snworker
from benchmarks.measure import Block, ratio, rotate, summarize, threaded_loop, timed_loop
from benchmarks.sections import Bench, _warm, comparison

THREADS = 4
SIDES = ("adapter", "session", "httpx")


def _operations(bench: Bench, path: str, session: requests.Session,
                client: Any) -> dict[str, Callable[[], object]]:
    """The reference and each side, one GET of `path` each, JSON parsed."""
    conn = bench.connection
    url = conn.instance_url + path
    adapter = session.get_adapter(url)
    prepared = session.prepare_request(requests.Request("GET", url))

    def reference() -> object:
        return conn.execute_api_request(path).data

    def through_adapter() -> object:
        return adapter.send(prepared).json()["result"]

    def through_session() -> object:
        return session.get(url).json()["result"]

    operations: dict[str, Callable[[], object]] = {
        "reference": reference, "adapter": through_adapter, "session": through_session,
    }
    if client is not None:
        operations["httpx"] = lambda: client.get(path).json()["result"]
    return operations


def _compare(blocks: dict[str, list[Block]], figure: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for side in SIDES:
        if side not in blocks:
            continue
        figures = comparison(blocks["reference"], blocks[side])
        # The parent's CPU per request, which the machine's load disturbs less than latency.
        figures["cpu_ratio"] = ratio(figures["snworker"]["cpu_us_per_op"],
                                     figures["reference"]["cpu_us_per_op"])
        if figure == "per_request_ratio":
            a, b = summarize(blocks["reference"]), summarize(blocks[side])
            figures["per_request_ratio"] = ratio(a.ops_per_s, b.ops_per_s)
        result[side] = figures
    return result


def _against_in_process(bench: Bench, path: str, session: requests.Session, count: int,
                        warm: int) -> dict[str, Any]:
    """The session through the worker against a plain requests session holding a token.

    What a requests client (pysnc with its own credentials) sees when it moves to snworker:
    requests' own work is on both sides.
    """
    plain = bench.new_session()
    url_b = bench.connection.instance_url + path
    url_a = bench.stub.url + path
    operations = {
        "reference": lambda: plain.get(url_a, timeout=30).json()["result"],
        "snworker": lambda: session.get(url_b, timeout=30).json()["result"],
    }
    try:
        for operation in operations.values():
            _warm(operation, warm)
        blocks = rotate(bench.scale.blocks, [partial(timed_loop, operation, count)
                                             for operation in operations.values()])
    finally:
        plain.close()
    figures = comparison(*blocks)
    figures["cpu_ratio"] = ratio(figures["snworker"]["cpu_us_per_op"],
                                 figures["reference"]["cpu_us_per_op"])
    return figures


def adapters(bench: Bench) -> dict[str, Any]:
    """The adapters' cost over `execute_api_request`: small GET, 1 MB, 4 threads."""
    session = snworker.requests_session(bench.connection)
    try:
        import httpx

        client: Any = httpx.Client(base_url=bench.connection.instance_url,
                                   transport=snworker.httpx_transport(bench.connection))
    except ImportError:  # the httpx extra is not installed: its rows are left out
        client = None
    result: dict[str, Any] = {"threads": THREADS}
    try:
        paths = {"small_get": bench.record_path, "1MB": bench.payload_paths["1MB"]}
        counts = {"small_get": bench.scale.get_per_block,
                  "1MB": bench.scale.size_per_block["1MB"]}
        for label, path in paths.items():
            operations = _operations(bench, path, session, client)
            warm = 2 if label == "1MB" else bench.scale.warmup
            for operation in operations.values():
                _warm(operation, warm)
            names = list(operations)
            measured = rotate(bench.scale.blocks,
                              [partial(timed_loop, operations[name], counts[label])
                               for name in names])
            result[label] = _compare(dict(zip(names, measured, strict=True)), "latency_ratio")
            result[label]["body_bytes"] = len(
                bench.connection.execute_api_request(path).content)
            result[label]["session_in_process"] = _against_in_process(bench, path, session,
                                                                     counts[label], warm)
        operations = _operations(bench, bench.record_path, session, None)
        per_thread = bench.scale.thread_requests_per_block // THREADS
        names = list(operations)
        measured = rotate(bench.scale.blocks,
                          [partial(threaded_loop, [operations[name]] * THREADS, per_thread)
                           for name in names])
        result["threads_4"] = _compare(dict(zip(names, measured, strict=True)),
                                       "per_request_ratio")
    finally:
        session.close()
        if client is not None:
            client.close()
    return result
