"""A steady small-GET load through snworker, for attaching a sampling profiler.

    python -m benchmarks.load [--seconds 20] [--threads 1] [--path PING|GET]
    py-spy record --pid <worker pid> --duration 10 --format raw -o worker.txt

Prints the parent's and the worker's process ids once the connection is ready, then sends
requests for the given time and reports the rate. The stub runs in its own process, as in the
benchmarks, so a profile of the parent or the worker holds only that process's work.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Sequence

import snworker
from snworker.testing import StubServiceNow, approve

STARTUP_GRACE = 2.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all threads, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load; 0 on success."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ping", action="store_true",
                        help="requests the worker refuses before any I/O, instead of a GET")
    options = parser.parse_args(argv)
    if not 0 < options.seconds <= 600 or not 1 <= options.threads <= 64:
        parser.error("--seconds must be in (0, 600] and --threads in [1, 64]")

    stub = StubServiceNow.start_process()
    try:
        with snworker.connect(stub.url, stub.client_id, redirect_uri=stub.redirect_uri,
                              open_browser=approve) as connection:
            sys_id = stub.records("incident")[0]["sys_id"]
            path = "//x" if options.ping else f"/api/now/table/incident/{sys_id}"
            print(f"parent pid {os.getpid()} worker pid {connection.worker_pid}", flush=True)
            time.sleep(STARTUP_GRACE)
            deadline = time.monotonic() + options.seconds
            counts = [0] * options.threads

            def work(index: int) -> None:
                while time.monotonic() < deadline:
                    try:
                        connection.execute_api_request(path).data  # noqa: B018
                    except snworker.InvalidRequestError:
                        pass
                    counts[index] += 1

            threads = [threading.Thread(target=work, args=(i,)) for i in range(options.threads)]
            worker_pid = connection.worker_pid
            assert worker_pid is not None
            cpu_before = {pid: cpu_seconds(pid) for pid in (os.getpid(), worker_pid)}
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            total = sum(counts)
            print(f"{total / options.seconds:.0f} requests/s", flush=True)
            for name, pid in (("parent", os.getpid()), ("worker", worker_pid)):
                used = cpu_seconds(pid) - cpu_before[pid]
                print(f"{name} CPU per request: {used / total * 1e6:.0f} µs", flush=True)
    finally:
        stub.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
