"""macOS: core dumps off and ptrace(PT_DENY_ATTACH).

Another process can read a macOS process's memory only through its task port, which
task_for_pid hands out to privileged or specially entitled callers, not to ordinary processes of
the same user; PT_DENY_ATTACH refuses debuggers from then on (a process already traced when it
asks is ended by the kernel).
"""

from __future__ import annotations

import sys

assert sys.platform == "darwin"  # this module is only imported on macOS

import ctypes
import os
import resource
from collections.abc import Sequence

from snworker.worker.harden._common import APPLIED, Report

_PT_DENY_ATTACH = 31


def apply() -> Report:
    """Close this process's memory as far as macOS allows an unprivileged process to."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.ptrace(_PT_DENY_ATTACH, 0, None, 0) == 0:
        deny = APPLIED
    else:
        deny = f"ptrace(PT_DENY_ATTACH) failed: {os.strerror(ctypes.get_errno())}"
    return (("no_core_dumps", APPLIED), ("deny_attach", deny))


def start_fresh(parent_pid: int, close: Sequence[int], follow_parent: bool = True) -> Report:
    """Nothing to do: no handle on a macOS process's memory is open to other processes."""
    del parent_pid, close, follow_parent
    return (("fresh_address_space", f"not needed on {sys.platform}: memory is reached through "
             "task_for_pid, which ordinary processes of the same user are refused"),)
