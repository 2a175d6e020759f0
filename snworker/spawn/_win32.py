"""Starting the worker on Windows.

The pipe is a `multiprocess` named-pipe connection: after the worker is created, its end is
duplicated into the worker, and so is a handle on this process that the worker's watchdog
waits on. When this process ends, however it ends, the watchdog revokes the grant (within a
second) and exits, and a thread-pool timer armed at that moment ends the worker a little later
whatever its Python code is doing (`end_within` in the worker's Windows hardening).

There is no kill-on-close job: Windows would end the worker the moment this process ends,
before it could revoke, since a process in a job can neither delay nor see
TerminateJobObject. The worker runs in a process group of its own, so a Ctrl-C in the console
reaches the application, which decides, and not the worker.
"""

from __future__ import annotations

import sys

assert sys.platform == "win32"

import _winapi
import json
import os
import subprocess
from typing import TYPE_CHECKING

import multiprocess
import multiprocess.connection

from snworker.messages import describe_status
from snworker.pipes.conn import ConnPipe
from snworker.spawn import StartedProcess

if TYPE_CHECKING:
    from snworker.pipes import Pipe
    from snworker.spawn import Launch

_SYNCHRONIZE = 0x00100000
_PROCESS_TERMINATE = 0x0001
_PROCESS_DUP_HANDLE = 0x0040
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000

# NTSTATUS codes a crashed worker may end with, in words.
_STATUSES = {
    0xC0000005: "an access violation",
    0xC0000017: "running out of memory",
    0xC00000FD: "a stack overflow",
    0xC000013A: "Ctrl-C (STATUS_CONTROL_C_EXIT)",
    0xC0000409: "a fail-fast exit (STATUS_STACK_BUFFER_OVERRUN)",
    0xC0000374: "heap corruption",
}


class WindowsWorker(StartedProcess):
    """The started worker process."""

    def __init__(self, popen: subprocess.Popen[bytes], handle: int) -> None:
        super().__init__(popen)
        self._handle = handle

    @property
    def sentinel(self) -> int:
        """The process handle: signalled when the worker exits."""
        return self._handle

    def terminate(self) -> None:
        """TerminateProcess."""
        if self._popen.returncode is None:
            self._popen.terminate()

    def kill(self) -> None:
        """TerminateProcess (Windows has nothing harder)."""
        self.terminate()

    def close(self) -> None:
        """Close the process handle."""
        if self._handle:
            try:
                _winapi.CloseHandle(self._handle)
            except OSError:
                pass
        self._handle = 0



def launch(spec: Launch) -> tuple[Pipe, WindowsWorker]:
    """Start the worker, then hand it its pipe and a handle on this process."""
    parent_end, child_end = multiprocess.Pipe(duplex=True)
    try:
        quiet = subprocess.DEVNULL if spec.detached else None
        flags = subprocess.CREATE_NEW_PROCESS_GROUP | (
            subprocess.DETACHED_PROCESS if spec.detached else subprocess.CREATE_NO_WINDOW)
        popen = subprocess.Popen(
            spec.command, env=spec.environment, stdin=subprocess.PIPE, stdout=quiet,
            stderr=quiet, close_fds=True, cwd=os.path.abspath(os.sep), creationflags=flags,
        )
        rights = (_SYNCHRONIZE | _PROCESS_TERMINATE | _PROCESS_DUP_HANDLE
                  | _PROCESS_QUERY_LIMITED_INFORMATION)
        handle = _winapi.OpenProcess(rights, False, popen.pid)
        current = _winapi.GetCurrentProcess()
        pipe_handle = _winapi.DuplicateHandle(current, child_end.fileno(), handle, 0, False,
                                              _winapi.DUPLICATE_SAME_ACCESS)
        parent_handle = _winapi.DuplicateHandle(current, current, handle, _SYNCHRONIZE, False,
                                                0)
    except BaseException:
        parent_end.close()
        raise
    finally:
        child_end.close()
    settings = dict(spec.settings, pipe=pipe_handle, parent=parent_handle)
    try:
        assert popen.stdin is not None
        popen.stdin.write(json.dumps(settings).encode() + b"\n")
        popen.stdin.close()
    except OSError:
        pass  # it died at once: the sentinel shows it
    return ConnPipe(parent_end, multiprocess.connection.wait), WindowsWorker(popen, handle)


def describe_exit(code: int | None) -> str:
    """The exit status in words, NTSTATUS codes named."""
    if code is None:
        return "the snworker worker process stopped answering (its pipe closed)"
    status = code & 0xFFFFFFFF
    if status in _STATUSES:
        return (f"the snworker worker process ended with {_STATUSES[status]} "
                f"(exit code 0x{status:08X}). Call snworker.connect() for a new connection.")
    if status >= 0xC0000000:
        return (f"the snworker worker process crashed (NTSTATUS 0x{status:08X}). Call "
                "snworker.connect() for a new connection.")
    if status == 1:
        return ("the snworker worker process was terminated (exit code 1); something outside "
                "snworker may have ended it. Call snworker.connect() for a new connection.")
    return describe_status(status)
