"""What every OS's hardening module shares: the report's shape and the refusal."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

Report = tuple[tuple[str, str], ...]

APPLIED = ""


class Refused(Exception):
    """The worker must not start (for example, it is being traced)."""


def isolated_start(given: Sequence[str]) -> str:
    """Whether this interpreter started as the worker asked: "" if so, else how it did not.

    The worker is started with `-I -S` and puts `given` first on `sys.path`: then `site` is not
    imported (so no `.pth` file was read), and the rest of `sys.path` is the standard library.
    An interpreter can override that: an embeddable Python's `._pth` file fixes `sys.path`, and
    its `import site` line imports `site` whatever the flags say. Checked, not assumed.
    """
    if getattr(sys, "frozen", False):
        return "not checked: a frozen application starts with its own bundle's path"
    found = []
    if "site" in sys.modules:
        found.append("site was imported, so the .pth files in site-packages were read")
    if not sys.flags.isolated:
        found.append("not started isolated (-I)")
    if sys.path[:len(given)] != list(given):
        found.append("sys.path does not start with the path snworker gave")
    extra = [entry for entry in sys.path[len(given):] if not _standard_library(entry)]
    if extra:
        found.append("sys.path also has " + ", ".join(extra))
    if not found:
        return APPLIED
    pth = _path_file()
    cause = f"overridden by {pth}" if pth else "not as started"
    return f"{cause}: " + "; ".join(found)


def _standard_library(entry: str) -> bool:
    path = os.path.normcase(os.path.abspath(entry or os.curdir))
    if {"site-packages", "dist-packages"} & set(path.split(os.sep)):
        return False
    for prefix in {sys.base_prefix, sys.base_exec_prefix}:
        root = os.path.normcase(os.path.abspath(prefix))
        if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
            return True
    return False


def _path_file() -> str | None:
    """The `._pth` file beside the interpreter that fixes its sys.path, if there is one."""
    directory = os.path.dirname(sys.executable)
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    return next((os.path.join(directory, name) for name in sorted(names)
                 if name.endswith("._pth")), None)
