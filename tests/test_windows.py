"""Windows' own protections, with real processes: the worker's DACL and mitigation policies,
the agent's named pipe. Run on Windows' Python (under Wine in CI); where Wine does not do what
Windows does, the test says so with a "Wine limit" skip.

The same promises on Linux are test_isolation's and test_security's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import snworker
from snworker import agent as agents
from snworker.spawn import worker_path
from snworker.testing import StubServiceNow, approve
from tests.conftest import connect
from tests.processes import wine_limit

pytestmark = pytest.mark.skipif(sys.platform != "win32", reason="Windows process security")

SYNCHRONIZE = 0x00100000
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
PROCESS_TERMINATE = 0x0001
PROCESS_VM_READ = 0x0010
PROCESS_VM_WRITE = 0x0020
PROCESS_CREATE_THREAD = 0x0002
PROCESS_DUP_HANDLE = 0x0040
PROCESS_QUERY_INFORMATION = 0x0400
WRITE_DAC = 0x00040000

# Another process of the same user tries to open the worker with each right; what it got.
PROBE = textwrap.dedent("""
    import _winapi, json, sys
    pid, rights = int(sys.argv[1]), json.loads(sys.argv[2])
    got = {}
    for right in rights:
        try:
            _winapi.CloseHandle(_winapi.OpenProcess(right, False, pid))
            got[right] = True
        except PermissionError:
            got[right] = False
    print(json.dumps(got))
""")


def opened_by_another_process(pid: int, rights: list[int]) -> dict[int, bool]:
    result = subprocess.run([sys.executable, "-c", PROBE, str(pid), json.dumps(rights)],
                            capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-2000:]
    return {int(k): v for k, v in json.loads(result.stdout).items()}


@pytest.fixture
def sn():
    with StubServiceNow() as stub:
        yield stub


def test_the_hardening_report_says_what_windows_applied(sn):
    with connect(sn) as conn:
        hardening = conn.worker_hardening
        assert hardening.platform == "win32"
        assert {"memory_closed", "mitigations", "no_fault_dialogs", "parent_death"} <= set(
            hardening.applied)
        not_applied = dict(hardening.not_applied)
        assert "before its DACL was set" in not_applied["fresh_address_space"]
        assert "LocalDumps" in not_applied["no_crash_dumps"]


def test_the_users_other_processes_cannot_read_or_write_the_workers_memory(sn):
    with connect(sn) as conn:
        pid = conn.worker_pid
        denied = [PROCESS_VM_READ, PROCESS_VM_WRITE, PROCESS_CREATE_THREAD, PROCESS_DUP_HANDLE,
                  PROCESS_QUERY_INFORMATION]
        allowed = [SYNCHRONIZE, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_TERMINATE]
        got = opened_by_another_process(pid, denied + allowed)
        assert {right: got[right] for right in denied} == dict.fromkeys(denied, False)
        assert {right: got[right] for right in allowed} == dict.fromkeys(allowed, True)
        # The connection is unharmed by the probing.
        assert conn.execute_api_request("/api/now/table/incident",
                                        params={"sysparm_limit": 1}).status == 200


@wine_limit("OWNER RIGHTS access control entries are ignored, so the owner keeps WRITE_DAC")
def test_the_owner_cannot_rewrite_the_workers_dacl(sn):
    # Without the OWNER RIGHTS entry, the owner may always rewrite a DACL, and then read.
    with connect(sn) as conn:
        assert opened_by_another_process(conn.worker_pid, [WRITE_DAC]) == {WRITE_DAC: False}


MITIGATIONS = textwrap.dedent("""
    import ctypes, json, sys
    from ctypes import wintypes
    sys.path[:0] = json.loads(sys.argv[1])
    from snworker.worker.harden import _win32
    said = _win32._mitigations()
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    read = {}
    for policy in (6, 10):  # extension points, image load
        flags = wintypes.DWORD()
        ok = kernel32.GetProcessMitigationPolicy(kernel32.GetCurrentProcess(), policy,
                                                 ctypes.byref(flags), ctypes.sizeof(flags))
        read[policy] = flags.value if ok else None
    print(json.dumps({"said": said, "read": read}))
""")


@wine_limit("SetProcessMitigationPolicy is a stub that reports success and applies nothing")
def test_the_mitigation_policies_the_worker_sets_hold():
    result = subprocess.run([sys.executable, "-I", "-S", "-c", MITIGATIONS,
                             json.dumps(list(worker_path()))],
                            capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout)
    assert outcome["said"] == ""
    assert outcome["read"]["6"] & 0x1  # DisableExtensionPoints
    assert outcome["read"]["10"] & 0x3 == 0x3  # NoRemoteImages, NoLowMandatoryLabelImages


SQUATTER = textwrap.dedent("""
    import _winapi, sys
    pipe = _winapi.CreateNamedPipe(
        sys.argv[1], _winapi.PIPE_ACCESS_DUPLEX,
        _winapi.PIPE_TYPE_MESSAGE | _winapi.PIPE_READMODE_MESSAGE | _winapi.PIPE_WAIT,
        _winapi.PIPE_UNLIMITED_INSTANCES, 65536, 65536, 0, _winapi.NULL)
    print("ready", flush=True)
    sys.stdin.read()
""")


@wine_limit("FILE_FLAG_FIRST_PIPE_INSTANCE is not enforced, so a squatter's pipe is joined")
def test_an_agent_refuses_a_pipe_name_another_process_created_first(sn, tmp_path: Path):
    address = rf"\\.\pipe\snworker-test-squatted-{tmp_path.name}"
    squatter = subprocess.Popen([sys.executable, "-c", SQUATTER, address], text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert squatter.stdout is not None
        assert squatter.stdout.readline().strip() == "ready"
        with pytest.raises(snworker.WorkerStartError):
            info, channel = agents.start(sn.url, sn.client_id, redirect_uri=sn.redirect_uri,
                                         open_browser=approve, authorization_timeout=15,
                                         address=address, idle=30)
            channel.release()
            agents.control(info.address, "stop")
    finally:
        squatter.kill()
        squatter.wait(10)
