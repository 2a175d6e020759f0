"""Starting the worker in real applications: frozen, embedded, and vendored installs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import snworker
from snworker.testing import StubServiceNow

ROOT = Path(__file__).resolve().parent.parent


def run(code: str, *args: str, env: dict[str, str] | None = None,
        cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_a_frozen_app_without_freeze_support_gets_a_clear_error():
    result = run("""
        import sys, snworker
        sys.frozen = True   # as PyInstaller and cx_Freeze set it
        try:
            snworker.connect("dev12345", "cid", authorization_timeout=5)
        except snworker.WorkerStartError as exc:
            print("refused:", exc)
    """)
    assert "refused:" in result.stdout and "freeze_support()" in result.stdout, result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell script as the interpreter")
def test_the_worker_executable_can_be_set_before_the_first_worker_only(tmp_path):
    marker = tmp_path / "marker"
    wrapper = tmp_path / "embedded-python"
    wrapper.write_text(f"#!/bin/sh\necho $$ >> {marker}\nexec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    with StubServiceNow() as sn:
        result = run("""
            import sys, snworker
            from snworker.testing import approve
            try:
                snworker.set_worker_executable("/no/such/python")
            except ValueError:
                print("not executable: refused")
            snworker.set_worker_executable(sys.argv[1])
            with snworker.connect(sys.argv[2], sys.argv[3], redirect_uri=sys.argv[4],
                                  open_browser=approve, authorization_timeout=15) as conn:
                print("connected", conn.execute_api_request("/api/now/table/incident").status)
            try:
                snworker.set_worker_executable(sys.executable)
            except RuntimeError:
                print("too late: refused")
        """, str(wrapper), sn.url, sn.client_id, sn.redirect_uri)
    assert result.stdout.split("\n")[:3] == ["not executable: refused", "connected 200",
                                             "too late: refused"], result.stderr[-2000:]
    assert marker.read_text().strip()  # the worker was started through the wrapper


def test_a_vendored_snworker_runs_its_worker_from_where_it_is(tmp_path):
    vendor = tmp_path / "vendor"
    # copyfile, not copy2: Wine has no CopyFile2, which copy2 calls on Windows.
    shutil.copytree(ROOT / "snworker", vendor / "snworker",
                    ignore=shutil.ignore_patterns("__pycache__"), copy_function=shutil.copyfile)
    with StubServiceNow() as sn:
        result = run("""
            import logging, sys
            sys.path.insert(0, sys.argv[1])      # the application vendors snworker
            import snworker
            from snworker.testing import approve
            assert snworker.__file__.startswith(sys.argv[1]), snworker.__file__
            records = []
            handler = logging.Handler()
            handler.emit = records.append
            logging.getLogger("snworker").addHandler(handler)
            logging.getLogger("snworker").setLevel(logging.DEBUG)
            with snworker.connect(sys.argv[2], sys.argv[3], redirect_uri=sys.argv[4],
                                  open_browser=approve, authorization_timeout=15) as conn:
                conn.execute_api_request("/api/now/table/incident")
            print(next(r.getMessage() for r in records if "sys.path" in r.getMessage()))
        """, str(vendor), sn.url, sn.client_id, sn.redirect_uri, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    worker_path = result.stdout.split("sys.path", 1)[1]
    assert repr(str(vendor)) in worker_path          # its own copy, found where it is
    pth = next(iter(Path(sys.executable).parent.glob("*._pth")), None)
    if pth is None or str(ROOT) not in pth.read_text().split():
        assert repr(str(ROOT)) not in worker_path    # not the checkout the tests run from
    else:  # an embeddable Python's ._pth puts the checkout on every path, after the given one
        assert worker_path.index(repr(str(vendor))) < worker_path.index(repr(str(ROOT)))


def test_the_public_names_for_starting_workers_exist():
    assert callable(snworker.freeze_support) and callable(snworker.set_worker_executable)
    snworker.freeze_support()  # not frozen: it returns and does nothing
