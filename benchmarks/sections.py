"""The comparisons of sections 1 to 4 and 6. Each returns its figures as a JSON-ready dict.

A is always the reference (the pipe floor, in-process `requests`, a bare spawn, a burst with
fresh tokens); B is always snworker. Ratios are B / A for latency and A-side-normalised the same
way for throughput (B / A, higher is better).

Sections 1 to 4 measure snworker once per framing of the pipe (`FRAMINGS`: fd and conn on
POSIX, conn alone on Windows), each through its own connection, all in the same rotation of
blocks as the reference. Their dicts hold one comparison per framing under "framings", and the
default framing's figures at the top, where the targets read them.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import requests
import requests.adapters

import snworker
from benchmarks import baseline, children
from benchmarks.measure import (
    Block,
    alternate,
    ratio,
    rotate,
    summarize,
    threaded_loop,
    timed_loop,
)
from snworker.testing import approve
from snworker.testing.remote import RemoteStub

PING_PATH = "//x"
PING_LABEL = "ping: execute_api_request('//x'), refused by the worker's check() before any I/O"
FRAME_BYTES = 200
CHILD_TIMEOUT = 20.0
PAYLOAD_TABLE = "u_benchmark_payload"
PAYLOAD_FIELD = "u_payload"
SIZES = {"1KB": 1024, "64KB": 64 * 1024, "1MB": 1024 * 1024, "8MB": 8 * 1024 * 1024}
CALLER_THREADS = (1, 4, 16)
STORM_THREADS = 32
THREADS_BASELINE = "the faster of a shared requests.Session and one Session per thread"
# The framings of the pipe this platform has, the default first (`snworker.pipes.default_io`).
FRAMINGS: tuple[str, ...] = ("conn",) if sys.platform == "win32" else ("fd", "conn")
DEFAULT_FRAMING = FRAMINGS[0]
IO_VARIABLE = "SNWORKER_IO"


@dataclass(frozen=True, slots=True)
class Scale:
    """How much each section measures: blocks per comparison and operations per block."""

    blocks: int
    floor_per_block: int
    get_per_block: int
    thread_requests_per_block: int  # split across the caller threads; divisible by 16
    size_per_block: dict[str, int] = field(default_factory=dict)
    startups_per_block: int = 1
    storm_rounds: int = 2
    warmup: int = 20
    # Section 7, per body ("small", "1MB"): redactions (a multiple of redaction.DRAWS), and
    # snworker GETs of that body.
    redact_per_block: dict[str, int] = field(default_factory=dict)
    redact_get_per_block: dict[str, int] = field(default_factory=dict)
    # Section 9: lists of 1,000 records, and stubs started and stopped, per block and side.
    stub_list_per_block: int = 2
    stub_starts_per_block: int = 10
    # and tests with the connection fixture, per block and side (a new connection is a consent)
    fixture_tests_per_block: int = 2
    # Section 12: the body streamed down and up, in MB, and transfers per side; section 13:
    # blocks, and requests per thread per block.
    stream_mb: int = 16
    stream_blocks: int = 2
    wan_blocks: int = 2
    wan_per_thread: int = 3


FULL = Scale(
    blocks=10,
    floor_per_block=1000,
    get_per_block=500,
    thread_requests_per_block=320,
    size_per_block={"1KB": 200, "64KB": 60, "1MB": 8, "8MB": 2},
    startups_per_block=2,
    storm_rounds=8,
    redact_per_block={"small": 2000, "1MB": 16},
    redact_get_per_block={"small": 100, "1MB": 4},
    stub_list_per_block=10,
    stub_starts_per_block=50,
    fixture_tests_per_block=6,
    stream_mb=200,
    stream_blocks=4,
    wan_blocks=24,
    wan_per_thread=10,
)
QUICK = Scale(
    blocks=4,
    floor_per_block=200,
    get_per_block=40,
    thread_requests_per_block=48,
    size_per_block={"1KB": 20, "64KB": 10, "1MB": 2, "8MB": 1},
    startups_per_block=1,
    storm_rounds=2,
    warmup=5,
    redact_per_block={"small": 400, "1MB": 8},
    redact_get_per_block={"small": 20, "1MB": 2},
)


def connect(stub: RemoteStub, framing: str) -> snworker.ServiceNowConnection:
    """A connection whose worker frames the pipe with `framing`.

    `SNWORKER_IO` is read when a connection's worker starts, so it is set around this one
    `connect()` and restored at once.
    """
    saved = os.environ.get(IO_VARIABLE)
    os.environ[IO_VARIABLE] = framing
    try:
        connection = snworker.connect(
            stub.url, stub.client_id, redirect_uri=stub.redirect_uri, open_browser=approve
        )
    finally:
        if saved is None:
            del os.environ[IO_VARIABLE]
        else:
            os.environ[IO_VARIABLE] = saved
    # A figure labelled conn that measured fd would be worse than none: check, where we can see.
    used = getattr(getattr(connection, "_channel", None), "io", framing)
    if used != framing:
        connection.disconnect()
        raise RuntimeError(f"asked for the {framing} framing, the connection uses {used}")
    return connection


@dataclass(slots=True)
class Bench:
    """What every section shares: the stub, snworker's connections and the reference sessions."""

    stub: RemoteStub
    connections: dict[str, snworker.ServiceNowConnection]  # one per framing
    new_session: Callable[[], requests.Session]
    scale: Scale
    record_path: str
    payload_paths: dict[str, str] = field(default_factory=dict)  # section 4's records by size

    @property
    def connection(self) -> snworker.ServiceNowConnection:
        """The connection with the platform's default framing."""
        return self.connections[DEFAULT_FRAMING]

    @property
    def record_url(self) -> str:
        """The small record's URL, for the reference."""
        return self.stub.url + self.record_path

    def snworker_get(self, path: str, framing: str | None = None) -> Any:
        """One GET through the worker (default framing unless named), JSON parsed as the
        caller would read it."""
        return self.connections[framing or DEFAULT_FRAMING].execute_api_request(path).data


def _warm(operation: Callable[[], object], times: int) -> None:
    for _ in range(times):
        operation()


def comparison(blocks_a: list[Block], blocks_b: list[Block]) -> dict[str, Any]:
    """A against B: both sides' figures, the ratios of medians and of p99s, the overhead."""
    a, b = summarize(blocks_a), summarize(blocks_b)
    return {
        "reference": a.as_json(),
        "snworker": b.as_json(),
        "latency_ratio": ratio(b.median_us, a.median_us),
        "p99_ratio": ratio(b.p99_us, a.p99_us),
        "overhead_us": round(b.median_us - a.median_us, 2),
    }


def _per_framing(
    blocks: int, reference: Callable[[], Block], ours: Callable[[str], Callable[[], Block]]
) -> tuple[list[Block], dict[str, list[Block]]]:
    """The reference and snworker with every framing (`ours(framing)` makes its block),
    rotated through the same blocks."""
    blocks_a, *ours_blocks = rotate(blocks, [reference, *map(ours, FRAMINGS)])
    return blocks_a, dict(zip(FRAMINGS, ours_blocks, strict=True))


def _get_block(bench: Bench, path: str, count: int, framing: str) -> Callable[[], Block]:
    """A block of `count` snworker GETs of `path` with `framing`."""
    return partial(timed_loop, partial(bench.snworker_get, path, framing), count)


def _framed(
    blocks_a: list[Block],
    by_framing: dict[str, list[Block]],
    extra: Callable[[dict[str, Any]], None] = lambda figures: None,
) -> dict[str, Any]:
    """One comparison per framing against the same reference blocks; the default's on top."""
    framings: dict[str, Any] = {}
    for name, blocks_b in by_framing.items():
        figures = comparison(blocks_a, blocks_b)
        extra(figures)
        framings[name] = figures
    return {**framings[DEFAULT_FRAMING], "framing": DEFAULT_FRAMING, "framings": framings}


# --- 1. the floor -----------------------------------------------------------------------


def floor(bench: Bench) -> dict[str, Any]:
    """A 200-byte round trip over a stdlib pipe to an echoing child, against snworker's ping."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe(duplex=True)
    child = context.Process(target=children.echo, args=(theirs,), name="bench-echo", daemon=True)
    child.start()
    theirs.close()
    try:
        frame = bytes(range(256))[:FRAME_BYTES]

        def pipe_round_trip() -> None:
            ours.send_bytes(frame)
            ours.recv_bytes()

        def ping(connection: snworker.ServiceNowConnection) -> None:
            try:
                connection.execute_api_request(PING_PATH)
            except snworker.InvalidRequestError:
                return
            raise AssertionError("the worker accepted a path it must refuse")

        _warm(pipe_round_trip, bench.scale.warmup * 10)
        for connection in bench.connections.values():
            _warm(partial(ping, connection), bench.scale.warmup * 10)
        count = bench.scale.floor_per_block
        blocks_a, blocks_b = _per_framing(
            bench.scale.blocks,
            partial(timed_loop, pipe_round_trip, count),
            lambda name: partial(timed_loop, partial(ping, bench.connections[name]), count),
        )
    finally:
        _stop_echo(ours, child)
    result = _framed(blocks_a, blocks_b)
    result["reference_label"] = f"stdlib multiprocessing Pipe, {FRAME_BYTES} B echo"
    result["snworker_label"] = PING_LABEL
    return result


def _stop_echo(ours: Any, child: Any) -> None:
    try:
        ours.send_bytes(b"")
    except OSError:
        pass
    child.join(5.0)
    if child.is_alive():
        child.terminate()
        child.join(5.0)
    ours.close()


# --- 2. small GET -----------------------------------------------------------------------


def small_get(bench: Bench) -> dict[str, Any]:
    """One record by sys_id: latency and the parent's CPU per request, both sides."""
    session = bench.new_session()
    try:
        reference = partial(baseline.get_result, session, bench.record_url)
        _warm(reference, bench.scale.warmup)
        for name in FRAMINGS:
            _warm(partial(bench.snworker_get, bench.record_path, name), bench.scale.warmup)
        count = bench.scale.get_per_block
        blocks_a, blocks_b = _per_framing(
            bench.scale.blocks,
            partial(timed_loop, reference, count),
            partial(_get_block, bench, bench.record_path, count),
        )
    finally:
        session.close()

    def cpu_ratio(figures: dict[str, Any]) -> None:
        figures["cpu_ratio"] = ratio(
            figures["snworker"]["cpu_us_per_op"], figures["reference"]["cpu_us_per_op"]
        )

    result = _framed(blocks_a, blocks_b, cpu_ratio)
    result["body_bytes"] = len(bench.connection.execute_api_request(bench.record_path).content)
    return result


# --- 3. caller threads ------------------------------------------------------------------


def caller_threads(bench: Bench) -> dict[str, Any]:
    """Throughput with 1, 4 and 16 caller threads sharing one snworker connection.

    Two references run in the same rotation: one `requests.Session` shared by the threads (its
    pool sized to them) and one session per thread. The faster one, by median requests/s, is
    the reference of each ratio, so snworker is held to the stricter bar.
    """
    result: dict[str, Any] = {"reference_label": THREADS_BASELINE}
    ours = {name: partial(bench.snworker_get, bench.record_path, name) for name in FRAMINGS}
    for threads in CALLER_THREADS:
        shared = bench.new_session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(10, threads))
        shared.mount("http://", adapter)
        own = [bench.new_session() for _ in range(threads)]
        try:
            references = {
                "shared session": [partial(baseline.get_result, shared, bench.record_url)]
                * threads,
                "session per thread": [
                    partial(baseline.get_result, session, bench.record_url) for session in own
                ],
            }
            for operations in references.values():
                for operation in operations:
                    _warm(operation, 2)
            for operation in ours.values():
                _warm(operation, bench.scale.warmup)
            per_thread = bench.scale.thread_requests_per_block // threads
            runners = [
                partial(threaded_loop, operations, per_thread)
                for operations in (
                    *references.values(), *([ours[name]] * threads for name in FRAMINGS)
                )
            ]
            measured = rotate(bench.scale.blocks, runners)
        finally:
            for session in (shared, *own):
                session.close()
        reference_blocks = measured[: len(references)]
        by_framing = dict(zip(FRAMINGS, measured[len(references):], strict=True))
        rates = {
            name: summarize(blocks).ops_per_s
            for name, blocks in zip(references, reference_blocks, strict=True)
        }
        faster = max(rates, key=rates.__getitem__)

        def throughput_ratio(figures: dict[str, Any]) -> None:
            figures["throughput_ratio"] = ratio(
                figures["snworker"]["ops_per_s"], figures["reference"]["ops_per_s"]
            )

        figures = _framed(
            reference_blocks[list(references).index(faster)], by_framing, throughput_ratio
        )
        figures["reference_label"] = faster
        figures["reference_ops_per_s"] = {name: round(rate, 1) for name, rate in rates.items()}
        result[str(threads)] = figures
    return result


# --- 4. response sizes ------------------------------------------------------------------


def response_sizes(bench: Bench) -> dict[str, Any]:
    """One record whose body is about 1 KB .. 8 MB; JSON parsed on both sides."""
    probe = bench.stub.insert(PAYLOAD_TABLE, {PAYLOAD_FIELD: ""})
    probe_path = f"/api/now/table/{PAYLOAD_TABLE}/{probe['sys_id']}"
    envelope_bytes = len(bench.connection.execute_api_request(probe_path).content)
    result: dict[str, Any] = {}
    session = bench.new_session()
    try:
        for label, size in SIZES.items():
            filler = ("snworker-benchmark-" * (size // 19 + 1))[: max(0, size - envelope_bytes)]
            record = bench.stub.insert(PAYLOAD_TABLE, {PAYLOAD_FIELD: filler})
            path = f"/api/now/table/{PAYLOAD_TABLE}/{record['sys_id']}"
            bench.payload_paths[label] = path
            del record, filler
            reference = partial(baseline.get_result, session, bench.stub.url + path)
            warmup = 2 if size > 100_000 else bench.scale.warmup
            _warm(reference, warmup)
            for name in FRAMINGS:
                _warm(partial(bench.snworker_get, path, name), warmup)
            count = bench.scale.size_per_block[label]
            blocks_a, blocks_b = _per_framing(
                bench.scale.blocks,
                partial(timed_loop, reference, count),
                partial(_get_block, bench, path, count),
            )
            body = len(bench.connection.execute_api_request(path).content)

            def rates(figures: dict[str, Any], body: int = body) -> None:
                for side in ("reference", "snworker"):
                    figures[side]["mb_per_s"] = round(body / figures[side]["median_us"], 2)

            figures = _framed(blocks_a, blocks_b, rates)
            figures["body_bytes"] = body
            result[label] = figures
    finally:
        session.close()
    return result


# --- 6. refresh storm -------------------------------------------------------------------


def refresh_storm(bench: Bench) -> dict[str, Any]:
    """32 threads meet a token the stub has expired: one refresh grant, and the latency cost.

    Runs last: expiring tokens at the stub also ends the reference sessions' grant.
    """
    ours = partial(bench.snworker_get, bench.record_path)
    grants: list[int] = []

    def burst() -> Block:
        return threaded_loop([ours] * STORM_THREADS, 1)

    def storm() -> Block:
        bench.stub.expire_access_tokens()
        before = bench.stub.grant_counts["refresh_token"]
        block = burst()
        grants.append(bench.stub.grant_counts["refresh_token"] - before)
        return block

    burst()
    blocks_a, blocks_b = alternate(bench.scale.storm_rounds, burst, storm)
    result = comparison(blocks_a, blocks_b)
    result["reference_label"] = f"{STORM_THREADS} threads, fresh token"
    result["snworker_label"] = f"{STORM_THREADS} threads, token expired at the stub"
    result["threads"] = STORM_THREADS
    result["rounds"] = len(grants)
    result["refresh_grants_per_storm"] = grants
    result["refresh_grants_max"] = max(grants)
    return result
