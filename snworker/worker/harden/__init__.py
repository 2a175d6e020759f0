"""Closing the worker's memory to other processes, one module per OS, each reporting what it did.

    _linux   core dumps off, not dumpable (PR_SET_DUMPABLE 0), refuses to start when traced,
             then a fork into an address space that no handle opened earlier refers to
    _darwin  core dumps off, ptrace(PT_DENY_ATTACH)
    _win32   a process DACL that keeps other processes of the same user out of its memory and
             threads, process mitigation policies, no fault dialogs

`isolated_start()` checks, on every OS, that the interpreter started as asked (`-I -S`, the
path it was given) and says where it did not, for example an embeddable Python's `._pth` file.
`apply()` runs first thing in the worker, before any secret exists in it. A report is a tuple of
(protection, status) pairs: status "" when the protection was applied, else why it was not.
"""

from __future__ import annotations

import sys

from snworker.worker.harden._common import Refused, Report, isolated_start

if sys.platform == "linux":
    from snworker.worker.harden._linux import apply, start_fresh
elif sys.platform == "darwin":
    from snworker.worker.harden._darwin import apply, start_fresh
elif sys.platform == "win32":
    from snworker.worker.harden._win32 import apply, start_fresh
else:  # other POSIX systems: what the standard library offers
    from snworker.worker.harden._posix import apply, start_fresh

__all__ = ["Refused", "Report", "apply", "isolated_start", "start_fresh"]
