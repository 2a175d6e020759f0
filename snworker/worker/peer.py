"""One pipe the worker serves: its parent's, or one agent client's socket.

    pipe --> [read lock] --> one request thread reads; on a Request it leaves another thread at
                             the pipe (starting one if none is idle) and carries the request out
                             itself; anything else it hands to the service
    pipe <-- [send lock] <-- Result / Error / OpenBrowser / Connected / Log

Request threads take turns at the pipe (leader/followers), so a request is executed by the thread
that read it: no hand-off between threads on the way in, and still always a thread reading, so a
Cancel or Disconnect is seen while requests run. Call ids belong to the peer: two agent clients
may use the same ids.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from snworker.messages import (
    Cancel,
    Connect,
    Connected,
    Control,
    Disconnect,
    Error,
    FromWorker,
    Log,
    OpenBrowser,
    Request,
    Result,
)
from snworker.pipes import Pipe
from snworker.worker.exchange import Cancellation

logger = logging.getLogger("snworker.worker")

# Threads start only when a request finds none idle. An asyncio caller sends a couple of
# hundred requests at once as a matter of course; each waits on the network, not the CPU.
_MAX_REQUEST_THREADS = 256


class Service(Protocol):
    """What a peer hands its messages to."""

    def carry_out(self, peer: Peer, request: Request, cancelled: threading.Event) -> None:
        """Answer `request` to `peer`, unless `cancelled` is set by then."""
        ...

    def connect(self, peer: Peer, message: Connect) -> None:
        """Authorize, or attach `peer` to the authorization there is."""
        ...

    def cancel(self, peer: Peer, ident: int) -> None:
        """A Cancel for no request in flight: perhaps for a consent."""
        ...

    def control(self, peer: Peer, message: Control) -> None:
        """An agent's status or stop command."""
        ...

    def disconnect(self, peer: Peer, message: Disconnect) -> None:
        """`peer` is done with the connection."""
        ...

    def peer_gone(self, peer: Peer) -> None:
        """`peer` closed its end without a Disconnect."""
        ...

    def violation(self, peer: Peer, error: Exception) -> None:
        """`peer` wrote a frame that is not a message: nothing it sends can be trusted now."""
        ...


class Budget(Protocol):
    """What a peer's messages hold in flight (an agent's client): see `worker.agent.limits`."""

    def settle(self) -> int:
        """The bytes the frame just read took; its message holds them until `give`."""
        ...

    def give(self, size: int) -> None:
        """Give back `size` bytes."""
        ...


class Peer:
    """A pipe, its request threads, its send lock, and its calls in flight."""

    def __init__(self, pipe: Pipe, service: Service, name: str,
                 budget: Budget | None = None) -> None:
        self._pipe = pipe
        self._service = service
        self.name = name
        self._budget = budget
        self._send_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._threads = 0  # request threads alive
        self._busy = 0  # of which carrying out a request
        self._cancelled: dict[int, threading.Event] = {}
        self.closed = threading.Event()
        self.disconnecting = threading.Event()
        self.attached = False  # it asked to use the connection (a Connect), not just a command
        self.own_user = True  # False: a process of a user a service agent allows

    def start(self) -> None:
        """Start reading."""
        self._start_thread()

    def send(self, message: FromWorker) -> None:
        """Write `message`; a peer that is gone is the reading thread's business."""
        try:
            with self._send_lock:
                self._pipe.send(message)
        except (BlockingIOError, TimeoutError):
            # An agent's client that leaves its answers unread past its deadline: hang up, so
            # that its reading thread ends it and what it holds is freed.
            logger.warning("snworker worker: %s left its answers unread; dropped", self.name)
            self._pipe.hang_up()
        except (OSError, ValueError):
            pass

    def cancel_all(self) -> None:
        """Stop every request of this peer that is still retrying."""
        for event in list(self._cancelled.values()):
            event.set()

    def close(self) -> None:
        """Stop reading and close the pipe."""
        self.closed.set()
        self.cancel_all()
        try:
            self._pipe.close()
        except OSError:
            pass

    def _start_thread(self) -> None:
        with self._pool_lock:
            self._threads += 1
        threading.Thread(target=self._take_turns, name=f"snworker-{self.name}",
                         daemon=True).start()

    def _take_turns(self) -> None:
        while not self.closed.is_set():
            with self._read_lock:
                if self.closed.is_set():
                    return
                try:
                    message = self._pipe.receive()
                except (EOFError, OSError):
                    self._give(self._settle())
                    if not self.closed.is_set():
                        self.closed.set()
                        if not self.disconnecting.is_set():
                            self._service.peer_gone(self)
                    return
                except Exception as exc:  # ProtocolError, or worse: the stream is lost
                    self._give(self._settle())
                    self.closed.set()
                    self._service.violation(self, exc)
                    return
                held = self._settle()
                if type(message) is Request:
                    # Registered before the next read, so a Cancel for it cannot be missed.
                    cancelled = self._cancelled[message.id] = Cancellation()
                    # Leave a thread at the pipe before carrying the request out.
                    with self._pool_lock:
                        waiting = self._threads - self._busy - 1
                        self._busy += 1
                    if waiting == 0 and self._threads < _MAX_REQUEST_THREADS:
                        self._start_thread()
            if type(message) is Request:
                try:
                    self._service.carry_out(self, message, cancelled)
                finally:
                    self._give(held)
                    self._cancelled.pop(message.id, None)
                    with self._pool_lock:
                        self._busy -= 1
            else:
                try:
                    self._handle(message)
                finally:
                    self._give(held)

    def _settle(self) -> int:
        return self._budget.settle() if self._budget is not None else 0

    def _give(self, size: int) -> None:
        if self._budget is not None:
            self._budget.give(size)

    def _handle(self, message: object) -> None:
        match message:
            case Cancel():
                event = self._cancelled.get(message.id)
                if event is not None:
                    event.set()
                else:
                    self._service.cancel(self, message.id)
            case Connect():
                self._service.connect(self, message)
            case Control():
                self._service.control(self, message)
            case Disconnect():
                self.disconnecting.set()
                self._service.disconnect(self, message)
            case OpenBrowser() | Connected() | Result() | Error() | Log():
                logger.warning("snworker worker: ignored a %s from %s",
                               type(message).__name__, self.name)
            case _:  # pragma: no cover - receive() returns messages only
                logger.warning("snworker worker: ignored %r", type(message).__name__)
