"""Other POSIX systems: what the standard library offers, core dumps off."""

from __future__ import annotations

import sys

assert sys.platform != "win32"  # this module is only imported on POSIX systems

import resource
from collections.abc import Sequence

from snworker.worker.harden._common import APPLIED, Report


def apply() -> Report:
    """Turn core dumps off; say what else this OS does not get."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return (("no_core_dumps", APPLIED),
            ("not_dumpable", f"not available on {sys.platform}"))


def start_fresh(parent_pid: int, close: Sequence[int], follow_parent: bool = True) -> Report:
    """Nothing to do here."""
    del parent_pid, close, follow_parent
    return (("fresh_address_space", f"not available on {sys.platform}"),)
