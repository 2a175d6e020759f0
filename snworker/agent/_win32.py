"""Opening an agent's named pipe on Windows, once its server is checked to be this user's."""

from __future__ import annotations

import sys

assert sys.platform == "win32"  # this module is only imported on Windows

import _winapi
import ctypes
from ctypes import wintypes

from multiprocess.connection import PipeConnection, wait

from snworker.errors import WorkerStartError
from snworker.pipes import Pipe
from snworker.pipes.conn import ConnPipe
from snworker.pipes.windows import pid_user_sid, process_user_sid

_CONNECT_TIMEOUT_MS = 5000
_ERROR_PIPE_BUSY = 231
_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
_kernel32.GetNamedPipeServerProcessId.argtypes = [wintypes.HANDLE,
                                                  ctypes.POINTER(wintypes.ULONG)]


def open_agent(address: str) -> Pipe:
    """A pipe to the agent at `address`; WorkerStartError unless it runs as this user."""
    try:
        _winapi.WaitNamedPipe(address, _CONNECT_TIMEOUT_MS)
        handle = _winapi.CreateFile(
            address, _winapi.GENERIC_READ | _winapi.GENERIC_WRITE, 0, _winapi.NULL,
            _winapi.OPEN_EXISTING, _winapi.FILE_FLAG_OVERLAPPED, _winapi.NULL)
    except OSError as exc:
        raise WorkerStartError(f"no snworker agent answers at {address} ({exc})") from None
    try:
        _winapi.SetNamedPipeHandleState(handle, _winapi.PIPE_READMODE_MESSAGE, None, None)
        pid = wintypes.ULONG()
        if not _kernel32.GetNamedPipeServerProcessId(handle, ctypes.byref(pid)):
            raise ctypes.WinError(ctypes.get_last_error())
        owner = server_user(pid.value)
        if owner != process_user_sid(_winapi.GetCurrentProcess()):
            raise WorkerStartError(f"refusing the snworker agent at {address}: it runs as "
                                   f"another user ({owner})")
    except OSError as exc:
        _winapi.CloseHandle(handle)
        raise WorkerStartError(f"the snworker agent at {address} does not answer ({exc})"
                               ) from None
    except BaseException:
        _winapi.CloseHandle(handle)
        raise
    # The channel waits on the pipe and a sentinel together: the connection package's wait().
    return ConnPipe(PipeConnection(handle), wait)


def server_user(pid: int) -> str:
    """The SID of the user the pipe's server process `pid` runs as.

    Raises:
        WorkerStartError: its process cannot be opened (it belongs to another user, or a
            service), so it cannot be shown to be this user's.
    """
    try:
        return pid_user_sid(pid)
    except OSError as exc:
        raise WorkerStartError(
            f"refusing the snworker agent in process {pid}: its user cannot be read ({exc}); "
            "an agent of another user or a service is never used") from None
