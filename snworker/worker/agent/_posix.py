"""The agent's socket on Linux and macOS: a Unix socket, mode 0600, in a 0700 directory.

Every client is checked to be the agent's own user (SO_PEERCRED on Linux, getpeereid
elsewhere) before anything it sends is read, whatever the file modes say.
"""

from __future__ import annotations

import sys

assert sys.platform != "win32"  # this module is only imported on POSIX systems

import logging
import os
import socket
import stat
import struct

from snworker.pipes import Pipe
from snworker.pipes.fd import FdPipe
from snworker.pipes.unix import peer_uid
from snworker.worker.agent.limits import ClientBudget
from snworker.worker.harden import Refused

logger = logging.getLogger("snworker.worker")


class UnixListener:
    """A listening Unix socket that lets in this user's processes only."""

    def __init__(self, address: str, sock: socket.socket, directory: str | None = None) -> None:
        self.address = address
        self._sock = sock
        self._directory = directory  # made for this agent alone: removed with it
        info = os.stat(address)
        self._identity = (info.st_dev, info.st_ino)

    def accept(self, budget: ClientBudget) -> tuple[Pipe, str] | None:
        """The next client of this user; None (and the connection closed) for anyone else.

        Its frames are held to `budget`, and a write to it that waits longer than
        `budget.stall` seconds fails (SO_SNDTIMEO), so a client that stops reading is dropped.
        """
        conn, _ = self._sock.accept()
        try:
            uid = peer_uid(conn)
        except OSError as exc:
            logger.warning("snworker agent: refused a client whose user is unknown (%s)", exc)
            conn.close()
            return None
        if uid != os.getuid():
            logger.warning("snworker agent: refused a client of user %d", uid)
            conn.close()
            return None
        conn.setblocking(True)
        whole, part = divmod(budget.stall, 1.0)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        struct.pack("@ll", int(whole), int(part * 1e6)))
        return FdPipe(conn.detach(), budget=budget), f"a process of user {uid}"

    def gone(self) -> bool:
        """True when the socket file was removed or replaced."""
        try:
            info = os.stat(self.address)
        except OSError:
            return True
        return (info.st_dev, info.st_ino) != self._identity

    def close(self) -> None:
        """Stop listening and remove the socket, if it is still ours."""
        if not self.gone():
            try:
                os.unlink(self.address)
            except OSError:
                pass
        if self._directory is not None:
            try:
                os.rmdir(self._directory)
            except OSError:
                pass  # not empty: something else is in it
        self._sock.close()


def listen(address: str, own_directory: bool = False) -> UnixListener:
    """Listen on `address`, creating its directory private to this user; with
    `own_directory`, the directory was made for this agent alone, and goes with it."""
    directory = os.path.dirname(address)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise Refused(f"{directory} belongs to user {_owner(info.st_uid)}, not to this one (or "
                      "is not a directory): pass another address (--address) in a directory "
                      "of your own")
    if info.st_mode & 0o077:
        raise Refused(f"{directory} is open to other users (mode "
                      f"{stat.filemode(info.st_mode)}): make it mode 0700, or pass another "
                      "address (--address)")
    if os.path.lexists(address):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(address)
        except OSError:
            os.unlink(address)  # a socket left by an agent that is gone
        else:
            raise Refused(f"an agent already listens on {address}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Created 0600: never, even for a moment, open to others. (No other thread runs yet.)
    previous = os.umask(0o177)
    try:
        sock.bind(address)
    except OSError as exc:  # a path too long for a socket, for one
        sock.close()
        raise Refused(f"cannot listen on {address}: {exc.strerror or exc}") from None
    finally:
        os.umask(previous)
    sock.listen(64)
    return UnixListener(address, sock, directory if own_directory else None)


def _owner(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
