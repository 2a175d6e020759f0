"""Windows: a process DACL that keeps the user's other processes out, and mitigation policies.

By default any process of the same user may open the worker with PROCESS_VM_READ and read its
memory. The worker replaces its own DACL, first thing, with one that lets the user's processes
only wait on it, read its basic information and end it (an OWNER RIGHTS entry takes away the
owner's implicit right to rewrite the DACL; an entry for the user's SID grants the same few
rights where OWNER RIGHTS is not honoured, as under Wine); SYSTEM keeps full access. Handles
opened before that keep their access: the parent's, which it needs to wait on and end the
worker, and, in the worker's first milliseconds, an attacker's; Windows has no fork() to start
afresh from.
"""

from __future__ import annotations

import sys

assert sys.platform == "win32"

import ctypes
from collections.abc import Sequence
from ctypes import wintypes

from snworker.pipes.windows import process_user_sid
from snworker.worker.harden._common import APPLIED, Report

# Wait on it (SYNCHRONIZE), query limited information, terminate: nothing more, for the owner
# (OWNER RIGHTS, which also takes away its implicit right to rewrite the DACL) and for the
# user's SID (the same rights, stated for the user's processes whoever owns the object).
_USER_RIGHTS = "0x00101001"
_PROCESS_SDDL = "D:P(A;;{rights};;;OW){user}(A;;0x001FFFFF;;;SY)"
_SDDL_REVISION_1 = 1
_SE_KERNEL_OBJECT = 6
_DACL_SECURITY_INFORMATION = 0x00000004
_PROTECTED_DACL_SECURITY_INFORMATION = 0x80000000
_PROCESS_EXTENSION_POINT_DISABLE_POLICY = 6
_PROCESS_IMAGE_LOAD_POLICY = 10
_NO_REMOTE_IMAGES = 0x1
_NO_LOW_MANDATORY_LABEL_IMAGES = 0x2
_SEM_FAILCRITICALERRORS = 0x0001
_SEM_NOGPFAULTERRORBOX = 0x0002

_advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
_kernel32.GetCurrentProcess.restype = wintypes.HANDLE
_kernel32.LocalFree.argtypes = [ctypes.c_void_p]
_kernel32.SetProcessMitigationPolicy.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
_kernel32.SetProcessMitigationPolicy.restype = wintypes.BOOL
_kernel32.CreateTimerQueueTimer.argtypes = [
    ctypes.POINTER(wintypes.HANDLE), wintypes.HANDLE, ctypes.c_void_p, ctypes.c_void_p,
    wintypes.DWORD, wintypes.DWORD, wintypes.ULONG]
_kernel32.CreateTimerQueueTimer.restype = wintypes.BOOL
_WT_EXECUTEONLYONCE = 0x00000008
_CURRENT_PROCESS = ctypes.c_void_p(-1)  # GetCurrentProcess()'s pseudo-handle
_advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW.argtypes = [
    wintypes.LPCWSTR, wintypes.DWORD, ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
_advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW.restype = wintypes.BOOL
_advapi32.GetSecurityDescriptorDacl.argtypes = [
    ctypes.c_void_p, ctypes.POINTER(wintypes.BOOL), ctypes.POINTER(ctypes.c_void_p),
    ctypes.POINTER(wintypes.BOOL)]
_advapi32.GetSecurityDescriptorDacl.restype = wintypes.BOOL
_advapi32.SetSecurityInfo.argtypes = [
    wintypes.HANDLE, ctypes.c_int, wintypes.DWORD, ctypes.c_void_p, ctypes.c_void_p,
    ctypes.c_void_p, ctypes.c_void_p]
_advapi32.SetSecurityInfo.restype = wintypes.DWORD


def apply() -> Report:
    """Close this process to the user's other processes; say what could not be done."""
    return (
        ("memory_closed", _close_memory()),
        ("mitigations", _mitigations()),
        ("no_fault_dialogs", _quiet_faults()),
        ("no_crash_dumps", "not changed: Windows Error Reporting's LocalDumps, if an "
                           "administrator turned them on, are a machine-wide setting"),
    )


def start_fresh(parent_pid: int, close: Sequence[int], follow_parent: bool = True) -> Report:
    """Nothing to start afresh from: Windows has no fork()."""
    del parent_pid, close, follow_parent
    return (("fresh_address_space", "not available on Windows: a handle opened on the worker "
             "before its DACL was set keeps its access"),)


def end_within(seconds: float) -> str:
    """Have Windows end this process in `seconds`, whatever its Python threads are doing.

    A thread-pool timer calls TerminateProcess(GetCurrentProcess(), ...) itself: its callback
    receives (parameter, fired) in the same registers as TerminateProcess's (handle, exit
    code), so no Python code runs and no lock is needed when it fires. The worker arms it when
    its parent is gone, then revokes: a revocation stuck in a C call that holds the GIL, or in
    a DNS lookup that no timeout bounds, cannot keep it alive. "" once armed, else why not.
    """
    timer = wintypes.HANDLE()
    terminate = ctypes.cast(_kernel32.TerminateProcess, ctypes.c_void_p)
    if not _kernel32.CreateTimerQueueTimer(ctypes.byref(timer), None, terminate,
                                           _CURRENT_PROCESS, max(int(seconds * 1000), 0), 0,
                                           _WT_EXECUTEONLYONCE):
        return f"not armed: {ctypes.WinError(ctypes.get_last_error())}"
    return APPLIED


def process_sddl() -> str:
    """The worker's process DACL, in SDDL."""
    try:
        user = f"(A;;{_USER_RIGHTS};;;{process_user_sid(_kernel32.GetCurrentProcess())})"
    except OSError:
        user = ""  # OWNER RIGHTS alone still admits the user's processes
    return _PROCESS_SDDL.format(rights=_USER_RIGHTS, user=user)


def _close_memory(sddl: str | None = None) -> str:
    descriptor = ctypes.c_void_p()
    if not _advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl or process_sddl(), _SDDL_REVISION_1, ctypes.byref(descriptor), None):
        return f"the DACL could not be built: {ctypes.WinError(ctypes.get_last_error())}"
    try:
        present, defaulted = wintypes.BOOL(), wintypes.BOOL()
        dacl = ctypes.c_void_p()
        if not _advapi32.GetSecurityDescriptorDacl(descriptor, ctypes.byref(present),
                                                   ctypes.byref(dacl), ctypes.byref(defaulted)):
            return f"the DACL could not be read: {ctypes.WinError(ctypes.get_last_error())}"
        error = _advapi32.SetSecurityInfo(
            _kernel32.GetCurrentProcess(), _SE_KERNEL_OBJECT,
            _DACL_SECURITY_INFORMATION | _PROTECTED_DACL_SECURITY_INFORMATION, None, None, dacl,
            None)
        return APPLIED if error == 0 else f"SetSecurityInfo failed: {ctypes.WinError(error)}"
    finally:
        _kernel32.LocalFree(descriptor)


def _mitigations() -> str:
    failed = []
    for policy, flags, name in (
        (_PROCESS_EXTENSION_POINT_DISABLE_POLICY, 0x1, "extension points"),
        (_PROCESS_IMAGE_LOAD_POLICY, _NO_REMOTE_IMAGES | _NO_LOW_MANDATORY_LABEL_IMAGES,
         "image load"),
    ):
        value = wintypes.DWORD(flags)
        if not _kernel32.SetProcessMitigationPolicy(policy, ctypes.byref(value),
                                                    ctypes.sizeof(value)):
            failed.append(f"{name} ({ctypes.WinError(ctypes.get_last_error())})")
    return APPLIED if not failed else "not applied: " + ", ".join(failed)


def _quiet_faults() -> str:
    _kernel32.SetErrorMode(_SEM_FAILCRITICALERRORS | _SEM_NOGPFAULTERRORBOX)
    return APPLIED
