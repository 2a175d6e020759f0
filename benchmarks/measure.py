"""Interleaved A/B blocks and the statistics reported from them.

A figure compares ways of doing the same thing (A: the reference, B and C: snworker with its two
framings of the pipe) measured in the same run. Blocks alternate A/B, then B/A (with three or
more sides, the order also rotates), so that a slow phase of the machine (a frequency change, a
noisy neighbour, the stub's garbage collector) lands on every side alike.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class Block:
    """One block of timed operations on one side."""

    latencies_ns: list[int] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    operations: int = 0


def alternate(
    blocks: int, run_a: Callable[[], T], run_b: Callable[[], T]
) -> tuple[list[T], list[T]]:
    """Run `blocks` rounds of A and B, swapping their order every round."""
    results_a, results_b = rotate(blocks, (run_a, run_b))
    return results_a, results_b


def rotate(blocks: int, runners: Sequence[Callable[[], T]]) -> list[list[T]]:
    """Run `blocks` rounds of every runner, each in its own list of results.

    Round i starts from runner (i // 2) mod n and runs the rest in turn, reversed when i is
    odd: over 2n rounds every runner takes every position equally often, so no side is always
    the one that runs right after the reference (or always the first of a round).
    """
    count = len(runners)
    results: list[list[T]] = [[] for _ in runners]
    for index in range(blocks):
        shift = (index // 2) % count
        order = [(shift + step) % count for step in range(count)]
        for which in order if index % 2 == 0 else reversed(order):
            results[which].append(runners[which]())
    return results


def timed_loop(operation: Callable[[], object], count: int) -> Block:
    """Call `operation` `count` times in this thread, timing each call and the block's CPU.

    CPU is `time.process_time()`: every thread of this process (a reader thread included), and
    nothing of the stub or the worker, which run in other processes.
    """
    latencies = [0] * count
    clock = time.perf_counter_ns
    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    for index in range(count):
        started = clock()
        operation()
        latencies[index] = clock() - started
    wall = time.perf_counter() - wall_start
    return Block(latencies, time.process_time() - cpu_start, wall, count)


def threaded_loop(operations: Sequence[Callable[[], object]], per_thread: int) -> Block:
    """One thread per entry of `operations`, each calling its own `per_thread` times.

    The threads start together on a barrier; the block's wall time runs from the barrier to the
    last thread's end, so thread start-up is not counted.
    """
    threads_count = len(operations)
    barrier = threading.Barrier(threads_count + 1)
    latencies: list[list[int]] = [[] for _ in operations]
    failures: list[BaseException] = []

    def work(index: int) -> None:
        operation = operations[index]
        mine = latencies[index]
        clock = time.perf_counter_ns
        barrier.wait()
        try:
            for _ in range(per_thread):
                started = clock()
                operation()
                mine.append(clock() - started)
        except BaseException as exc:  # reported by the caller, not lost in a thread
            failures.append(exc)

    threads = [
        threading.Thread(target=work, args=(index,), name=f"bench-caller-{index}", daemon=True)
        for index in range(threads_count)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - wall_start
    cpu = time.process_time() - cpu_start
    if failures:
        raise failures[0]
    merged = [value for per in latencies for value in per]
    return Block(merged, cpu, wall, len(merged))


@dataclass(frozen=True, slots=True)
class Summary:
    """Latency percentiles (µs), throughput and CPU of one side across all its blocks."""

    median_us: float
    p99_us: float
    samples: int
    ops_per_s: float
    cpu_us_per_op: float

    def as_json(self) -> dict[str, float | int]:
        """The summary as JSON figures."""
        return {
            "median_us": round(self.median_us, 2),
            "p99_us": round(self.p99_us, 2),
            "samples": self.samples,
            "ops_per_s": round(self.ops_per_s, 1),
            "cpu_us_per_op": round(self.cpu_us_per_op, 2),
        }


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (`fraction` in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return float(ordered[rank - 1])


def summarize(blocks: Sequence[Block]) -> Summary:
    """Pool the latencies of all blocks; throughput and CPU are medians of per-block values."""
    latencies = [value / 1000.0 for block in blocks for value in block.latencies_ns]
    return Summary(
        median_us=statistics.median(latencies),
        p99_us=percentile(latencies, 0.99),
        samples=len(latencies),
        ops_per_s=statistics.median(block.operations / block.wall_s for block in blocks),
        cpu_us_per_op=statistics.median(
            block.cpu_s / block.operations * 1e6 for block in blocks
        ),
    )


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, rounded for reporting."""
    return round(numerator / denominator, 3) if denominator else math.inf
