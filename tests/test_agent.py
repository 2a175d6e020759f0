"""Agent mode: one authorized worker shared by a user's processes, with real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import snworker
from snworker import agent as agents
from snworker.messages import PREFIX, Request, encode
from snworker.policy import AgentLimits
from snworker.testing import RemoteStub, StubServiceNow, approve
from tests.processes import process_gone

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the POSIX agent socket")

INCIDENTS = "/api/now/table/incident"


@pytest.fixture
def sn() -> Iterator[StubServiceNow]:
    with StubServiceNow() as stub:
        yield stub


def start(sn: StubServiceNow, tmp_path: Path, **kwargs: object) -> agents.AgentInfo:
    kwargs.setdefault("idle", 60)
    info, channel = agents.start(sn.url, sn.client_id, redirect_uri=sn.redirect_uri,
                                 open_browser=approve, authorization_timeout=15,
                                 address=str(tmp_path / "agent" / "agent.sock"), **kwargs)
    channel.release()
    return info


def stop(info: agents.AgentInfo) -> None:
    try:
        agents.control(info.address, "stop")
    except snworker.ServiceNowError:
        os.kill(info.pid, signal.SIGTERM)
    assert agents.wait_gone(info.pid, 10)


CLIENT = textwrap.dedent("""
    import json, sys, snworker
    conn = snworker.attach()
    statuses = [conn.execute_api_request("/api/now/table/incident",
                                         params={"sysparm_limit": 1}).status for _ in range(3)]
    print(json.dumps({"statuses": statuses, "pid": conn.worker_pid,
                      "user": (conn.current_user or {}).get("user_name")}), flush=True)
    conn.disconnect()
""")


def run_client(info: agents.AgentInfo, code: str = CLIENT, **kwargs: object):
    env = dict(os.environ, SNWORKER_AGENT=info.address)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=30, **kwargs)


def test_two_client_processes_share_one_consent(sn, tmp_path):
    info = start(sn, tmp_path)
    try:
        results = [run_client(info) for _ in range(2)]
        for result in results:
            assert result.returncode == 0, result.stderr[-2000:]
            report = json.loads(result.stdout)
            assert report == {"statuses": [200] * 3, "pid": info.pid, "user": "admin"}
        assert sn.grant_counts["authorization_code"] == 1
        status = agents.control(info.address, "status")
        assert status["instance"] == sn.url and status["granted"]
        assert status["hardening"]["not_dumpable"] == ""
    finally:
        stop(info)
    assert sn.revocation_count == 1  # stopping revoked the grant


def test_the_socket_is_private_and_another_user_is_refused(sn, tmp_path):
    import tempfile

    # Somewhere another user can reach, were the modes wrong: not under pytest's private tmp.
    reachable = Path(tempfile.mkdtemp(prefix="snworker-agent-"))
    reachable.chmod(0o755)
    info = start(sn, reachable)
    address = Path(info.address)
    try:
        assert address.stat().st_mode & 0o777 == 0o600
        assert address.parent.stat().st_mode & 0o777 == 0o700
        # Opened up by mistake: the client refuses to use it...
        address.parent.chmod(0o755)
        address.chmod(0o666)
        with pytest.raises(snworker.WorkerStartError, match="not private"):
            snworker.attach(info.address)
        # ...and the agent refuses a process of another user, whatever the modes say.
        if shutil.which("setpriv") and os.getuid() == 0:
            # A well-formed status request: only the user check can refuse it.
            probe = textwrap.dedent("""
                import pickle, socket, struct, sys
                head = pickle.dumps((10, False, 1, "status"), protocol=5)
                sock = socket.socket(socket.AF_UNIX)
                sock.settimeout(5)
                sock.connect(sys.argv[1])
                try:
                    sock.sendall(struct.pack("!IQ", len(head), 0) + head)
                    print("answered" if sock.recv(100) else "closed")
                except (ConnectionResetError, BrokenPipeError):
                    print("closed")
            """)
            as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
            # Any Python 3 runs the probe; the system's is one that user `nobody` can load.
            python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
            for prefix, expected in (([], "answered"), (as_nobody, "closed")):
                result = subprocess.run([*prefix, python, "-c", probe, info.address],
                                        capture_output=True, text=True, timeout=30, cwd="/")
                assert result.stdout.strip() == expected, result.stdout + result.stderr
        address.parent.chmod(0o700)
        address.chmod(0o600)
        with snworker.attach(info.address) as conn:  # the agent serves on
            assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
    finally:
        address.parent.chmod(0o700)
        stop(info)
        shutil.rmtree(reachable, ignore_errors=True)


SLOW_CLIENT = textwrap.dedent("""
    import sys, snworker
    conn = snworker.attach()
    print("ready", flush=True)
    conn.execute_api_request("/api/now/table/incident", params={"sysparm_limit": 1}, timeout=30)
""")


def test_a_client_killed_mid_request_leaves_the_others_working(sn, tmp_path):
    info = start(sn, tmp_path)
    try:
        with snworker.attach(info.address) as other:
            sn.inject(status=None, delay=3.0, times=1, path_prefix=INCIDENTS)
            env = dict(os.environ, SNWORKER_AGENT=info.address)
            victim = subprocess.Popen([sys.executable, "-c", SLOW_CLIENT], env=env,
                                      stdout=subprocess.PIPE, text=True)
            assert victim.stdout.readline().strip() == "ready"
            time.sleep(0.5)  # its request waits at the stub
            victim.send_signal(signal.SIGKILL)
            victim.wait(5)
            for _ in range(5):
                assert other.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status \
                    == 200
        assert not process_gone(info.pid, 0.1)
    finally:
        stop(info)


def test_a_client_that_sends_garbage_is_dropped_and_nobody_else_notices(sn, tmp_path):
    info = start(sn, tmp_path)
    try:
        with snworker.attach(info.address) as good:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(info.address)
                sock.sendall(struct.pack("!IQ", 5, 0) + b"junk!")
                assert sock.recv(100) == b""  # dropped
            assert good.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
    finally:
        stop(info)


def test_a_client_whose_agent_dies_gets_a_clear_error_within_two_seconds(sn, tmp_path):
    info = start(sn, tmp_path)
    conn = snworker.attach(info.address)
    sn.inject(status=None, delay=5.0, times=1, path_prefix=INCIDENTS)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            conn.execute_api_request(INCIDENTS, timeout=30)
        except BaseException as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.5)
    os.kill(info.pid, signal.SIGKILL)
    killed = time.monotonic()
    caller.join(5)
    assert [type(e) for e in errors] == [snworker.WorkerCrashedError]
    assert time.monotonic() - killed < 2.0
    assert "agent is gone" in str(errors[0])
    conn.disconnect()


def test_an_idle_agent_revokes_its_grant_and_stops(sn, tmp_path):
    info = start(sn, tmp_path, idle=1.0)
    assert agents.wait_gone(info.pid, 6)
    assert sn.revocation_count == 1
    assert not Path(info.address).exists()


def test_the_agent_stops_when_its_socket_is_removed(sn, tmp_path):
    info = start(sn, tmp_path)
    os.unlink(info.address)
    assert agents.wait_gone(info.pid, 5)
    assert sn.revocation_count == 1


def test_sigterm_stops_the_agent_and_revokes(sn, tmp_path):
    info = start(sn, tmp_path)
    os.kill(info.pid, signal.SIGTERM)
    assert agents.wait_gone(info.pid, 8)
    assert sn.revocation_count == 1


def test_a_reconnect_from_any_client_is_one_consent_for_everyone(sn, tmp_path):
    info = start(sn, tmp_path)
    try:
        first, second = snworker.attach(info.address), snworker.attach(info.address)
        sn.revoke_refresh_tokens()
        for conn in (first, second):
            with pytest.raises(snworker.AuthTokenExpiredError):
                conn.execute_api_request(INCIDENTS)
        first.reconnect(open_browser=approve)
        second.reconnect(open_browser=approve)  # the agent has a grant again: no consent
        for conn in (first, second):
            assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
            conn.disconnect()
        assert sn.grant_counts["authorization_code"] == 2
    finally:
        stop(info)


def test_connect_with_agent_true_uses_a_running_agent_or_a_worker_of_its_own(sn, tmp_path,
                                                                             monkeypatch):
    with snworker.connect(sn.url, sn.client_id, redirect_uri=sn.redirect_uri,
                          open_browser=approve, agent=True) as own:
        assert own.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
    assert sn.grant_counts["authorization_code"] == 1
    info = start(sn, tmp_path)
    monkeypatch.setenv("SNWORKER_AGENT", info.address)
    try:
        with snworker.connect(sn.url, sn.client_id, redirect_uri=sn.redirect_uri,
                              open_browser=approve, agent=True) as shared:
            assert shared.worker_pid == info.pid
        assert sn.grant_counts["authorization_code"] == 2  # the agent's consent, no other
    finally:
        stop(info)


def test_an_agent_keeps_the_secrets_from_its_clients(sn, tmp_path):
    info = start(sn, tmp_path)
    try:
        result = run_client(info)
        assert result.returncode == 0
        issued = RemoteStub(sn.url).issued_secrets()
        for secret in issued:
            assert secret not in result.stdout + result.stderr
    finally:
        stop(info)


# --- the agent's memory and its clients --------------------------------------------------------

def stalled_frame(announced: int, sent: int) -> bytes:
    """The start of a Request frame that announces an `announced`-byte body and carries `sent`."""
    head, _ = encode(Request(1, "POST", INCIDENTS, (), (), False, 30.0, body=b""))
    return PREFIX.pack(len(head), announced) + head + b"x" * sent


def test_stalled_frames_cannot_exhaust_the_agents_memory(sn, tmp_path):
    # Each connection announces a 1 GiB body, sends 3 MiB of it, and stalls. Two such clients
    # once took the agent from 30 MiB to 1.7 GiB resident (a frame was allocated whole from
    # the length it announced). Now a frame grows as its bytes arrive, what all clients hold
    # in flight is capped, a stalled frame is dropped at its read deadline, and the number of
    # clients is bounded.
    limits = AgentLimits(clients=8, stall=2.0)  # a 1 GiB frame is within the default caps
    info = start(sn, tmp_path, limits=limits)
    agent = psutil.Process(info.pid)
    sockets: list[socket.socket] = []
    try:
        with snworker.attach(info.address) as good:
            assert good.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
            before = agent.memory_info().rss
            for _ in range(limits.clients - 2):  # room left for the good one and a status
                sock = socket.socket(socket.AF_UNIX)
                sock.settimeout(10)
                sock.connect(info.address)
                sock.sendall(stalled_frame(1 << 30, 3 << 20))
                sockets.append(sock)
            began = time.monotonic()
            for _ in range(3):  # the client that was there keeps working meanwhile
                assert good.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status \
                    == 200
            held = agents.control(info.address, "status")["in_flight"]
            assert 0 < held <= len(sockets) * 2 * (3 << 20)  # at most twice what arrived
            grown = agent.memory_info().rss - before
            assert grown < 64 << 20, f"the agent grew by {grown >> 20} MiB"
            # Connections over the bound are closed at once.
            extra = []
            for _ in range(3):
                sock = socket.socket(socket.AF_UNIX)
                sock.settimeout(1.0)
                sock.connect(info.address)
                extra.append(sock)
            closed = 0
            for sock in extra:
                try:
                    closed += sock.recv(100) == b""
                except TimeoutError:
                    pass  # served: the status query's connection was gone by then
                sock.close()
            assert closed >= 2
            # Every stalled client is dropped by its read deadline, and what it held is freed.
            for sock in sockets:
                try:
                    assert sock.recv(100) == b""
                except ConnectionResetError:
                    pass
            assert time.monotonic() - began < limits.stall + 3
            assert agents.control(info.address, "status")["in_flight"] == 0
            assert good.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
    finally:
        for sock in sockets:
            sock.close()
        stop(info)


def test_a_big_body_within_the_limits_goes_through_the_agent(sn, tmp_path):
    # The caps hold back stalled and oversized frames, not large requests.
    info = start(sn, tmp_path, limits=AgentLimits(client_bytes=48 << 20, stall=2.0))
    try:
        with snworker.attach(info.address) as conn:
            body = b"%PDF" + os.urandom(24 << 20)
            answer = conn.execute_api_request(
                "/api/now/attachment/file", "POST", body,
                headers={"Content-Type": "application/pdf"},
                params={"table_name": "incident",
                        "table_sys_id": sn.records("incident")[0]["sys_id"],
                        "file_name": "big.pdf"})
            assert answer.status == 201, answer.status
            assert answer.data["size_bytes"] == str(len(body))
    finally:
        stop(info)


def test_a_frame_over_a_clients_cap_drops_that_client_only(sn, tmp_path):
    info = start(sn, tmp_path, limits=AgentLimits(client_bytes=2 << 20, stall=2.0))
    try:
        with snworker.attach(info.address) as good:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(info.address)
                sock.sendall(stalled_frame(8 << 20, 0))
                assert sock.recv(100) == b""  # dropped at once, not at its deadline
            assert good.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
    finally:
        stop(info)


def test_a_client_that_leaves_its_answers_unread_is_dropped(sn, tmp_path):
    # It asks for an 8 MiB file and never reads: the agent's write waits at most the read
    # deadline, then it hangs up, and what the request held is freed.
    limits = AgentLimits(stall=1.0)
    info = start(sn, tmp_path, limits=limits)
    try:
        with snworker.attach(info.address) as good:
            stored = good.execute_api_request(
                "/api/now/attachment/file", "POST", os.urandom(8 << 20),
                headers={"Content-Type": "application/octet-stream"},
                params={"table_name": "incident",
                        "table_sys_id": sn.records("incident")[0]["sys_id"],
                        "file_name": "big.bin"}).data
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(10)
                sock.connect(info.address)
                head, _ = encode(Request(1, "GET", f"/api/now/attachment/{stored['sys_id']}/file",
                                         (), (), False, 30.0))
                sock.sendall(PREFIX.pack(len(head), 0) + head)
                time.sleep(limits.stall + 1.5)  # not reading
                received = 0
                while chunk := sock.recv(1 << 16):
                    received += len(chunk)
                assert received < 8 << 20  # hung up before the whole answer was written
            assert agents.control(info.address, "status")["in_flight"] == 0
            assert good.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
    finally:
        stop(info)
