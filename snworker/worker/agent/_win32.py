"""The agent's named pipe on Windows: a DACL that admits only this user; each client checked.

The pipe is created with a protected DACL granting access to this user's SID alone (and the
first instance flag, so no other process can have created it first), and refuses remote
clients. Each client's process token is then checked to be this user's before anything it sends
is read.
"""

from __future__ import annotations

import sys

assert sys.platform == "win32"  # this module is only imported on Windows

import _winapi
import ctypes
import logging
from ctypes import wintypes
from multiprocessing.connection import PipeConnection

from snworker.pipes import Pipe
from snworker.pipes.conn import ConnPipe
from snworker.pipes.windows import pid_user_sid, process_user_sid, security_attributes
from snworker.worker.agent.limits import ClientBudget

logger = logging.getLogger("snworker.worker")

_FILE_FLAG_FIRST_PIPE_INSTANCE = 0x00080000
_PIPE_REJECT_REMOTE_CLIENTS = 0x00000008
_BUFFER = 1 << 16
_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
_kernel32.GetNamedPipeClientProcessId.argtypes = [wintypes.HANDLE,
                                                  ctypes.POINTER(wintypes.ULONG)]


class PipeListener:
    """Instances of a named pipe that only this user can open, checked once more per client."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._sid = process_user_sid(_winapi.GetCurrentProcess())
        self._attributes = security_attributes(f"D:P(A;;GA;;;{self._sid})")
        self._first = True
        self._closed = False
        self._next = self._instance()

    def _instance(self) -> int:
        mode = _winapi.PIPE_ACCESS_DUPLEX | _winapi.FILE_FLAG_OVERLAPPED
        if self._first:
            mode |= _FILE_FLAG_FIRST_PIPE_INSTANCE
            self._first = False
        return _winapi.CreateNamedPipe(
            self.address, mode,
            _winapi.PIPE_TYPE_MESSAGE | _winapi.PIPE_READMODE_MESSAGE | _winapi.PIPE_WAIT
            | _PIPE_REJECT_REMOTE_CLIENTS,
            _winapi.PIPE_UNLIMITED_INSTANCES, _BUFFER, _BUFFER, _winapi.NMPWAIT_WAIT_FOREVER,
            ctypes.addressof(self._attributes))

    def accept(self, budget: ClientBudget) -> tuple[Pipe, str, bool] | None:
        """The next client of this user; None (and the instance closed) for anyone else.

        `budget` is not applied here: a connection's `recv_bytes` reads a message whole, and
        grows it as it arrives (the number of clients is bounded all the same).
        """
        if self._closed:
            raise OSError("the listener is closed")
        handle, self._next = self._next, self._instance()
        overlapped = _winapi.ConnectNamedPipe(handle, overlapped=True)
        try:
            overlapped.GetOverlappedResult(True)
        except OSError as exc:
            if exc.winerror != _winapi.ERROR_PIPE_CONNECTED:
                _winapi.CloseHandle(handle)
                raise
        pid = wintypes.ULONG()
        try:
            if not _kernel32.GetNamedPipeClientProcessId(handle, ctypes.byref(pid)):
                raise ctypes.WinError(ctypes.get_last_error())
            if pid_user_sid(pid.value) != self._sid:
                logger.warning("snworker agent: refused a client of another user")
                _winapi.CloseHandle(handle)
                return None
        except OSError as exc:
            logger.warning("snworker agent: refused a client whose user is unknown (%s)", exc)
            _winapi.CloseHandle(handle)
            return None
        return ConnPipe(PipeConnection(handle)), f"process {pid.value}", True

    def gone(self) -> bool:
        """A named pipe cannot be removed from under its server."""
        return False

    def close(self) -> None:
        """Stop listening."""
        self._closed = True
        _winapi.CloseHandle(self._next)


def listen(address: str, own_directory: bool = False) -> PipeListener:
    """Listen on the named pipe `address` (a named pipe has no directory to own)."""
    return PipeListener(address)
