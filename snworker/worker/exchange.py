"""Cancelling a request for real: the HTTP exchange in flight is aborted, not waited out.

    Peer reads Cancel(id) --> Cancellation.set() --> Exchange.abort(): shuts down the socket of
                                                     every connection the request's thread took
    request thread: blocked in send/recv on that socket --> an error at once --> the answer is
                    dropped, the thread is free; the instance sees the connection closed

The request's thread names its exchange in a thread-local while it sends (`Exchange.current`);
urllib3's pools, built here, report each connection they hand out or connect to it. A cancel
that comes before the connection exists is kept, and the connection is shut the moment it is
reported.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_local = threading.local()


class Exchange:
    """The connections one request is using, so that another thread can abort them."""

    __slots__ = ("_connections", "_lock", "aborted")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self.aborted = False

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        """Make this the calling thread's exchange while the block sends."""
        previous = getattr(_local, "exchange", None)
        _local.exchange = self
        try:
            yield
        finally:
            _local.exchange = previous
            with self._lock:
                self._connections.clear()

    def attach(self, connection: Any) -> None:
        """A connection this request sends on (shut at once if the request was cancelled)."""
        with self._lock:
            if not self.aborted:
                self._connections.append(connection)
                return
        _shut(connection)

    def abort(self) -> None:
        """Shut down every connection of this request: its send or read fails at once."""
        with self._lock:
            self.aborted = True
            connections, self._connections = self._connections, []
        for connection in connections:
            _shut(connection)


class Cancellation(threading.Event):
    """A request's cancel flag: setting it also aborts the HTTP exchange in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.exchange = Exchange()

    def set(self) -> None:
        """Cancel: no further try, and the exchange under way is aborted."""
        super().set()
        self.exchange.abort()


def _shut(connection: Any) -> None:
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    try:
        # The plain socket's shutdown, also for TLS: an SSLSocket's own would drop its state
        # under the thread that is reading it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, TypeError):
        pass


def _report(connection: Any) -> None:
    exchange: Exchange | None = getattr(_local, "exchange", None)
    if exchange is not None:
        exchange.attach(connection)


class _HTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _report(self)


class _HTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _report(self)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)
        _report(connection)  # a pooled connection is connected already
        return connection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)
        _report(connection)
        return connection


# What the worker's pool managers build their pools from (see transport._Adapter).
POOL_CLASSES: dict[str, type[HTTPConnectionPool]] = {"http": _HTTPPool, "https": _HTTPSPool}
