"""Unix sockets, for the agent and its clients: who is at the other end."""

from __future__ import annotations

import sys

assert sys.platform != "win32"  # this module is only imported on POSIX systems

import ctypes
import errno
import socket
import struct


def peer_uid(conn: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket."""
    return peer_credentials(conn)[0]


def peer_credentials(conn: socket.socket) -> tuple[int, int]:
    """The user and group ids of the process at the other end of a Unix socket."""
    if sys.platform == "linux":
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, gid = struct.unpack("3i", creds)
        return int(uid), int(gid)
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = ctypes.c_uint32(), ctypes.c_uint32()
    if libc.getpeereid(conn.fileno(), ctypes.byref(uid), ctypes.byref(gid)) != 0:
        raise OSError(ctypes.get_errno() or errno.EINVAL, "getpeereid failed")
    return int(uid.value), int(gid.value)
