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
    if sys.platform == "linux":
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", creds)[1])
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = ctypes.c_uint32(), ctypes.c_uint32()
    if libc.getpeereid(conn.fileno(), ctypes.byref(uid), ctypes.byref(gid)) != 0:
        raise OSError(ctypes.get_errno() or errno.EINVAL, "getpeereid failed")
    return int(uid.value)
