"""Rules 6 and 7: the worker starts isolated from what the parent can change, and its memory is
closed from its first moment.

Each start-up vector plants code that writes its process id to a marker file. The application
itself runs the planted code (so the vector is live), and the worker never does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from snworker.testing import StubServiceNow

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc and uses Linux process controls")

APP = textwrap.dedent("""
    import json, os, sys
    import snworker
    from snworker.testing import approve
    url, client_id, redirect = sys.argv[1:4]
    PLANT = os.environ.get("PLANT_IN_APP", "")
    exec(PLANT)  # the attack, run in the application before it connects
    conn = snworker.connect(url, client_id, redirect_uri=redirect, open_browser=approve,
                            authorization_timeout=20)
    conn.execute_api_request("/api/now/table/incident", params={"sysparm_limit": 1})
    import psutil
    worker = psutil.Process(conn.worker_pid)
    pids = [p.pid for p in psutil.Process().children(recursive=True)]
    report = {"app": os.getpid(), "worker": conn.worker_pid, "workers": pids,
              "environ": worker.environ(), "cmdline": worker.cmdline(), "cwd": worker.cwd()}
    conn.disconnect()
    print(json.dumps(report), flush=True)
""")


def run_app(sn: StubServiceNow, env: dict[str, str] | None = None,
            plant: str = "") -> dict[str, Any]:
    environment = dict(os.environ, **(env or {}), PLANT_IN_APP=plant)
    result = subprocess.run(
        [sys.executable, "-c", APP, sn.url, sn.client_id, sn.redirect_uri],
        env=environment, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def marker_code(marker: Path) -> str:
    return f"import os\nwith open({str(marker)!r}, 'a') as f: f.write(f'{{os.getpid()}}\\n')\n"


def pids_in(marker: Path) -> set[int]:
    return {int(line) for line in marker.read_text().split()} if marker.exists() else set()


@pytest.fixture
def sn():
    with StubServiceNow() as stub:
        yield stub


def test_a_sitecustomize_on_pythonpath_never_runs_in_the_worker(sn, tmp_path):
    marker = tmp_path / "marker"
    (tmp_path / "sitecustomize.py").write_text(marker_code(marker))
    report = run_app(sn, {"PYTHONPATH": str(tmp_path)})
    assert pids_in(marker) == {report["app"]}  # it ran in the application, and only there
    assert "PYTHONPATH" not in report["environ"]


def test_a_look_alike_module_first_on_sys_path_never_runs_in_the_worker(sn, tmp_path):
    marker = tmp_path / "marker"
    planted = tmp_path / "planted"
    planted.mkdir()
    for name in ("tenacity", "requests", "truststore"):
        (planted / f"{name}.py").write_text(marker_code(marker))
    plant = (f"import sys, importlib; sys.path.insert(0, {str(planted)!r}); "
             "importlib.import_module('truststore')")
    report = run_app(sn, plant=plant)
    assert pids_in(marker) == {report["app"]}


def test_a_patched_entry_point_never_runs_in_the_worker(sn, tmp_path):
    marker = tmp_path / "marker"
    plant = (
        f"exec({marker_code(marker)!r})\n"
        "import snworker.worker.boot, snworker.worker.main\n"
        f"def evil(*a, **k): exec({marker_code(marker)!r})\n"
        "snworker.worker.boot.main = evil\n"
        "snworker.worker.main.Worker.serve = evil\n"
    )
    report = run_app(sn, plant=plant)
    assert pids_in(marker) == {report["app"]}


def test_multiprocess_set_executable_is_not_the_workers_interpreter(sn, tmp_path):
    marker = tmp_path / "marker"
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\necho $$ >> {marker}\nexec {sys.executable} \"$@\"\n")
    fake.chmod(0o755)
    plant = f"import multiprocess; multiprocess.set_executable({str(fake)!r})"
    report = run_app(sn, plant=plant)
    assert pids_in(marker) == set()
    assert report["cmdline"][0] != str(fake)


@linux_only
@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_ld_preload_never_reaches_the_worker(sn, tmp_path):
    marker = tmp_path / "marker"
    source = tmp_path / "mark.c"
    source.write_text(textwrap.dedent(f"""
        #include <stdio.h>
        #include <unistd.h>
        __attribute__((constructor)) static void mark(void) {{
            FILE *f = fopen("{marker}", "a");
            if (f) {{ fprintf(f, "%d\\n", getpid()); fclose(f); }}
        }}
    """))
    library = tmp_path / "libmark.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True,
                   timeout=60)
    report = run_app(sn, {"LD_PRELOAD": str(library), "LD_LIBRARY_PATH": str(tmp_path)})
    assert report["app"] in pids_in(marker)
    assert not pids_in(marker) & {report["worker"], *report["workers"]}
    assert "LD_PRELOAD" not in report["environ"]


def test_the_worker_gets_an_allow_listed_environment_and_an_isolated_interpreter(sn, tmp_path):
    planted = {
        "SSLKEYLOGFILE": str(tmp_path / "keys"), "REQUESTS_CA_BUNDLE": str(tmp_path / "ca.pem"),
        "CURL_CA_BUNDLE": str(tmp_path / "ca.pem"), "SSL_CERT_FILE": str(tmp_path / "ca.pem"),
        "HTTPS_PROXY": "http://127.0.0.1:9", "PYTHONINSPECT": "1", "PYTHONSTARTUP": "/x.py",
        "DYLD_INSERT_LIBRARIES": "/x.dylib", "SNWORKER_PLANTED": "1",
    }
    report = run_app(sn, planted)
    for name in planted:
        assert name not in report["environ"], name
    cmdline = report["cmdline"]
    assert cmdline[1:3] == ["-I", "-S"]
    assert report["cwd"] == os.path.abspath(os.sep)


# --- the first moments ---------------------------------------------------------------------

WATCHER = textwrap.dedent("""
    import json, os, sys, threading
    import snworker
    from snworker.testing import RemoteStub, approve
    url, client_id, redirect = sys.argv[1:4]
    held, refused, stop = [], [], threading.Event()

    def children(pid):
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    with open("/proc/self/cmdline", "rb") as f:
        own_command = f.read()

    def command(pid):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()

    def watch():
        # Open every new descendant's memory as fast as this process can, once it runs its
        # own image: until its exec, a child started with vfork() shares this process's memory.
        seen = set()
        me = os.getpid()
        while not stop.is_set():
            for pid in children(me) + [g for c in children(me) for g in children(c)]:
                if pid in seen:
                    continue
                try:
                    # The command line is read from the memory the process runs in at the time:
                    # ours until its exec, its own after. Whatever the build (position-
                    # independent or not), a command line other than ours means that the exec
                    # is done, so mem, opened after, is the started interpreter's memory.
                    if command(pid) in (own_command, b""):
                        continue
                    mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
                    maps = os.open(f"/proc/{pid}/maps", os.O_RDONLY)
                except OSError:
                    seen.add(pid)
                    refused.append(pid)
                    continue
                seen.add(pid)
                held.append((pid, mem, maps))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    conn = snworker.connect(url, client_id, redirect_uri=redirect, open_browser=approve,
                            authorization_timeout=20)
    conn.execute_api_request("/api/now/table/incident", params={"sysparm_limit": 2})
    RemoteStub(url).expire_access_tokens()
    conn.execute_api_request("/api/now/table/incident", params={"sysparm_limit": 1})
    stop.set()
    watcher.join(5)
    needles = [s.encode() for s in RemoteStub(url).issued_secrets()]
    probe = b"snworker.worker.boot"  # surely in any memory the worker ran in
    found, readable = [], []
    for pid, mem, maps in held:
        os.lseek(maps, 0, 0)
        text = b""
        while chunk := os.read(maps, 1 << 16):
            text += chunk
        seen_probe = False
        for line in text.decode().splitlines():
            fields = line.split()
            if "r" not in fields[1] or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                data = os.pread(mem, end - start, start)
            except OSError:
                continue
            seen_probe = seen_probe or probe in data
            found += [n.decode()[:6] for n in needles if n in data]
        readable.append(seen_probe)
    print(json.dumps({"held": [p for p, _, _ in held], "refused": refused,
                      "readable": readable, "found": found, "worker": conn.worker_pid,
                      "secrets": len(needles)}), flush=True)
    conn.disconnect()
""")
DROP_PTRACE = ["setpriv", "--bounding-set", "-sys_ptrace", "--inh-caps", "-sys_ptrace", "--"]


@linux_only
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv")
@pytest.mark.timeout(90)
def test_a_handle_opened_in_the_workers_first_moments_reads_no_secret():
    # The application runs as an ordinary user would: without CAP_SYS_PTRACE. Its watcher
    # thread opens the memory of every process it starts, the moment it appears.
    stub = StubServiceNow.start_process()
    try:
        result = subprocess.run(
            [*DROP_PTRACE, sys.executable, "-c", WATCHER, stub.url, stub.client_id,
             stub.redirect_uri], capture_output=True, text=True, timeout=60)
    finally:
        stub.close()
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["secrets"] >= 5
    assert report["held"], "the watcher never opened the worker in its first moments"
    assert any(report["readable"]), "the scan reads nothing through the early handle"
    assert report["worker"] not in report["held"]  # born closed: its memory never opened
    assert report["worker"] in report["refused"]
    assert report["found"] == [], "a secret was read through an early handle"


@linux_only
@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_a_worker_that_is_traced_when_it_hardens_refuses_to_start(sn):
    # strace -f traces every process the application starts, from its first instruction.
    script = textwrap.dedent("""
        import sys, snworker
        from snworker.testing import approve
        try:
            snworker.connect(sys.argv[1], sys.argv[2], redirect_uri=sys.argv[3],
                             open_browser=approve, authorization_timeout=10)
        except snworker.WorkerStartError as exc:
            print("refused:", exc)
    """)
    result = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=none", "-o", os.devnull, sys.executable, "-c",
         script, sn.url, sn.client_id, sn.redirect_uri],
        capture_output=True, text=True, timeout=60)
    assert "refused:" in result.stdout, result.stdout + result.stderr[-2000:]
    assert "being traced" in result.stdout
    assert sn.grant_counts.get("authorization_code", 0) == 0


@linux_only
def test_the_hardening_report_says_what_linux_applied_and_it_holds(sn):
    import psutil

    from tests.conftest import connect

    with connect(sn) as conn:
        hardening = conn.worker_hardening
        assert hardening.platform == sys.platform
        assert set(hardening.applied) == {"no_core_dumps", "not_dumpable", "not_traced",
                                          "fresh_address_space", "parent_death"}
        assert hardening.not_applied == ()
        assert "not_dumpable" in hardening
        worker = psutil.Process(conn.worker_pid)
        assert worker.rlimit(psutil.RLIMIT_CORE) == (0, 0)
        supervisor = worker.parent()
        assert supervisor is not None and supervisor.ppid() == os.getpid()
        assert supervisor.num_threads() == 1  # it holds nothing and runs nothing
