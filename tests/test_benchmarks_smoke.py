"""`python -m benchmarks --quick` runs to the end and writes every section's figures."""

from __future__ import annotations

import json
import numbers
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("floor", "small_get", "caller_threads", "response_sizes", "startup", "refresh_storm")
SIDE_FIGURES = ("median_us", "p99_us", "ops_per_s", "cpu_us_per_op")


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
    for name in SECTIONS:
        assert _numbers(results["sections"][name]), name

    sections = results["sections"]
    _assert_sides(sections["floor"])
    _assert_sides(sections["small_get"])
    assert isinstance(sections["small_get"]["cpu_ratio"], int | float)
    for threads in ("1", "4", "16"):
        _assert_sides(sections["caller_threads"][threads])
        assert isinstance(sections["caller_threads"][threads]["throughput_ratio"], int | float)
    for size in ("1KB", "64KB", "1MB", "8MB"):
        _assert_sides(sections["response_sizes"][size])
        assert isinstance(sections["response_sizes"][size]["snworker"]["mb_per_s"], int | float)
    _assert_sides(sections["startup"])
    assert isinstance(sections["startup"]["worker_rss_at_ready_mib"], int | float)
    _assert_sides(sections["refresh_storm"])
    assert isinstance(sections["refresh_storm"]["refresh_grants_max"], int)
    assert {target["verdict"] for target in results["targets"]} <= {"PASS", "MISS"}
