"""Opening an agent's Unix socket, once it is checked to be private to this user.

An agent run as a service under another user is opened only when this process names that user
($SNWORKER_AGENT_USER): then the socket must be that user's, in a directory of that user (or
root) that nobody else can write, and the process at the other end must run as that user.
"""

from __future__ import annotations

import sys

assert sys.platform != "win32"  # this module is only imported on POSIX systems

import os
import socket
import stat

from snworker.errors import WorkerStartError
from snworker.pipes import Pipe
from snworker.pipes.fd import FdPipe
from snworker.pipes.unix import peer_uid

_CONNECT_TIMEOUT = 5.0


def open_agent(address: str, service_user: int | None = None) -> Pipe:
    """A pipe to the agent at `address`; WorkerStartError unless it is this user's own, or
    runs as `service_user`, from where only that user could have put it."""
    me = os.getuid() if service_user is None else service_user
    for path, kind in ((os.path.dirname(address), stat.S_ISDIR), (address, stat.S_ISSOCK)):
        try:
            info = os.lstat(path)
        except OSError as exc:
            raise WorkerStartError(f"no snworker agent at {address} ({exc.strerror})") from None
        if service_user is None:
            unsafe = info.st_uid != me or info.st_mode & 0o077
            expected = "is not private to this user"
        elif kind is stat.S_ISDIR:
            unsafe = info.st_uid not in (me, 0) or info.st_mode & 0o022
            expected = f"may be written by others than user {me}"
        else:
            unsafe = info.st_uid != me
            expected = f"is not user {me}'s"
        if not kind(info.st_mode) or unsafe:
            raise WorkerStartError(
                f"refusing the snworker agent at {address}: {path} {expected} (owner "
                f"{_name(info.st_uid)}, mode {stat.filemode(info.st_mode)}); an agent's socket "
                "is mode 0600 in a 0700 directory of its user, or a service agent's, in its "
                "user's directory")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(_CONNECT_TIMEOUT)
        sock.connect(address)
        sock.settimeout(None)
        if peer_uid(sock) != me:
            raise WorkerStartError(f"refusing the snworker agent at {address}: it runs as "
                                   "another user" + ("" if service_user is None else
                                                     f" than {service_user}"))
    except OSError as exc:
        sock.close()
        raise WorkerStartError(f"the snworker agent at {address} does not answer "
                               f"({exc.strerror or exc})") from None
    except BaseException:
        sock.close()
        raise
    return FdPipe(sock.detach())


def _name(uid: int) -> str:
    """User `uid`'s name and number."""
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} ({uid})"
    except KeyError:
        return str(uid)
