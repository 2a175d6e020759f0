"""Section 5: start-up to ready, and what the worker's processes hold in memory.

connect() to ready (the worker started, hardened, forked where the OS does it, authorized
through the browser stand-in, its first answer back) against a bare spawn that imports
requests, in alternating blocks. Resident memory is read from /proc/<pid>/status, which stays
readable for a non-dumpable process; where there is no /proc it is reported as unknown.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import multiprocess

from benchmarks import children
from benchmarks.measure import Block, alternate
from benchmarks.sections import CHILD_TIMEOUT, DEFAULT_FRAMING, Bench, comparison, connect
from snworker.testing.remote import RemoteStub


def _status_field(pid: int, name: str) -> int | None:
    """An integer field of /proc/<pid>/status (world-readable, even for a non-dumpable
    process); None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        return None
    raise RuntimeError(f"no {name} for process {pid}")


def _resident_kib(pid: int) -> int | None:
    return _status_field(pid, "VmRSS")


def _supervisor_of(worker_pid: int) -> int | None:
    """The worker's supervisor: its parent when that is not this process (Linux forks once)."""
    parent = _status_field(worker_pid, "PPid")
    return None if parent is None or parent == os.getpid() else parent


def _mib(kib: list[int | None]) -> float | None:
    known = [value for value in kib if value is not None]
    return round(statistics.median(known) / 1024, 1) if known else None


def _bare_spawn() -> tuple[float, int | None, int | None]:
    """Seconds from start() to the child's byte, its RSS (KiB) then, and no supervisor."""
    context = multiprocess.get_context("spawn")
    ours, theirs = context.Pipe(duplex=True)
    child = context.Process(
        target=children.ready_after_import, args=(theirs,), name="bench-bare", daemon=True
    )
    started = time.perf_counter()
    child.start()
    theirs.close()
    try:
        if not ours.poll(CHILD_TIMEOUT):
            raise TimeoutError("the bare child did not report ready")
        ours.recv_bytes()
        elapsed = time.perf_counter() - started
        rss = _resident_kib(child.pid)
        ours.send_bytes(b"x")
    finally:
        child.join(5.0)
        if child.is_alive():
            child.terminate()
            child.join(5.0)
        ours.close()
    return elapsed, rss, None


def _connect_to_ready(stub: RemoteStub) -> tuple[float, int | None, int | None]:
    """Seconds for connect() with the browser stand-in, and the RSS (KiB) when ready of the
    worker that holds the tokens and of its supervisor (None where there is none)."""
    started = time.perf_counter()
    connection = connect(stub, DEFAULT_FRAMING)
    try:
        elapsed = time.perf_counter() - started
        # After connect() worker_pid names the process that answered Connected: the child
        # that holds the tokens, never the supervisor the parent started.
        pid = connection.worker_pid
        assert pid is not None
        supervisor = _supervisor_of(pid)
        rss = _resident_kib(pid)
        supervisor_rss = None if supervisor is None else _resident_kib(supervisor)
    finally:
        connection.disconnect()
    return elapsed, rss, supervisor_rss


def _start_block(
    start: Callable[[], tuple[float, int | None, int | None]],
    count: int,
    rss: list[int | None],
    supervisor_rss: list[int | None],
) -> Block:
    block = Block()
    for _ in range(count):
        elapsed, resident, supervisor = start()
        block.latencies_ns.append(int(elapsed * 1e9))
        block.wall_s += elapsed
        block.operations += 1
        rss.append(resident)
        supervisor_rss.append(supervisor)
    return block


def startup(bench: Bench) -> dict[str, Any]:
    """connect() to ready against a bare spawn that imports requests; resident memory.

    The worker is the process that holds the tokens (`worker_pid` once connected); on Linux it
    is the child of a supervisor, the process the parent started, whose RSS is given apart.
    The two share the pages they had when the supervisor forked, so the sum overstates.
    """
    bare_rss: list[int | None] = []
    worker_rss: list[int | None] = []
    supervisor_rss: list[int | None] = []
    _bare_spawn()
    count = bench.scale.startups_per_block
    blocks_a, blocks_b = alternate(
        bench.scale.blocks,
        partial(_start_block, _bare_spawn, count, bare_rss, []),
        partial(
            _start_block, partial(_connect_to_ready, bench.stub), count, worker_rss,
            supervisor_rss,
        ),
    )
    result = comparison(blocks_a, blocks_b)
    result["reference_label"] = "multiprocess spawn child: import requests, send 1 byte"
    result["snworker_label"] = (
        f"snworker.connect() with the approve() browser stand-in, {DEFAULT_FRAMING} framing"
    )
    result["bare_child_rss_mib"] = _mib(bare_rss)
    result["worker_rss_at_ready_mib"] = _mib(worker_rss)
    result["supervisor_rss_at_ready_mib"] = _mib(supervisor_rss)
    workers: dict[str, float | None] = {}
    supervisors: dict[str, float | None] = {}
    for name, connection in bench.connections.items():
        pid = connection.worker_pid
        assert pid is not None
        supervisor = _supervisor_of(pid)
        workers[name] = _mib([_resident_kib(pid)])
        supervisors[name] = None if supervisor is None else _mib([_resident_kib(supervisor)])
    result["worker_rss_after_load_mib"] = workers[DEFAULT_FRAMING]
    result["supervisor_rss_after_load_mib"] = supervisors[DEFAULT_FRAMING]
    result["worker_rss_after_load_mib_by_framing"] = workers
    return result
