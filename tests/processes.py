"""Process checks for tests, portable through psutil: no /proc, so they cannot pass by default."""

from __future__ import annotations

import sys
import time

import psutil
import pytest

# Tests that read /proc need Linux; tests that send POSIX signals need a POSIX system.
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")


def _under_wine() -> bool:
    if sys.platform != "win32":
        return False
    import ctypes

    return hasattr(ctypes.WinDLL("ntdll"), "wine_get_version")


UNDER_WINE = _under_wine()
# What cryptography (and so trustme, the stub's TLS authority and JWT keys) and mypy meet there.
NO_CRYPTOGRAPHY = "bcryptprimitives.dll is missing, which cryptography's Rust extension loads"


def wine_limit(reason: str) -> pytest.MarkDecorator:
    """Skip under Wine, for what Wine does not do as Windows does; `reason` says what."""
    return pytest.mark.skipif(UNDER_WINE, reason=f"Wine limit: {reason}")


def process_gone(pid: int, within: float) -> bool:
    """True when `pid` has exited (or is a zombie) within `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def kill(pid: int) -> None:
    """End process `pid` at once: SIGKILL on POSIX, TerminateProcess on Windows."""
    try:
        psutil.Process(pid).kill()
    except psutil.NoSuchProcess:
        pass


def descendants() -> list[psutil.Process]:
    """Every process this test process started, and theirs (zombies left out)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found
