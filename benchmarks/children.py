"""Entry points of the reference child processes (the pipe echo and the bare spawn).

They run in spawned children, so this module imports nothing heavy at its top: a child pays
only for what its entry point imports.
"""

from __future__ import annotations

from typing import Any


def echo(conn: Any) -> None:
    """Send every frame back as it came, until an empty frame or EOF."""
    try:
        while True:
            frame = conn.recv_bytes()
            if not frame:
                return
            conn.send_bytes(frame)
    except EOFError:
        return


def ready_after_import(conn: Any) -> None:
    """Import requests, report ready with one byte, then wait to be released."""
    import requests  # noqa: F401  (the import is the work being timed)

    conn.send_bytes(b"1")
    try:
        conn.recv_bytes()
    except EOFError:
        return
