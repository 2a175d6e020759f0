"""Starting the worker: an isolated interpreter whose start owes nothing to the parent's state.

The worker is started as `python -I -S -c <bootstrap>`: no `PYTHON*` variables, no user site,
no site-packages `.pth` files, no current directory on its path. Its `sys.path` is the
directories where snworker and its dependencies are installed, found once, when snworker is
imported, from where those modules really are (so vendored installs work, and a module planted
on `sys.path` later is never picked up). Its environment is an allow-list: no `LD_*`, `DYLD_*`,
`SSLKEYLOGFILE`, proxy or CA variables (proxy and CA settings reach it as explicit values). Its
entry point is named by module (`snworker.worker.boot`), never a pickled callable, and the
executable is fixed when snworker is imported unless `set_worker_executable()` names another
before the first worker starts.

The bootstrap reads its settings as one JSON line on stdin: the pipe's descriptor or handle,
the parent's sentinel, the framing, and the path. One module per OS does the rest
(`_posix`, `_win32`), behind the same `launch()`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from snworker.errors import WorkerStartError
from snworker.pipes import IoMode, Pipe

# Modules the worker imports, whose directories make up its sys.path.
WORKER_PACKAGES = ("snworker", "requests", "urllib3", "idna", "charset_normalizer", "certifi",
                   "tenacity", "truststore", "ahocorasick_rs",
                   # optional: JWT signing (the `jwt` extra), the desktop keyring (`keyring`)
                   "cryptography", "cffi", "keyring", "jaraco", "secretstorage", "jeepney")
WORKER_FLAG = "--snworker-worker"
# The environment a worker gets: what an interpreter needs to find its own files, temp
# directory and locale. Everything else (LD_*, DYLD_*, PYTHON*, SSLKEYLOGFILE, *_PROXY, *_CA_*)
# stays in the parent.
ENVIRONMENT = frozenset({
    "HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LOGNAME", "PATH", "TMPDIR", "TZ", "USER",
    # Where secrets are found (Secret.systemd; Secret.keyring's session bus): names of places,
    # nothing that changes how the interpreter or its libraries load.
    "CREDENTIALS_DIRECTORY", "DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR",
    # Windows: sockets and crypto fail to initialise without SYSTEMROOT.
    "APPDATA", "COMPUTERNAME", "HOMEDRIVE", "HOMEPATH", "LOCALAPPDATA", "NUMBER_OF_PROCESSORS",
    "PROCESSOR_ARCHITECTURE", "PROGRAMDATA", "SYSTEMDRIVE", "SYSTEMROOT", "TEMP", "TMP",
    "USERNAME", "USERPROFILE", "WINDIR",
})
BOOTSTRAP = (
    "import sys, json; settings = json.loads(sys.stdin.buffer.readline(1 << 20)); "
    "sys.path[:0] = settings['path']; "
    "from snworker.worker.boot import main; main(settings)"
)
# How long a started interpreter may take to read its settings.
SETTINGS_TIMEOUT = 30.0


class WorkerProcess(Protocol):
    """The process the parent started. On Linux it supervises the one that holds the tokens."""

    @property
    def pid(self) -> int:
        """The started process's id."""
        ...

    @property
    def sentinel(self) -> int:
        """A descriptor (POSIX) or handle (Windows) that becomes ready when the worker exits."""
        ...

    @property
    def exitcode(self) -> int | None:
        """The exit status once it has exited (negative: killed by that signal, on POSIX)."""
        ...

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the exit; True once it has exited."""
        ...

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM; TerminateProcess on Windows)."""
        ...

    def kill(self) -> None:
        """Stop it now."""
        ...

    def close(self) -> None:
        """Release the descriptors and handles kept for it."""
        ...


class StartedProcess:
    """What both OS modules' workers share: a `subprocess.Popen` to wait on."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen

    @property
    def pid(self) -> int:
        """The started process's id."""
        return self._popen.pid

    @property
    def exitcode(self) -> int | None:
        """The exit status, or None while it runs."""
        return self._popen.poll()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; True once it has exited."""
        try:
            self._popen.wait(max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return False
        return True


@dataclass(frozen=True, slots=True)
class Launch:
    """What the OS module needs to start a worker."""

    command: tuple[str, ...]
    environment: dict[str, str]
    settings: dict[str, Any]
    io: IoMode
    detached: bool = False  # an agent: no output to the terminal it was started from
    fds: tuple[int, ...] = ()  # inherited under the same numbers (secrets by descriptor)


def _package_directory(name: str) -> str | None:
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None) if module is not None else None
    if spec is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return str(Path(next(iter(spec.submodule_search_locations))).resolve().parent)
    return str(Path(spec.origin).resolve().parent) if spec.origin else None


def _worker_path() -> tuple[str, ...]:
    found: list[str] = []
    for name in WORKER_PACKAGES:
        directory = _package_directory(name)
        if directory is not None and directory not in found:
            found.append(directory)
    return tuple(found)


# Fixed when snworker is imported: later changes to sys.path, sys.executable or sys.modules in
# the parent do not reach any worker.
_PATH = _worker_path()
_state = {"executable": sys.executable, "started": False}
_state_lock = threading.Lock()


def worker_path() -> tuple[str, ...]:
    """The directories the worker's sys.path starts with."""
    return _PATH


def set_worker_executable(path: str | os.PathLike[str]) -> None:
    """Use the Python interpreter at `path` to run workers (for embedded interpreters).

    Only before the first worker starts: afterwards the worker's interpreter is settled, so code
    that runs later in the application cannot swap it.

    Raises:
        RuntimeError: a worker has already been started.
        ValueError: `path` is not an executable file.
    """
    executable = os.fspath(path)
    if not os.path.isfile(executable) or not os.access(executable, os.X_OK):
        raise ValueError(f"not an executable file: {executable!r}")
    with _state_lock:
        if _state["started"]:
            raise RuntimeError("set_worker_executable() must be called before the first "
                               "connect(): a worker has already been started")
        _state["executable"] = executable


_freeze_support = threading.Event()


def freeze_support() -> None:
    """Let a frozen application (PyInstaller, cx_Freeze...) start snworker workers.

    Call it first thing in the application's main block, as multiprocessing's freeze_support():
    when the application is started as a worker, it runs the worker and exits here.
    """
    _freeze_support.set()
    if getattr(sys, "frozen", False) and sys.argv[1:2] == [WORKER_FLAG]:
        settings = json.loads(sys.stdin.buffer.readline(1 << 20))
        from snworker.worker.boot import main  # the line that names the worker's entry point

        main(settings)
        sys.exit(0)


def worker_environment(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The allow-listed part of `environ` (names compared case-insensitively on Windows)."""
    if sys.platform == "win32":
        return {k: v for k, v in environ.items() if k.upper() in ENVIRONMENT}
    return {k: v for k, v in environ.items() if k in ENVIRONMENT}


def launch(io: IoMode, agent: dict[str, object] | None = None,
           fds: tuple[int, ...] = ()) -> tuple[Pipe, WorkerProcess]:
    """Start a worker and return the parent's end of the pipe to it, and the process.

    With `agent` settings (address, idle), the worker becomes an agent that outlives this
    process: it runs detached, with no output to this process's terminal. `fds` are
    descriptors it inherits under the same numbers (POSIX only: secrets passed by descriptor).
    """
    with _state_lock:
        _state["started"] = True
        executable = str(_state["executable"])
    if getattr(sys, "frozen", False):
        if not _freeze_support.is_set():
            raise WorkerStartError(
                "this is a frozen application: call snworker.freeze_support() first thing in "
                "its main block, so that it can start snworker's worker")
        command: tuple[str, ...] = (executable, WORKER_FLAG)
    else:
        command = (executable, "-I", "-S", "-c", BOOTSTRAP)
    settings: dict[str, Any] = {"path": list(_PATH), "parent_pid": os.getpid(), "io": io}
    if agent is not None:
        settings["agent"] = agent
    if fds:
        if sys.platform == "win32":
            raise WorkerStartError("a secret passed by descriptor works on Linux and macOS only")
        settings["secret_fds"] = list(fds)
    spec = Launch(command, worker_environment(os.environ), settings, io,
                  detached=agent is not None and not agent.get("foreground"), fds=fds)
    if sys.platform == "win32":
        from snworker.spawn import _win32 as platform_launch
    else:
        from snworker.spawn import _posix as platform_launch
    try:
        return platform_launch.launch(spec)
    except OSError as exc:
        raise WorkerStartError(f"could not start the snworker worker process: {exc}") from exc


def describe_exit(code: int | None) -> str:
    """The worker's exit status in words, for WorkerCrashedError."""
    if sys.platform == "win32":
        from snworker.spawn._win32 import describe_exit as describe
    else:
        from snworker.spawn._posix import describe_exit as describe
    return describe(code)
