"""Linux: core dumps off, not dumpable, never traced, then a fresh address space.

PR_SET_DUMPABLE 0 refuses ptrace attach and opening /proc/<pid>/mem to processes of the same
user without CAP_SYS_PTRACE. But Linux checks access to /proc/<pid>/mem when it is opened, not
on each read: a handle opened in the interpreter's first milliseconds, before this ran, would
still read. So the process that hardened forks at once: the child, where the worker runs and
every secret will live, has an address space no earlier handle refers to, and it is born not
dumpable. The first process stays as its supervisor, holding nothing: it passes SIGTERM on,
and exits with the worker's status. A tracer attached before hardening is seen in TracerPid,
and the worker refuses to start.
"""

from __future__ import annotations

import sys

assert sys.platform == "linux"  # this module is only imported on Linux

import contextlib
import ctypes
import os
import resource
import signal
from collections.abc import Sequence

from snworker.worker.harden._common import APPLIED, Refused, Report

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_M_ARENA_MAX = -8
# Seconds an orphaned worker has to revoke its grant before its supervisor kills it.
_ORPHAN_GRACE = 2

_libc = ctypes.CDLL(None, use_errno=True)


def apply() -> Report:
    """Close this process's memory; raise Refused if that fails or it is being traced."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise Refused(f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(ctypes.get_errno())}")
    traced = _refuse_if_traced()
    # A malloc arena per request thread would keep every large body's memory for good.
    with contextlib.suppress(AttributeError):
        _libc.mallopt(_M_ARENA_MAX, 2)
    return (("no_core_dumps", APPLIED), ("not_dumpable", APPLIED), ("not_traced", traced))


def start_fresh(parent_pid: int, close: Sequence[int], follow_parent: bool = True) -> Report:
    """Fork; return in the child, in a fresh address space. This process supervises it.

    `close` are the descriptors only the child may keep (the pipe, the death pipe). An agent
    does not `follow_parent`: it outlives the process that started it.
    """
    supervisor = os.getpid()
    child = os.fork()
    if child:
        _supervise(child, parent_pid if follow_parent else None, close)  # never returns
    # Dies with its supervisor: the supervisor is single-threaded, so this is exact.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != supervisor:
        os._exit(0)
    return (("fresh_address_space", _refuse_if_traced()),)


def _refuse_if_traced() -> str:
    try:
        with open("/proc/self/status", "rb") as status:
            tracer = next((int(line.split()[1]) for line in status
                           if line.startswith(b"TracerPid:")), 0)
    except OSError as exc:
        return f"unknown: /proc/self/status is unreadable ({exc.strerror})"
    if tracer:
        raise Refused(f"the worker is being traced by process {tracer}; it will not hold "
                      "tokens where a debugger can read them")
    return APPLIED


def _supervise(child: int, parent_pid: int | None, close: Sequence[int]) -> None:
    for fd in close:
        with contextlib.suppress(OSError):
            os.close(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: _forward(child, signal.SIGTERM))

    # PDEATHSIG fires when the *thread* that started us ends, not only the parent process, so
    # the signal only means "look". When the parent is gone, the worker sees it too and revokes
    # its grant on the way out; it gets a moment for that before it is killed.
    def on_parent_death(signum: int, frame: object) -> None:
        if os.getppid() != parent_pid:
            signal.alarm(_ORPHAN_GRACE)

    if parent_pid is not None:
        signal.signal(signal.SIGALRM, lambda signum, frame: _forward(child, signal.SIGKILL))
        signal.signal(signal.SIGUSR2, on_parent_death)
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGUSR2, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before the line above
            signal.alarm(_ORPHAN_GRACE)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            os._exit(0)
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
        os.kill(os.getpid(), signum)  # end as the worker ended, for the parent to see
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def _forward(child: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(child, signum)
