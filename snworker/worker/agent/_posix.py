"""The agent's socket on Linux and macOS: a Unix socket, mode 0600, in a 0700 directory.

Every client is checked to be the agent's own user (SO_PEERCRED on Linux, getpeereid
elsewhere) before anything it sends is read, whatever the file modes say. An agent run as a
service also serves the users and groups it was told to allow: its directory then lets others
reach the socket (0750 and the group's, when one group is all it serves; else 0711: others may
pass, not list), and the peer check alone decides who is served.
"""

from __future__ import annotations

import sys

assert sys.platform != "win32"  # this module is only imported on POSIX systems

import logging
import os
import socket
import stat
import struct
from collections.abc import Collection

from snworker.pipes import Pipe
from snworker.pipes.fd import FdPipe
from snworker.pipes.unix import peer_credentials
from snworker.worker.agent.limits import ClientBudget
from snworker.worker.harden import Refused

logger = logging.getLogger("snworker.worker")


class UnixListener:
    """A listening Unix socket that lets in this user's processes only."""

    def __init__(self, address: str, sock: socket.socket, users: Collection[int] = (),
                 groups: Collection[int] = (), directory: str | None = None) -> None:
        self.address = address
        self._sock = sock
        self._users = frozenset(users)
        self._groups = frozenset(groups)
        self._directory = directory  # made for this agent alone: removed with it
        info = os.stat(address)
        self._identity = (info.st_dev, info.st_ino)

    def accept(self, budget: ClientBudget) -> tuple[Pipe, str, bool] | None:
        """The next client this agent serves, and whether it is of the agent's own user; None
        (and the connection closed) for anyone else.

        Its frames are held to `budget`, and a write to it that waits longer than
        `budget.stall` seconds fails (SO_SNDTIMEO), so a client that stops reading is dropped.
        """
        conn, _ = self._sock.accept()
        try:
            uid, gid = peer_credentials(conn)
        except OSError as exc:
            logger.warning("snworker agent: refused a client whose user is unknown (%s)", exc)
            conn.close()
            return None
        own = uid == os.getuid()
        if not own and uid not in self._users and not self._in_allowed_group(uid, gid):
            logger.warning("snworker agent: refused a client of user %d", uid)
            conn.close()
            return None
        conn.setblocking(True)
        whole, part = divmod(budget.stall, 1.0)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        struct.pack("@ll", int(whole), int(part * 1e6)))
        return FdPipe(conn.detach(), budget=budget), f"a process of user {uid}", own

    def _in_allowed_group(self, uid: int, gid: int) -> bool:
        if not self._groups:
            return False
        if gid in self._groups:
            return True
        import pwd

        try:
            name = pwd.getpwuid(uid).pw_name
            return not self._groups.isdisjoint(os.getgrouplist(name, gid))
        except (KeyError, OSError):
            return False

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


def listen(address: str, users: Collection[int] = (), groups: Collection[int] = (),
           own_directory: bool = False) -> UnixListener:
    """Listen on `address`, creating its directory private to this user (and open to the
    allowed `users` and `groups`, as little as they need); with `own_directory`, the directory
    was made for this agent alone, and goes with it."""
    directory = os.path.dirname(address)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise Refused(f"{directory} belongs to user {_owner(info.st_uid)}, not to this one (or "
                      "is not a directory): pass another address (--address) in a directory "
                      "of your own")
    shared = bool(users or groups)
    # Only the group: the directory and socket are the group's. Anyone else: others may pass
    # through the directory (not list it) and connect; the peer check refuses who is not allowed.
    group = next(iter(groups)) if len(groups) == 1 and not users else None
    if shared:
        os.chmod(directory, 0o750 if group is not None else 0o711)
        if group is not None:
            try:
                os.chown(directory, -1, group)
            except OSError as exc:
                raise Refused(f"cannot give {directory} to group {group} ({exc.strerror}): the "
                              "agent's user must be a member of it") from None
    elif info.st_mode & 0o077:
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
    if shared:
        if group is not None:
            os.chown(address, -1, group)
        os.chmod(address, 0o660 if group is not None else 0o666)
    sock.listen(64)
    return UnixListener(address, sock, users, groups, directory if own_directory else None)


def _owner(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
