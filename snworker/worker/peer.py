"""One pipe the worker serves: its parent's, or one agent client's socket.

    pipe --> [read lock] --> one request thread reads; on a Request it leaves another thread at
                             the pipe (starting one if none is idle) and carries the request out
                             itself; anything else it hands to the service
    pipe <-- [send lock] <-- Result / Error / OpenBrowser / Connected / Log

Request threads take turns at the pipe (leader/followers), so a request is executed by the thread
that read it: no hand-off between threads on the way in, and still always a thread reading, so a
Cancel or Disconnect is seen while requests run. Call ids belong to the peer: two agent clients
may use the same ids.

A request in flight is an `Flight`: whether its caller gave up (a Cancellation, which also
aborts the HTTP exchange), and for a stream the Credits the parent returned and the Chunks of a
body it uploads. The reading thread files those there and never waits for the request thread:
the parent sends no more than the credit it was given.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from snworker.messages import (
    Cancel,
    Chunk,
    Connect,
    Connected,
    Control,
    Credit,
    Disconnect,
    Error,
    FromWorker,
    Head,
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
# The most of an uploaded body the parent may send ahead of what the worker sent on.
UPLOAD_WINDOW = 1 << 22


class Flight:
    """One request in flight: whether its caller gave up, credit to stream, a body coming in."""

    __slots__ = ("_chunks", "_cond", "_credit", "_queued", "_release", "cancelled", "refused")

    def __init__(self, release: Callable[[int], None] = lambda size: None) -> None:
        self._release = release  # gives back what a piece's frame held of the peer's budget
        self.cancelled = Cancellation()  # setting it aborts the HTTP exchange under way
        self.refused = False  # stopped by the worker: the parent broke the flow control
        self._cond = threading.Condition(threading.Lock())
        self._credit = 0
        self._chunks: deque[tuple[Chunk, int]] = deque()
        self._queued = 0  # bytes of upload chunks waiting to be sent on

    def cancel(self) -> None:
        """The caller gave up (or is gone): stop, and wake whoever waits for it."""
        self.cancelled.set()
        with self._cond:
            self._cond.notify_all()

    def refuse(self) -> None:
        """Stop it for the parent's fault: it still gets an answer (an Error)."""
        self.refused = True
        self.cancel()

    def grant(self, size: int) -> None:
        """The parent consumed `size` more bytes of the answer."""
        if not isinstance(size, int) or size <= 0:
            return
        with self._cond:
            self._credit += size
            self._cond.notify_all()

    def credit(self, timeout: float) -> int:
        """Wait up to `timeout` s for credit; what there is (0: none came, or cancelled)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._credit <= 0 and not self.cancelled.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return 0
                self._cond.wait(remaining)
            return 0 if self.cancelled.is_set() else self._credit

    def spend(self, size: int) -> None:
        """`size` bytes of the answer were sent."""
        with self._cond:
            self._credit -= size

    def put(self, chunk: Chunk, limit: int, held: int = 0) -> bool:
        """A piece of the uploaded body; False when the parent sent more than `limit` ahead.

        `held` is what its frame holds of the peer's budget, given back when it is taken.
        """
        with self._cond:
            self._queued += len(chunk.body)
            if self._queued > limit:
                return False
            self._chunks.append((chunk, held))
            self._cond.notify_all()
            return True

    def drop(self) -> int:
        """Forget the pieces never taken; what their frames held of the budget."""
        with self._cond:
            held = sum(size for _, size in self._chunks)
            self._chunks.clear()
            self._queued = 0
            return held

    def take(self, timeout: float) -> Chunk | None:
        """The next piece of the uploaded body; None when cancelled or `timeout` s passed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._chunks and not self.cancelled.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if self.cancelled.is_set():
                return None
            chunk, held = self._chunks.popleft()
            self._queued -= len(chunk.body)
        self._release(held)
        return chunk


class Service(Protocol):
    """What a peer hands its messages to."""

    def carry_out(self, peer: Peer, request: Request, flight: Flight) -> None:
        """Answer `request` to `peer`, unless `flight.cancelled` is set by then."""
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
        self._flights: dict[int, Flight] = {}
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
        for flight in list(self._flights.values()):
            flight.cancel()

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
                    flight = self._flights[message.id] = Flight(self._give)
                    # Leave a thread at the pipe before carrying the request out.
                    with self._pool_lock:
                        waiting = self._threads - self._busy - 1
                        self._busy += 1
                    if waiting == 0 and self._threads < _MAX_REQUEST_THREADS:
                        self._start_thread()
            if type(message) is Request:
                try:
                    self._service.carry_out(self, message, flight)
                finally:
                    self._give(held)
                    self._give(flight.drop())
                    self._flights.pop(message.id, None)
                    with self._pool_lock:
                        self._busy -= 1
            else:
                kept = False
                try:
                    kept = self._handle(message, held)
                finally:
                    if not kept:
                        self._give(held)

    def _settle(self) -> int:
        return self._budget.settle() if self._budget is not None else 0

    def _give(self, size: int) -> None:
        if self._budget is not None:
            self._budget.give(size)

    def _handle(self, message: object, held: int = 0) -> bool:
        """Do what `message` asks; True when it keeps the `held` bytes of its frame (a piece
        of an upload, given back when the request takes it)."""
        match message:
            case Cancel():
                flight = self._flights.get(message.id)
                if flight is not None:
                    flight.cancel()
                else:
                    self._service.cancel(self, message.id)
            case Credit():
                flight = self._flights.get(message.id)
                if flight is not None:
                    flight.grant(message.size)
            case Chunk():
                flight = self._flights.get(message.id)
                # A piece for a request already answered is dropped; one beyond the credit
                # the worker granted ends that upload (its request fails, nothing more is sent).
                if flight is None:
                    return False
                if flight.put(message, UPLOAD_WINDOW, held):
                    return True
                logger.warning("snworker worker: %s sent more of a body than it was "
                               "allowed to; the request is stopped", self.name)
                flight.refuse()
            case Connect():
                self._service.connect(self, message)
            case Control():
                self._service.control(self, message)
            case Disconnect():
                self.disconnecting.set()
                self._service.disconnect(self, message)
            case OpenBrowser() | Connected() | Result() | Error() | Log() | Head():
                logger.warning("snworker worker: ignored a %s from %s",
                               type(message).__name__, self.name)
            case _:  # pragma: no cover - receive() returns messages only
                logger.warning("snworker worker: ignored %r", type(message).__name__)
        return False
