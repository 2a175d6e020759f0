"""Starting the worker on Linux and macOS.

The worker gets three descriptors: its end of the pipe, the read end of the parent's death
pipe (EOF when the parent is gone: its watchdog exits then), and the write end of the sentinel
pipe, which it never writes: the parent sees EOF on the read end once every worker process has
exited. The worker starts in a session of its own, so a Ctrl-C at the terminal reaches the
application, which decides, and not the worker.
"""

from __future__ import annotations

import sys

assert sys.platform != "win32"  # this module is only imported on POSIX systems

import json
import os
import signal
import subprocess
from typing import TYPE_CHECKING

import multiprocess
import multiprocess.connection

from snworker.messages import describe_status
from snworker.pipes.conn import ConnPipe
from snworker.pipes.fd import FdPipe
from snworker.spawn import StartedProcess

if TYPE_CHECKING:
    from snworker.pipes import Pipe
    from snworker.spawn import Launch


class PosixWorker(StartedProcess):
    """The started worker process."""

    def __init__(self, popen: subprocess.Popen[bytes], sentinel: int, death: int) -> None:
        super().__init__(popen)
        self._sentinel = sentinel
        self._death = death

    @property
    def sentinel(self) -> int:
        """Readable (EOF) once the worker has exited."""
        return self._sentinel

    def terminate(self) -> None:
        """SIGTERM (the supervisor passes it on to the worker)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL (the worker dies with its supervisor)."""
        self._signal(signal.SIGKILL)

    def close(self) -> None:
        """Close the sentinel and death-pipe descriptors."""
        for fd in (self._sentinel, self._death):
            try:
                os.close(fd)
            except OSError:
                pass
        self._sentinel = self._death = -1

    def _signal(self, signum: int) -> None:
        if self._popen.returncode is None:
            try:
                self._popen.send_signal(signum)
            except ProcessLookupError:
                pass


def launch(spec: Launch) -> tuple[Pipe, PosixWorker]:
    """Start the worker with its descriptors and settings."""
    parent_end, child_end = multiprocess.Pipe(duplex=True)
    death_r, death_w = os.pipe()
    sentinel_r, sentinel_w = os.pipe()
    passed = (child_end.fileno(), death_r, sentinel_w, *spec.fds)
    settings = dict(spec.settings, pipe=child_end.fileno(), death=death_r)
    try:
        quiet = subprocess.DEVNULL if spec.detached else None
        popen = subprocess.Popen(
            spec.command, env=spec.environment, pass_fds=passed, close_fds=True,
            stdin=subprocess.PIPE, stdout=quiet, stderr=quiet, cwd=os.path.abspath(os.sep),
            start_new_session=True,
        )
    except BaseException:
        parent_end.close()
        for fd in (death_r, death_w, sentinel_r):
            os.close(fd)
        raise
    finally:
        child_end.close()
        os.close(sentinel_w)
    os.close(death_r)
    worker = PosixWorker(popen, sentinel_r, death_w)
    try:
        assert popen.stdin is not None
        popen.stdin.write(json.dumps(settings).encode() + b"\n")
        popen.stdin.close()
    except OSError:
        pass  # it died at once: the sentinel shows it
    pipe: Pipe
    if spec.io == "fd":
        pipe = FdPipe(parent_end.fileno(), parent_end.close)
    else:
        pipe = ConnPipe(parent_end, multiprocess.connection.wait)
    return pipe, worker


def describe_exit(code: int | None) -> str:
    """The exit status in words."""
    if code is None:
        return "the snworker worker process stopped answering (its pipe closed)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return (
            f"the snworker worker process was killed by {name} (exit code {code}); this usually "
            "means something outside snworker ended it (the OOM killer, a kill command, or a "
            "supervisor). Call snworker.connect() for a new connection."
        )
    return describe_status(code)
