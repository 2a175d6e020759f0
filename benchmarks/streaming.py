"""Sections 12 and 13: bodies in pieces, and many threads against a distant instance.

12. streaming: one body of STREAM_MB (200 MB in a full run) downloaded and uploaded, A with
    in-process `requests` streaming (`stream=True` and `iter_content`, an iterator as `data`),
    B through snworker (`stream_api_request` and `iter_bytes`, an iterator as `data`); both
    sides read in pieces of the worker's size and upload the same pieces (chunked). Throughput
    in MB/s, and the growth of resident memory over the transfer: this process on both sides,
    and the worker that holds the tokens on B's. The attachment each upload creates is
    deleted at once, out of the timing.
13. WAN-shaped: WAN_THREADS threads against a stub that answers each request after WAN_DELAY
    seconds, as a distant instance would; A one `requests.Session` per thread, B one snworker
    connection shared by the threads. Throughput, also as a share of the ideal rate (threads
    / delay).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from typing import Any

from benchmarks.measure import Block, alternate, ratio, summarize, threaded_loop, timed_loop
from benchmarks.sections import Bench

ATTACH = "/api/now/attachment/file"
PIECE = 1 << 18  # the worker's piece (snworker.worker.main.STREAM_PIECE)
WAN_DELAY = 0.05
WAN_THREADS = 32
MB = 1 << 20


class _Peak:
    """Samples the resident memory of processes every few ms; the growth of each."""

    def __init__(self, pids: dict[str, int]) -> None:
        try:
            import psutil
        except ImportError:  # the figure is then unknown, not made up
            self._processes: dict[str, Any] = {}
        else:
            self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._base = {name: p.memory_info().rss for name, p in self._processes.items()}
        self._peak = dict(self._base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            for name, process in self._processes.items():
                try:
                    self._peak[name] = max(self._peak[name], process.memory_info().rss)
                except Exception:  # a process that ended: keep what was seen
                    pass

    def growth_mib(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(5)
        return {name: round((self._peak[name] - self._base[name]) / MB, 1)
                for name in self._base}


def _pieces(size: int) -> Iterator[bytes]:
    block = bytes(range(256)) * (PIECE // 256)
    sent = 0
    while sent < size:
        take = min(PIECE, size - sent)
        sent += take
        yield block[:take]


def streaming(bench: Bench) -> dict[str, Any]:
    """A body of `scale.stream_mb` MB down and up: in-process requests against snworker."""
    import os

    size = bench.scale.stream_mb * MB
    connection = bench.connection
    incident = bench.stub.records("incident")[0]["sys_id"]
    params = {"table_name": "incident", "table_sys_id": incident, "file_name": "stream.bin"}
    headers = {"Content-Type": "application/octet-stream"}
    record = connection.execute_api_request(ATTACH, "POST", _pieces(size), headers=headers,
                                            params=params).data
    download_path = f"/api/now/attachment/{record['sys_id']}/file"
    session = bench.new_session()
    worker = connection.worker_pid
    peaks: dict[str, list[dict[str, float]]] = {"down_A": [], "down_B": [], "up_A": [],
                                                 "up_B": []}

    def measured(key: str, pids: dict[str, int], operation: Any) -> Block:
        peak = _Peak(pids)
        block = timed_loop(operation, 1)
        peaks[key].append(peak.growth_mib())
        return block

    def down_a() -> None:
        got = 0
        with session.get(bench.stub.url + download_path, stream=True, timeout=60) as resp:
            resp.raise_for_status()
            for chunk in resp.iter_content(chunk_size=PIECE):
                got += len(chunk)
        assert got == size

    def down_b() -> None:
        got = 0
        with connection.stream_api_request(download_path, timeout=60) as resp:
            for chunk in resp.iter_bytes():
                got += len(chunk)
        assert got == size

    def up_a() -> str:
        resp = session.post(bench.stub.url + ATTACH, data=_pieces(size), params=params,
                            headers=headers, timeout=60)
        resp.raise_for_status()
        return str(resp.json()["result"]["sys_id"])

    def up_b() -> str:
        return str(connection.execute_api_request(ATTACH, "POST", _pieces(size),
                                                  headers=headers, params=params,
                                                  timeout=60).data["sys_id"])

    def uploaded(operation: Any) -> None:
        sys_id = operation()
        connection.execute_api_request(f"/api/now/attachment/{sys_id}", "DELETE")

    here = {"parent": os.getpid()}
    both = {**here, **({"worker": worker} if worker else {})}
    try:
        down_a()
        down_b()
        blocks = bench.scale.stream_blocks
        down = alternate(blocks, partial(measured, "down_A", here, down_a),
                         partial(measured, "down_B", both, down_b))
        up = alternate(blocks, partial(measured, "up_A", here, partial(uploaded, up_a)),
                       partial(measured, "up_B", both, partial(uploaded, up_b)))
    finally:
        session.close()
        connection.execute_api_request(f"/api/now/attachment/{record['sys_id']}", "DELETE")
    result: dict[str, Any] = {"body_bytes": size, "piece_bytes": PIECE}
    for name, (blocks_a, blocks_b) in (("down", down), ("up", up)):
        a, b = summarize(blocks_a), summarize(blocks_b)
        result[name] = {
            "reference": {**a.as_json(), "mb_per_s": round(size / MB / (a.median_us / 1e6), 1)},
            "snworker": {**b.as_json(), "mb_per_s": round(size / MB / (b.median_us / 1e6), 1)},
            "throughput_ratio": ratio(a.median_us, b.median_us),
            "peak_growth_mib": {
                "reference_parent": max(p.get("parent", 0.0) for p in peaks[f"{name}_A"]),
                "snworker_parent": max(p.get("parent", 0.0) for p in peaks[f"{name}_B"]),
                "snworker_worker": max(p.get("worker", 0.0) for p in peaks[f"{name}_B"]),
            },
        }
    return result


def wan(bench: Bench) -> dict[str, Any]:
    """WAN_THREADS threads against answers that take WAN_DELAY s: in-process against snworker."""
    from benchmarks import baseline

    record = bench.stub.insert("incident", {"short_description": "far away"})
    path = f"/api/now/table/incident/{record['sys_id']}"
    per_thread = bench.scale.wan_per_thread
    blocks = bench.scale.wan_blocks
    # Every request of every block is delayed, the two warm-up rounds too.
    total = 2 * blocks * per_thread * WAN_THREADS + 2 * WAN_THREADS
    bench.stub.inject(status=None, delay=WAN_DELAY, times=total, path_prefix=path)
    sessions = [bench.new_session() for _ in range(WAN_THREADS)]
    try:
        reference = [partial(baseline.get_result, s, bench.stub.url + path) for s in sessions]
        ours = [partial(bench.snworker_get, path)] * WAN_THREADS
        threaded_loop(reference, 1)
        threaded_loop(ours, 1)
        blocks_a, blocks_b = alternate(blocks,
                                       partial(threaded_loop, reference, per_thread),
                                       partial(threaded_loop, ours, per_thread))
    finally:
        for session in sessions:
            session.close()
        bench.stub.clear_faults(path)
    a, b = summarize(blocks_a), summarize(blocks_b)
    fastest = min(value for block in (*blocks_a, *blocks_b) for value in block.latencies_ns)
    if fastest < WAN_DELAY * 1e9:
        raise RuntimeError("a request of section 13 was answered without the stub's delay")
    ideal = WAN_THREADS / WAN_DELAY
    return {
        "threads": WAN_THREADS,
        "delay_s": WAN_DELAY,
        "ideal_ops_per_s": ideal,
        "reference": a.as_json(),
        "snworker": b.as_json(),
        "reference_of_ideal": round(a.ops_per_s / ideal, 3),
        "snworker_of_ideal": round(b.ops_per_s / ideal, 3),
        "throughput_ratio": ratio(b.ops_per_s, a.ops_per_s),
    }
