"""The machine's description, the targets, and the terminal table."""

from __future__ import annotations

import os
import platform
import subprocess
import textwrap
from dataclasses import dataclass
from typing import Any

Results = dict[str, Any]


def machine() -> dict[str, Any]:
    """CPU model, cores, Python, kernel: what a reader needs to weigh the figures."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": f"{platform.system()} {platform.release()}",
        "load_average": (
            [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
        ),
        "commit": _commit(),
    }


def _commit() -> str | None:
    try:
        answer = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return answer.stdout.strip() or None


# --- targets ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A figure of the results and the bound it should meet."""

    name: str
    path: tuple[str, ...]
    bound: float
    at_most: bool = True
    unit: str = ""

    def figure(self, results: Results) -> float:
        """The figure this target reads."""
        value: Any = results["sections"]
        for key in self.path:
            value = value[key]
        return float(value)

    def met(self, results: Results) -> bool:
        """Whether the figure is within the bound."""
        value = self.figure(results)
        return value <= self.bound if self.at_most else value >= self.bound

    @property
    def text(self) -> str:
        """The bound as printed, e.g. "<= 1.1" or "<= 5 %"."""
        return f"{'<=' if self.at_most else '>='} {self.bound:g}{self.unit}"


TARGETS = (
    Target("ping / pipe floor (median)", ("floor", "latency_ratio"), 1.5),
    Target("small GET latency / in-process", ("small_get", "latency_ratio"), 1.10),
    Target("small GET parent CPU / in-process", ("small_get", "cpu_ratio"), 0.25),
    Target("4 threads throughput / in-process", ("caller_threads", "4", "throughput_ratio"), 1.0,
           at_most=False),
    Target("1 MB latency / in-process", ("response_sizes", "1MB", "latency_ratio"), 1.15),
    Target("start-up / bare spawn", ("startup", "latency_ratio"), 1.5),
    Target("refresh grants per storm (max)", ("refresh_storm", "refresh_grants_max"), 1),
    Target("1 MB redaction / 1 MB GET", ("redaction", "1MB", "share_pct"), 5.0, unit=" %"),
    Target("requests adapter small GET / execute_api_request",
           ("adapters", "small_get", "adapter", "latency_ratio"), 1.05),
    Target("requests adapter 1 MB / execute_api_request",
           ("adapters", "1MB", "adapter", "latency_ratio"), 1.05),
    Target("requests adapter 4 threads / execute_api_request",
           ("adapters", "threads_4", "adapter", "per_request_ratio"), 1.05),
    Target("streaming down / in-process", ("streaming", "down", "throughput_ratio"), 0.9,
           at_most=False),
    Target("streaming up / in-process", ("streaming", "up", "throughput_ratio"), 0.9,
           at_most=False),
    Target("32 threads, 50 ms answers / in-process", ("wan", "throughput_ratio"), 1.0,
           at_most=False),
    Target("200 async requests: rate / httpx.AsyncClient", ("aio", "concurrent",
                                                             "throughput_ratio"), 1.0,
           at_most=False),
)


def verdicts(results: Results) -> list[dict[str, Any]]:
    """Every target with its figure and PASS/MISS."""
    return [
        {
            "name": target.name,
            "figure": target.figure(results),
            "target": target.text,
            "verdict": "PASS" if target.met(results) else "MISS",
        }
        for target in TARGETS
    ]


# --- the table --------------------------------------------------------------------------


def _us(side: dict[str, Any]) -> str:
    return f"{side['median_us']:.0f} µs (p99 {side['p99_us']:.0f})"


def _ms(side: dict[str, Any]) -> str:
    return f"{side['median_us'] / 1000:.1f} ms (p99 {side['p99_us'] / 1000:.1f})"


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value} MiB"


def _verdict_for(results: Results, path: tuple[str, ...]) -> tuple[str, str]:
    for target in TARGETS:
        if target.path == path:
            return target.text, "PASS" if target.met(results) else "MISS"
    return "", ""


def _others(figures: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The framings other than the one at the top of `figures`, with their comparisons."""
    return [(name, framed) for name, framed in figures.get("framings", {}).items()
            if name != figures.get("framing")]


Row = tuple[str, str, str, str, str, str]


def rows(results: Results) -> list[Row]:
    """Table rows: figure, reference, snworker, ratio, target, verdict."""
    sections = results["sections"]
    table: list[Row] = []

    def add(label: str, reference: str = "", ours: str = "", shown: str = "",
            path: tuple[str, ...] = ()) -> None:
        bound, verdict = _verdict_for(results, path) if path else ("", "")
        table.append((label, reference, ours, shown, bound, verdict))

    def add_others(figures: dict[str, Any], ours: Any, shown: Any) -> None:
        """One row per other framing: its snworker cell and ratio, same reference."""
        for name, framed in _others(figures):
            add(f"    {name} framing (C)", "", ours(framed), shown(framed))

    floor = sections["floor"]
    add("1 round trip: pipe floor vs ping*", _us(floor["reference"]), _us(floor["snworker"]),
        f"{floor['latency_ratio']:.2f}", ("floor", "latency_ratio"))
    add_others(floor, lambda f: _us(f["snworker"]), lambda f: f"{f['latency_ratio']:.2f}")

    get = sections["small_get"]
    add(f"2 small GET latency ({get['body_bytes']} B)", _us(get["reference"]),
        _us(get["snworker"]), f"{get['latency_ratio']:.2f}", ("small_get", "latency_ratio"))
    add_others(get, lambda f: _us(f["snworker"]), lambda f: f"{f['latency_ratio']:.2f}")
    overheads = ", ".join(f"{framed['overhead_us']:+.0f} µs ({name})"
                          for name, framed in get.get("framings", {}).items())
    add(f"  overhead per request: {overheads or format(get['overhead_us'], '+.0f') + ' µs'}")
    add("  parent CPU per request", f"{get['reference']['cpu_us_per_op']:.0f} µs",
        f"{get['snworker']['cpu_us_per_op']:.0f} µs", f"{get['cpu_ratio']:.2f}",
        ("small_get", "cpu_ratio"))
    add_others(get, lambda f: f"{f['snworker']['cpu_us_per_op']:.0f} µs",
               lambda f: f"{f['cpu_ratio']:.2f}")

    threads = sections["caller_threads"]
    for count in ("1", "4", "16"):
        figures = threads[count]
        a, b = figures["reference"], figures["snworker"]
        add(f"3 {count} caller thread(s): req/s [{figures['reference_label']}]",
            f"{a['ops_per_s']:.0f} (p99 {a['p99_us']:.0f} µs)",
            f"{b['ops_per_s']:.0f} (p99 {b['p99_us']:.0f} µs)",
            f"{figures['throughput_ratio']:.2f}",
            ("caller_threads", count, "throughput_ratio"))
        add_others(figures,
                   lambda f: f"{f['snworker']['ops_per_s']:.0f} "
                             f"(p99 {f['snworker']['p99_us']:.0f} µs)",
                   lambda f: f"{f['throughput_ratio']:.2f}")

    for label, figures in sections["response_sizes"].items():
        a, b = figures["reference"], figures["snworker"]
        add(f"4 {label} response ({figures['body_bytes']} B)",
            f"{_ms(a)}, {a['mb_per_s']:.3g} MB/s", f"{_ms(b)}, {b['mb_per_s']:.3g} MB/s",
            f"{figures['latency_ratio']:.2f}", ("response_sizes", label, "latency_ratio"))
        add_others(figures,
                   lambda f: f"{_ms(f['snworker'])}, {f['snworker']['mb_per_s']:.3g} MB/s",
                   lambda f: f"{f['latency_ratio']:.2f}")

    start = sections["startup"]
    add("5 start-up to ready", _ms(start["reference"]), _ms(start["snworker"]),
        f"{start['latency_ratio']:.2f}", ("startup", "latency_ratio"))
    add("  resident memory (VmRSS)", f"bare child {_mib(start['bare_child_rss_mib'])}",
        f"worker {_mib(start['worker_rss_at_ready_mib'])} at ready, "
        f"{_mib(start['worker_rss_after_load_mib'])} after load")
    if "supervisor_rss_at_ready_mib" in start:
        add("  its supervisor (VmRSS)", "",
            f"supervisor {_mib(start['supervisor_rss_at_ready_mib'])} at ready, "
            f"{_mib(start['supervisor_rss_after_load_mib'])} after load")

    storm = sections["refresh_storm"]
    add(f"6 {storm['threads']}-thread burst vs refresh storm", _ms(storm["reference"]),
        _ms(storm["snworker"]), f"{storm['p99_ratio']:.2f} (p99)")
    add("  refresh grants per storm", "", str(storm["refresh_grants_per_storm"]),
        str(storm["refresh_grants_max"]), ("refresh_storm", "refresh_grants_max"))

    redaction = sections.get("redaction")
    if redaction is not None:
        for label, name in (("1MB", "7 redaction of the 1MB body"),
                            ("small", "  redaction of the small body")):
            figures = redaction[label]
            draws = figures["redact_draws_median_us"]
            add(f"{name} ({figures['body_bytes']} B)†",
                f"GET {_us(figures['snworker_get'])}",
                f"redact {_us(figures['redact'])}; draws {draws['best']:.0f}.."
                f"{draws['worst']:.0f}",
                f"{figures['share_pct']:.1f} %", ("redaction", label, "share_pct"))

    shared = sections.get("agent")
    if shared is not None:
        get = shared["small_get"]
        add("8 agent: small GET, one client‡", _us(get["reference"]), _us(get["snworker"]),
            f"{get['latency_ratio']:.2f}")
        for count in ("4", "16"):
            figures = shared[f"threads_{count}"]
            add(f"  {count} threads, one client: req/s", f"{figures['reference']['ops_per_s']:.0f}",
                f"{figures['snworker']['ops_per_s']:.0f}", f"{figures['throughput_ratio']:.2f}")
        clients = shared["clients"]
        add(f"  {clients['processes']} clients x {clients['threads_per_process']} threads: req/s",
            f"{clients['reference_ops_per_s']:.0f}", f"{clients['agent_ops_per_s']:.0f}",
            f"{clients['throughput_ratio']:.2f}")

    adapters = sections.get("adapters")
    if adapters is not None:
        for label, title in (("small_get", "10 small GET"), ("1MB", "   1MB")):
            first = True
            for side in ("adapter", "session", "httpx"):
                figures = adapters[label].get(side)
                if figures is None:
                    continue
                target = ("adapters", label, side, "latency_ratio") if side == "adapter" else ()
                head = f"{title} ({adapters[label]['body_bytes']} B)" if first else "  "
                add(f"{head} {side}◊", _us(figures["reference"]) if first else "",
                    _us(figures["snworker"]), f"{figures['latency_ratio']:.2f} "
                    f"(CPU {figures['cpu_ratio']:.2f})", target)
                first = False
            plain = adapters[label].get("session_in_process")
            if plain is not None:
                add("   session / in-process requests◊", _us(plain["reference"]),
                    _us(plain["snworker"]), f"{plain['latency_ratio']:.2f} "
                    f"(CPU {plain['cpu_ratio']:.2f})")
        for side, figures in adapters["threads_4"].items():
            target = ("adapters", "threads_4", side, "per_request_ratio") \
                if side == "adapter" else ()
            add(f"   {adapters['threads']} threads: {side}, req/s◊",
                f"{figures['reference']['ops_per_s']:.0f}",
                f"{figures['snworker']['ops_per_s']:.0f}",
                f"{figures['per_request_ratio']:.2f} (CPU {figures['cpu_ratio']:.2f})", target)
    streamed = sections.get("streaming")
    if streamed is not None:
        size = streamed["body_bytes"] // (1 << 20)
        for direction, label in (("down", "down"), ("up", "up")):
            figures = streamed[direction]
            a, b = figures["reference"], figures["snworker"]
            add(f"12 stream {size} MB {label}°", f"{a['mb_per_s']:.0f} MB/s",
                f"{b['mb_per_s']:.0f} MB/s", f"{figures['throughput_ratio']:.2f}",
                ("streaming", direction, "throughput_ratio"))
            grown = figures["peak_growth_mib"]
            add("  peak memory growth", f"parent +{grown['reference_parent']} MiB",
                f"parent +{grown['snworker_parent']} MiB, worker "
                f"+{grown['snworker_worker']} MiB")
    far = sections.get("wan")
    if far is not None:
        add(f"13 {far['threads']} threads, answers after {far['delay_s'] * 1000:.0f} ms: req/s",
            f"{far['reference']['ops_per_s']:.0f} ({far['reference_of_ideal']:.0%} of ideal)",
            f"{far['snworker']['ops_per_s']:.0f} ({far['snworker_of_ideal']:.0%} of ideal)",
            f"{far['throughput_ratio']:.2f}", ("wan", "throughput_ratio"))

    stub = sections.get("stub")
    if stub is not None:
        listed = stub["list_1000"]
        add(f"9 stub: list {listed['records']} records ({listed['body_bytes']} B)§",
            f"download {_ms(listed['reference'])}", f"list {_ms(listed['snworker'])}",
            f"{listed['latency_ratio']:.2f}")
        fresh = stub["fresh_per_test"]
        add("  stub per test: fresh vs shared§", f"reset {_ms(fresh['reference'])}",
            f"start+stop {_ms(fresh['snworker'])}", f"{fresh['latency_ratio']:.2f}")
        fixture = stub.get("connection_per_test")
        if fixture is not None:
            add("  servicenow_connection per test: new vs kept§",
                f"kept {_ms(fixture['reference'])}", f"new {_ms(fixture['snworker'])}",
                f"{fixture['latency_ratio']:.2f}")
    aio = sections.get("aio")
    if aio is not None:
        burst = aio["concurrent"]
        add(f"11 asyncio: {burst['requests']} at once, {burst['delay_ms']:.0f} ms each: req/s¶",
            f"{burst['reference_per_s']:.0f} ({burst['reference_share_of_ideal']:.0%} of ideal)",
            f"{burst['snworker_per_s']:.0f} ({burst['snworker_share_of_ideal']:.0%} of ideal)",
            f"{burst['throughput_ratio']:.2f}", ("aio", "concurrent", "throughput_ratio"))
        cancel = aio["cancel"]
        add("  cancel -> connection closed at the stub",
            f"{cancel['reference_ms']} ms (max {cancel['reference_max_ms']})",
            f"{cancel['snworker_ms']} ms (max {cancel['snworker_max_ms']})")
        overhead = aio["overhead"]
        add("  small GET: sync driver (A) vs async (B)", _us(overhead["reference"]),
            _us(overhead["snworker"]), f"{overhead['latency_ratio']:.2f}")
    return table


def render(results: Results) -> str:
    """The terminal table, with the machine and the method in its header."""
    header = ("figure", "reference (A)", "snworker (B)", "B/A", "target", "")
    body = rows(results)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))

    rule = "-" * len(line(header))
    info = results["machine"]
    settings = results["settings"]
    sections = results["sections"]
    framing = sections["small_get"].get("framing", "fd")
    others = [name for name in settings.get("framings", ()) if name != framing]
    table = [
        f"snworker benchmarks ({'quick' if settings['quick'] else 'full'} run, "
        f"{settings['blocks']} interleaved blocks per figure, "
        f"{results['elapsed_s']:.0f} s)",
        f"machine: {info['cpu_model']}, {info['cores']} cores, Python {info['python']}, "
        f"{info['kernel']}, commit {info['commit']}",
        rule, line(header), rule, *(line(row).rstrip() for row in body), rule,
    ]
    lines = [
        "* " + sections["floor"]["snworker_label"],
        "  floor: " + sections["floor"]["reference_label"]
        + "; threads: " + sections["caller_threads"]["reference_label"],
        "  latency cells: median (p99); ratios are of medians unless marked p99",
        f"  B: snworker with the {framing} framing of the pipe (this platform's default)",
    ]
    for name in others:
        lines.append(
            f"  {name} framing (C): the same figure through a second connection with "
            f"SNWORKER_IO={name}, in the same blocks against the same A; ratio C/A"
        )
    start = sections["startup"]
    lines.append(
        "  start-up: " + start["snworker_label"] + " vs " + start["reference_label"]
        + "; worker = the process that holds the tokens (worker_pid)"
        + ("; supervisor = its parent, the process connect() started (shares the worker's"
           " pages from the fork)" if start.get("supervisor_rss_at_ready_mib") else "")
    )
    if sections.get("agent") is not None:
        lines.append(
            "‡ agent: A is a worker of the connection's own, B an agent (`snworker.agent`) its"
            " client attached to over a Unix socket; with several clients, A is that many"
            " processes each with its own worker, B as many processes attached to one agent"
        )
    redaction = sections.get("redaction")
    if redaction is not None:
        held = ", ".join(f"{name} {length}" for name, length in redaction["secrets"].items())
        lines.append(
            "† redaction: Redactor.body run in this process on the body the GET returns, with"
            f" the secrets a connected worker holds (characters: {held}), {redaction['draws']}"
            " random draws of them in turn; draws: median µs of the best and the worst draw;"
            f" A: snworker GET of that body ({redaction['framing']}), interleaved;"
            " ratio: redaction as % of the GET"
        )
    if sections.get("adapters") is not None:
        lines.append(
            "◊ adapters: A is execute_api_request(path).data; adapter: WorkerAdapter.send of a"
            " request requests prepared, .json() (what requests_session adds); session:"
            " session.get(url).json(), all of requests included; httpx: httpx.Client.get with"
            " httpx_transport, all of httpx included; threads: wall time per request, B/A;"
            " CPU: the parent's CPU per request, B/A; session / in-process requests: A is a"
            " plain requests.Session with a token of its own, B the session through the worker"
        )
    if sections.get("streaming") is not None:
        lines.append(
            "° streaming: one body down (A: requests stream=True, iter_content; B:"
            " stream_api_request, iter_bytes) and up (both: an iterator of 256 KiB pieces as"
            " data, sent chunked); MB/s of the median transfer; memory: the most resident"
            " memory grew during a transfer, sampled every 5 ms"
        )
    if sections.get("stub") is not None:
        lines.append(
            "§ stub: in this process, both sides one request to a stub of its own; list: the"
            " Table API listing every column of 1,000 incidents, against the same bytes"
            " downloaded as an attachment of that stub; per test: a stub started, asked once"
            " and stopped, against one shared stub reset and asked once; servicenow_connection:"
            " a new connection (consent, GET, disconnect) per test, against the fixture's"
            " connection kept across resets (reset, its check, GET)"
        )
    if sections.get("aio") is not None:
        lines.append(
            "¶ asyncio: a stub process of its own; A is httpx.AsyncClient in this process with"
            " a token and 200 connections allowed, B `snworker.aio`; ideal = every request"
            " answered after its delay, all at once; cancel: task.cancel() of a request the stub"
            " holds, to the stub seeing its connection closed (medians)"
        )
    legend = [textwrap.fill(text, width=max(100, len(rule)), subsequent_indent="    ")
              for text in lines]
    return "\n".join([*table, *legend])


def summary_line(results: Results) -> str:
    """"targets: 5 PASS, 2 MISS"."""
    outcome = [v["verdict"] for v in results["targets"]]
    return f"targets: {outcome.count('PASS')} PASS, {outcome.count('MISS')} MISS"
