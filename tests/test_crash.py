"""A dead worker fails every pending call at once; a dead parent takes its worker with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import snworker
from tests.processes import kill, posix_only, process_gone


def test_sigkill_fails_pending_calls_within_two_seconds(conn, stub):
    stub.inject(status=None, delay=10.0, times=8, path_prefix="/api/now/table/incident")
    outcomes: list[tuple[type[BaseException], float]] = []
    started = threading.Event()

    def caller() -> None:
        started.set()
        try:
            conn.execute_api_request("/api/now/table/incident", timeout=30)
        except BaseException as exc:
            outcomes.append((type(exc), time.monotonic()))

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait(5)
    time.sleep(0.3)  # the requests are now inside the worker, waiting on the stub
    killed_at = time.monotonic()
    kill(conn.worker_pid)
    for t in threads:
        t.join(5)
    assert [kind for kind, _ in outcomes] == [snworker.WorkerCrashedError] * 4
    assert max(at for _, at in outcomes) - killed_at < 2.0
    later = time.monotonic()
    with pytest.raises(snworker.WorkerCrashedError) as caught:
        conn.execute_api_request("/api/now/table/incident")
    assert time.monotonic() - later < 1.0  # at once, not after a deadline
    if sys.platform != "win32":
        assert caught.value.exitcode == -signal.SIGKILL
        assert "SIGKILL" in str(caught.value)


def test_a_worker_killed_while_idle_is_reported_on_the_next_call(conn):
    kill(conn.worker_pid)
    assert process_gone(conn.worker_pid, 2.0)
    time.sleep(0.1)
    with pytest.raises(snworker.WorkerCrashedError):
        conn.execute_api_request("/api/now/table/incident")
    conn.disconnect()  # still fine on a crashed connection


PARENT = textwrap.dedent("""
    import sys, time
    import snworker
    from snworker.testing import approve
    url, client_id, redirect = sys.argv[1:4]
    conn = snworker.connect(url, client_id, redirect_uri=redirect, open_browser=approve,
                            authorization_timeout=20)
    print(conn.worker_pid, flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("how", ["kill", "terminate"])
def test_killing_the_parent_ends_its_worker_within_two_seconds(stub, how):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, stub.url, stub.client_id, stub.redirect_uri],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = parent.stdout.readline()
        worker_pid = int(line)
        assert not process_gone(worker_pid, 0.2)
        getattr(parent, how)()  # SIGKILL or SIGTERM; TerminateProcess on Windows
        parent.wait(5)
        assert process_gone(worker_pid, 2.0)
        assert stub.revocation_count == 1  # it revoked its grant on the way out
    finally:
        parent.kill()
        parent.wait(5)


def test_a_parent_that_exits_normally_revokes_its_grant(stub):
    script = PARENT.replace("time.sleep(60)", "")
    subprocess.run([sys.executable, "-c", script, stub.url, stub.client_id, stub.redirect_uri],
                   check=True, timeout=30, capture_output=True)
    assert stub.revocation_count == 1


def test_a_script_without_a_main_guard_can_connect(stub, tmp_path):
    # The worker does not re-import the application's __main__.
    script = tmp_path / "tool.py"
    script.write_text(PARENT.replace("time.sleep(60)", "conn.disconnect()"))
    result = subprocess.run(
        [sys.executable, str(script), stub.url, stub.client_id, stub.redirect_uri],
        timeout=30, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert stub.grant_counts["authorization_code"] == 1


@pytest.mark.skipif(not hasattr(os, "fork"),
                    reason="needs fork(): elsewhere no child process holds a copy of a connection")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_cannot_use_the_parents_connection(conn):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what using the connection raised, then leave at once
        try:
            conn.execute_api_request("/api/now/table/incident")
            os.write(write_end, b"no error")
        except snworker.WorkerError as exc:
            os.write(write_end, type(exc).__name__.encode() + b": " + str(exc).encode())
        except BaseException as exc:
            os.write(write_end, repr(exc).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as f:
        said = f.read().decode()
    assert said.startswith("WorkerError: this connection belongs to process")
    assert conn.execute_api_request("/api/now/table/incident",
                                    params={"sysparm_limit": 1}).status == 200


def test_disconnect_while_calls_are_in_flight_fails_them_promptly(conn, stub):
    stub.inject(status=None, delay=5.0, times=4, path_prefix="/api/now/table/incident")
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            conn.execute_api_request("/api/now/table/incident", timeout=20)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    started = time.monotonic()
    conn.disconnect(timeout=1.0)
    for t in threads:
        t.join(10)
    assert time.monotonic() - started < 4.0
    assert [type(e) for e in errors] == [snworker.ConnectionClosedError] * 4


FORKING_PARENT = PARENT.replace("time.sleep(60)", textwrap.dedent("""
    import os
    if os.fork() == 0:  # a child of the application, living on after it
        time.sleep(30)
        os._exit(0)
    time.sleep(60)
"""))


@posix_only
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_of_the_parent_does_not_keep_the_worker_alive(stub):
    parent = subprocess.Popen(
        [sys.executable, "-c", FORKING_PARENT, stub.url, stub.client_id, stub.redirect_uri],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        worker_pid = int(parent.stdout.readline())
        time.sleep(0.3)  # the child is born and holds copies of whatever it was given
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        assert process_gone(worker_pid, 2.0)
    finally:
        os.killpg(parent.pid, signal.SIGKILL)  # the forked child too
        parent.wait(5)
