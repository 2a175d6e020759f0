"""Command line: start the stub in its own process, connect, run every section, report."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import snworker
from benchmarks import (
    adapters,
    agent,
    aio,
    baseline,
    redaction,
    report,
    sections,
    startup,
    streaming,
    stub,
)
from snworker.testing import StubServiceNow

DEFAULT_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "latest.json")
SMALL_TABLE = "incident"

SECTIONS: tuple[tuple[str, Callable[[sections.Bench], dict[str, Any]]], ...] = (
    ("floor", sections.floor),
    ("small_get", sections.small_get),
    ("caller_threads", sections.caller_threads),
    ("response_sizes", sections.response_sizes),
    ("redaction", redaction.redaction),  # before the storm: refreshes add live tokens to redact
    ("startup", startup.startup),
    ("agent", agent.agent),
    ("adapters", adapters.adapters),  # needs section 4's 1 MB record
    ("streaming", streaming.streaming),
    ("wan", streaming.wan),
    ("refresh_storm", sections.refresh_storm),  # it expires every token at the stub
    ("stub", stub.stub),  # stubs of its own, in this process
    ("aio", aio.aio),  # a stub process and connections of its own
)


def run(scale: sections.Scale, quick: bool, progress: Callable[[str], None]) -> dict[str, Any]:
    """Every section against one stub process and one snworker connection per framing."""
    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": report.machine(),
        "settings": {"quick": quick, "blocks": scale.blocks, "scale": _scale_json(scale),
                     "framings": list(sections.FRAMINGS)},
        "sections": {},
    }
    stub = StubServiceNow.start_process()
    connections: dict[str, snworker.ServiceNowConnection] = {}
    try:
        for framing in sections.FRAMINGS:
            connections[framing] = sections.connect(stub, framing)
        token = baseline.authorize(stub.url, stub.client_id, stub.redirect_uri)
        record = stub.records(SMALL_TABLE)[0]
        bench = sections.Bench(
            stub=stub,
            connections=connections,
            new_session=baseline.session_factory(stub.url, token),
            scale=scale,
            record_path=f"/api/now/table/{SMALL_TABLE}/{record['sys_id']}",
        )
        del token
        for name, section in SECTIONS:
            section_started = time.perf_counter()
            progress(f"{name} ...")
            results["sections"][name] = section(bench)
            progress(f"{name} done in {time.perf_counter() - section_started:.1f} s")
    finally:
        for connection in connections.values():
            connection.disconnect()
        stub.close()
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["targets"] = report.verdicts(results)
    return results


def _scale_json(scale: sections.Scale) -> dict[str, Any]:
    return {name: getattr(scale, name) for name in scale.__slots__}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks [--quick] [--json PATH]`; 0 when every section ran."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--json", default=DEFAULT_JSON, metavar="PATH",
                        help="where to write the results (default: %(default)s)")
    options = parser.parse_args(argv)
    scale = sections.QUICK if options.quick else sections.FULL

    def progress(text: str) -> None:
        print(f"  {text}", file=sys.stderr, flush=True)

    results = run(scale, options.quick, progress)
    directory = os.path.dirname(os.path.abspath(options.json))
    os.makedirs(directory, exist_ok=True)
    with open(options.json, "w", encoding="utf-8") as output:
        json.dump(results, output, indent=2)
        output.write("\n")
    print(report.render(results))
    print(report.summary_line(results))
    print(f"results: {options.json}")
    return 0
