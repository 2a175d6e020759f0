"""Reading a secret from the reference the parent sent: a file, a descriptor, a systemd
credential, the desktop keyring. The secret exists only here, in a bytearray the caller wipes.
"""

from __future__ import annotations

import importlib
import os
import select
import stat
import sys
import time
from typing import Any

from snworker.worker.failures import AuthorizationFailed

# A client secret or a PEM key is a few kilobytes at most.
MAX_SECRET = 64 * 1024
# The descriptors the parent passed for Secret.fd when it started this worker (set by boot.py):
# no other descriptor, such as the worker's own pipe, is read as a secret.
PASSED_FDS: frozenset[int] = frozenset()


def wipe(buffer: bytearray) -> None:
    """Overwrite `buffer` in place (the one copy Python lets us wipe), then empty it."""
    buffer[:] = bytes(len(buffer))
    buffer.clear()


def read_secret(reference: object, what: str, timeout: float) -> bytearray:
    """The secret `reference` names, without a trailing line break; AuthorizationFailed
    ("secret_unreadable") naming the reference when it cannot be read or is unsafe."""
    if not isinstance(reference, tuple) or not reference:
        raise _unreadable(what, "the reference is malformed")
    kind, where = reference[0], reference[1:]
    if kind == "file" and len(where) == 1 and isinstance(where[0], str):
        secret = _read_file(where[0], what, owner_only=True)
    elif kind == "systemd" and len(where) == 1 and isinstance(where[0], str):
        secret = _read_file(_credential_path(where[0], what), what, owner_only=False)
    elif kind == "fd" and len(where) == 1 and isinstance(where[0], int):
        secret = _read_fd(where[0], what, timeout)
    elif kind == "keyring" and len(where) == 2 and all(isinstance(w, str) for w in where):
        secret = _read_keyring(str(where[0]), str(where[1]), what)
    else:
        raise _unreadable(what, f"unknown secret reference {kind!r}")
    while secret and secret[-1] in b"\r\n":
        del secret[-1]
    if not secret:
        raise _unreadable(what, f"{_describe(reference)} is empty")
    return secret


def _unreadable(what: str, why: str) -> AuthorizationFailed:
    return AuthorizationFailed(f"cannot read the {what}: {why}", "secret_unreadable")


def _describe(reference: tuple[Any, ...]) -> str:
    kind = reference[0]
    if kind == "file":
        return f"the file {reference[1]}"
    if kind == "systemd":
        return f"the systemd credential {reference[1]!r}"
    if kind == "fd":
        return f"descriptor {reference[1]}"
    return f"the keyring entry {reference[1]!r} / {reference[2]!r}"


def _read_file(path: str, what: str, owner_only: bool) -> bytearray:
    if not os.path.isabs(path):
        raise _unreadable(what, f"{path!r} is not an absolute path")
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0) \
        | getattr(os, "O_NONBLOCK", 0)  # a FIFO planted at the path must not hang the worker
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _unreadable(what, f"{path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)  # of what was opened: no swap between a check and the read
        if not stat.S_ISREG(info.st_mode):
            raise _unreadable(what, f"{path} is not a regular file")
        if owner_only and sys.platform != "win32" and info.st_mode & 0o077:
            raise _unreadable(
                what, f"{path} is open to its group or to others (mode "
                f"{stat.filemode(info.st_mode)}): anyone who can read it holds the secret; "
                f"run `chmod 600 {path}`")
        if info.st_size > MAX_SECRET:
            raise _unreadable(what, f"{path} is larger than {MAX_SECRET} bytes")
        return _read_all(fd, what, time.monotonic() + 5.0, path)
    finally:
        os.close(fd)


def _credential_path(name: str, what: str) -> str:
    directory = os.environ.get("CREDENTIALS_DIRECTORY", "")
    if not directory:
        raise _unreadable(what, f"the systemd credential {name!r}: $CREDENTIALS_DIRECTORY is "
                          "not set (the service needs LoadCredential= or SetCredential=)")
    if "/" in name or name in (".", ".."):
        raise _unreadable(what, f"not a credential name: {name!r}")
    return os.path.join(directory, name)


def _read_fd(fd: int, what: str, timeout: float) -> bytearray:
    if sys.platform == "win32":
        raise _unreadable(what, "a secret by descriptor works on Linux and macOS only")
    if fd not in PASSED_FDS:
        raise _unreadable(what, f"descriptor {fd} was not passed to the worker when it started "
                          "(a Secret.fd must be given to the connect() that starts it)")
    try:
        info = os.fstat(fd)
    except OSError as exc:
        raise _unreadable(what, f"descriptor {fd} is not open here ({exc.strerror}); it must "
                          "be open in the application when connect() is called") from None
    try:
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISFIFO(info.st_mode)
                or stat.S_ISSOCK(info.st_mode)):
            raise _unreadable(what, f"descriptor {fd} is not a pipe or a file")
        return _read_all(fd, what, time.monotonic() + timeout, f"descriptor {fd}")
    finally:
        os.close(fd)


def _read_all(fd: int, what: str, deadline: float, name: str) -> bytearray:
    """Read to the end within the deadline (a pipe whose writer never closes must not hang)."""
    secret = bytearray()
    try:
        while True:
            if sys.platform != "win32":
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    wipe(secret)
                    raise _unreadable(what, f"{name} gave no end of file in time (its writer "
                                      "must close it)")
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                continue
            except OSError as exc:
                wipe(secret)
                raise _unreadable(what, f"{name}: {exc.strerror}") from None
            if not chunk:
                return secret
            secret += chunk
            del chunk
            if len(secret) > MAX_SECRET:
                wipe(secret)
                raise _unreadable(what, f"{name} holds more than {MAX_SECRET} bytes")
    except BaseException:
        wipe(secret)
        raise


def _read_keyring(service: str, user: str, what: str) -> bytearray:
    try:
        keyring: Any = importlib.import_module("keyring")
    except ImportError:
        raise _unreadable(what, "Secret.keyring needs the keyring package (pip install "
                          "'snworker[keyring]')") from None
    try:
        password = keyring.get_password(service, user)
    except Exception as exc:  # no backend, a locked keyring, no session bus (cron, CI)
        raise _unreadable(what, f"the keyring failed ({type(exc).__name__}: {exc}); the "
                          "desktop keyring needs a logged-in session: under cron, CI or a "
                          "service use Secret.file or Secret.systemd") from None
    if password is None:
        raise _unreadable(what, f"the keyring has no entry for service {service!r}, user "
                          f"{user!r}")
    return bytearray(password.encode())
