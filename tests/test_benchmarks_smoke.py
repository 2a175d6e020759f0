"""`python -m benchmarks --quick` runs to the end and writes every section's figures, every
framing's among them; the rotation of blocks and the redaction section's secrets."""

from __future__ import annotations

import json
import numbers
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("floor", "small_get", "caller_threads", "response_sizes", "redaction", "startup",
            "agent", "adapters", "refresh_storm", "stub", "aio",
            "streaming", "wan")
SIDE_FIGURES = ("median_us", "p99_us", "ops_per_s", "cpu_us_per_op")
FRAMINGS = ("conn",) if sys.platform == "win32" else ("fd", "conn")


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, numbers.Real):
        return [float(value)]
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers(item)]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    return []


def _assert_sides(figures: dict[str, Any]) -> None:
    for side in ("reference", "snworker"):
        for name in SIDE_FIGURES:
            assert isinstance(figures[side][name], int | float), (side, name)
    assert isinstance(figures["latency_ratio"], int | float)


def _assert_framings(figures: dict[str, Any], *extra: str) -> None:
    """Every framing measured against the same reference; the default's figures on top."""
    _assert_sides(figures)
    assert figures["framing"] == FRAMINGS[0]
    assert tuple(figures["framings"]) == FRAMINGS
    for name in FRAMINGS:
        framed = figures["framings"][name]
        _assert_sides(framed)
        assert framed["reference"] == figures["reference"], name
        for key in extra:
            assert isinstance(framed[key], int | float), (name, key)
    assert figures["snworker"] == figures["framings"][FRAMINGS[0]]["snworker"]


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_quick_run_writes_every_section(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    finished = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert finished.returncode == 0, finished.stderr[-4000:]
    results = json.loads(output.read_text())

    assert results["machine"]["python"]
    assert tuple(results["settings"]["framings"]) == FRAMINGS
    for name in SECTIONS:
        assert _numbers(results["sections"][name]), name

    sections = results["sections"]
    _assert_framings(sections["floor"])
    _assert_framings(sections["small_get"], "cpu_ratio", "overhead_us")
    assert isinstance(sections["small_get"]["cpu_ratio"], int | float)
    for threads in ("1", "4", "16"):
        _assert_framings(sections["caller_threads"][threads], "throughput_ratio")
        assert isinstance(sections["caller_threads"][threads]["throughput_ratio"], int | float)
    for size in ("1KB", "64KB", "1MB", "8MB"):
        _assert_framings(sections["response_sizes"][size])
        for name in FRAMINGS:
            framed = sections["response_sizes"][size]["framings"][name]
            assert isinstance(framed["snworker"]["mb_per_s"], int | float), (size, name)

    redaction = sections["redaction"]
    assert redaction["secrets"]["access_token_live"] == 86
    assert set(redaction["secrets"]) == {"verifier", "code", "access_token_live",
                                         "refresh_token"}
    for body in ("small", "1MB"):
        for side in ("redact", "snworker_get"):
            for name in SIDE_FIGURES:
                assert isinstance(redaction[body][side][name], int | float), (body, side, name)
        assert isinstance(redaction[body]["share_pct"], int | float), body
    assert redaction["1MB"]["body_bytes"] == sections["response_sizes"]["1MB"]["body_bytes"]
    assert redaction["small"]["body_bytes"] == sections["small_get"]["body_bytes"]

    startup = sections["startup"]
    _assert_sides(startup)
    assert isinstance(startup["worker_rss_at_ready_mib"], int | float)
    assert set(startup["worker_rss_after_load_mib_by_framing"]) == set(FRAMINGS)
    if sys.platform == "linux":  # the worker is the child of a supervisor: both are read
        assert isinstance(startup["supervisor_rss_at_ready_mib"], int | float)
        assert isinstance(startup["supervisor_rss_after_load_mib"], int | float)
    _assert_sides(sections["refresh_storm"])
    assert isinstance(sections["refresh_storm"]["refresh_grants_max"], int)
    shared = sections["agent"]
    for figures in (shared["small_get"], shared["threads_4"], shared["threads_16"]):
        _assert_sides(figures)
    assert shared["clients"]["processes"] == 4
    assert isinstance(shared["clients"]["throughput_ratio"], int | float)
    assert shared["grants"]["authorization_code"] >= 2  # the bench's own, and the agent's

    adapters = sections["adapters"]
    for label in ("small_get", "1MB", "threads_4"):
        for side in ("adapter", "session", "httpx") if label != "threads_4" else ("adapter",
                                                                                 "session"):
            _assert_sides(adapters[label][side])
        assert isinstance(adapters["threads_4"]["adapter"]["per_request_ratio"], int | float)
    assert adapters["1MB"]["body_bytes"] == sections["response_sizes"]["1MB"]["body_bytes"]
    streamed = sections["streaming"]
    for direction in ("down", "up"):
        figures = streamed[direction]
        for side in ("reference", "snworker"):
            assert figures[side]["mb_per_s"] > 0, (direction, side)
        assert isinstance(figures["throughput_ratio"], int | float)
        grown = figures["peak_growth_mib"]
        if sys.platform == "linux":  # psutil reads both processes here
            assert set(grown) == {"reference_parent", "snworker_parent", "snworker_worker"}
            # A body of 16 MB: neither process held it whole.
            assert grown["snworker_parent"] < 12 and grown["snworker_worker"] < 12, grown
    far = sections["wan"]
    assert far["threads"] == 32 and far["delay_s"] == 0.05
    assert 0 < far["reference_of_ideal"] <= 1.05 and 0 < far["snworker_of_ideal"] <= 1.05

    stub = sections["stub"]
    _assert_sides(stub["list_1000"])
    _assert_sides(stub["fresh_per_test"])
    _assert_sides(stub["connection_per_test"])
    assert stub["list_1000"]["records"] == 1000
    assert stub["list_1000"]["body_bytes"] > 1_000_000  # every column of every record

    aio = sections["aio"]
    assert aio["concurrent"]["requests"] == 200
    for key in ("reference_per_s", "snworker_per_s", "throughput_ratio",
                "snworker_share_of_ideal"):
        assert isinstance(aio["concurrent"][key], int | float), key
    assert aio["cancel"]["snworker_not_seen"] == 0  # every cancel closed the connection
    assert isinstance(aio["cancel"]["snworker_ms"], int | float)
    _assert_sides(aio["overhead"])

    targets = {target["name"]: target for target in results["targets"]}
    assert targets["1 MB redaction / 1 MB GET"]["target"] == "<= 5 %"
    assert {target["verdict"] for target in results["targets"]} <= {"PASS", "MISS"}
    assert "conn framing (C)" in finished.stdout
    assert "redaction of the 1MB body" in finished.stdout
    assert "8 agent: small GET" in finished.stdout
    assert "9 stub: list 1000 records" in finished.stdout
    assert "10 small GET" in finished.stdout
    assert "11 asyncio: 200 at once" in finished.stdout
    assert "12 stream 16 MB down" in finished.stdout and "13 32 threads" in finished.stdout


def test_rotation_puts_every_side_in_every_position() -> None:
    from benchmarks.measure import rotate

    order: list[int] = []

    def side(k: int) -> int:
        order.append(k)
        return k

    for sides in (2, 3, 4):
        rounds = 2 * sides
        order.clear()
        results = rotate(rounds, [partial(side, k) for k in range(sides)])
        assert results == [[k] * rounds for k in range(sides)]
        for position in range(sides):  # over 2n rounds, each side twice in each position
            seen = sorted(order[r * sides + position] for r in range(rounds))
            assert seen == sorted(list(range(sides)) * 2), (sides, position)


def test_redaction_section_holds_what_a_connected_worker_holds() -> None:
    from benchmarks.redaction import worker_redactor

    redactor, lengths = worker_redactor()
    assert len(redactor) == 4
    assert lengths["access_token_live"] == 86
