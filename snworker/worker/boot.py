"""The worker's entry point, named by module: the bootstrap the parent starts imports it.

    harden (this process)  ->  [Linux: fork; the first process supervises]  ->  open the pipe
      ->  watch the parent  ->  import the rest of the worker  ->  serve

Hardening comes before anything else that runs here, and before any secret exists; the rest of
the worker (requests, tenacity, the token store) is imported only afterwards. Settings come
from the parent as plain JSON: the pipe, the parent's sentinel, the framing.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from typing import Any

from snworker.messages import EXIT_REFUSED, Error
from snworker.pipes import Pipe
from snworker.worker import harden


def main(settings: dict[str, Any]) -> None:
    """Harden, start afresh where the OS allows it, then serve the parent until it is done."""
    close = [] if sys.platform == "win32" else [int(settings["pipe"]), int(settings["death"]),
                                                *map(int, settings.get("secret_fds", ()))]
    agent = settings.get("agent")
    try:
        report = harden.apply()
        report += harden.start_fresh(int(settings["parent_pid"]), close,
                                     follow_parent=agent is None)
        pipe = open_pipe(settings)
        from snworker.worker import secrets

        secrets.PASSED_FDS = frozenset(int(fd) for fd in settings.get("secret_fds", ()))
        if agent is not None:
            from snworker.worker.agent import run  # only now: nothing of it runs before hardening

            # A foreground agent is its command's: it ends, revoking, when that process ends
            # in any way (Ctrl-C, SIGKILL, SIGHUP when its terminal closes).
            follow = (functools.partial(_watch_parent, settings) if agent.get("foreground")
                      else None)
            run(report, pipe, str(agent["address"]), float(agent["idle"]), _on_sigterm,
                agent.get("allow"), limits=dict(agent.get("limits") or {}), follow=follow,
                own_directory=bool(agent.get("own_directory")))
            os._exit(0)
    except harden.Refused as refusal:
        _refuse(settings, str(refusal))
    from snworker.worker.main import Worker  # only now: nothing of it runs before hardening

    worker = Worker((*report, ("parent_death", "")))
    _watch_parent(settings, worker.parent_gone)
    worker.serve(pipe)
    os._exit(0)


def _on_sigterm(stop: Any) -> None:
    """Run `stop()` when the process is asked to end (SIGTERM; Ctrl-Break on Windows)."""
    import signal

    name = "SIGBREAK" if sys.platform == "win32" else "SIGTERM"
    signal.signal(getattr(signal, name), lambda signum, frame: stop())


def open_pipe(settings: dict[str, Any]) -> Pipe:
    """This end of the pipe, framed as the parent chose."""
    if sys.platform != "win32" and settings.get("io") == "fd":
        from snworker.pipes.fd import FdPipe

        return FdPipe(int(settings["pipe"]))
    from snworker.pipes.conn import ConnPipe

    if sys.platform == "win32":
        from multiprocessing.connection import PipeConnection

        return ConnPipe(PipeConnection(int(settings["pipe"])))
    from multiprocessing.connection import Connection

    return ConnPipe(Connection(int(settings["pipe"])))


def _refuse(settings: dict[str, Any], reason: str) -> None:
    from snworker.errors import KIND_START

    try:
        open_pipe(settings).send(Error(0, KIND_START, reason))
    finally:
        os._exit(EXIT_REFUSED)


def _watch_parent(settings: dict[str, Any], gone: Any) -> None:
    """Call `gone()` from a thread when the parent process ends, however it ends."""
    if sys.platform == "win32":
        import _winapi

        handle = int(settings["parent"])

        def wait() -> None:
            _winapi.WaitForSingleObject(handle, _winapi.INFINITE)
            gone()
    else:
        fd = int(settings["death"])

        def wait() -> None:
            while True:
                try:
                    if not os.read(fd, 64):
                        break
                except InterruptedError:
                    continue
                except OSError:
                    break
            gone()

    threading.Thread(target=wait, name="snworker-parent-watch", daemon=True).start()
