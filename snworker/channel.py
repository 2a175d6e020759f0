"""The parent's end of the boundary: starting the worker, framing, pending calls, crash detection.

Data flow:

    caller threads --(send lock)--> pipe --> worker
         ^
         | every call is parked in `_calls` by its integer id until its answer comes
         |
    the reading caller <-- pipe <-- worker     (waits on the pipe and the worker's sentinel
                                                together: a dead worker is seen at once)

There is no reader thread. A caller that waits for an answer reads the pipe itself when nobody
else does (leader/followers): it delivers other callers' answers as they come, and when its own
has come it hands the pipe to one of the callers still waiting. The answer of a single caller
thus costs no thread wake-up in this process. Whoever pops a call from `_calls` owns its
outcome: the reading caller (its last message arrived), the call's own thread (its deadline
passed first, or it closed its stream) or the crash handler. A late answer finds no entry and is
dropped.

A call gets its messages in an inbox: one Result or Error for a plain request; for a stream a
Head, Chunks and the Credits of an upload, until its last Chunk or an Error. The inbox never
holds more than the window the call granted (`snworker.streams`), whoever reads the pipe.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable

from snworker import spawn
from snworker.core import Calls, is_last, route, worker_failure
from snworker.errors import (
    ConnectionClosedError,
    RequestTimeoutError,
    ServiceNowError,
    WorkerError,
)
from snworker.messages import Cancel, FromWorker, Log, ToWorker
from snworker.pipes import IoMode, Pipe, default_io
from snworker.spawn import WorkerProcess

logger = logging.getLogger("snworker")


class Call:
    """One pending call. Its thread sleeps on `wake` while another caller reads the pipe."""

    __slots__ = ("closing", "done", "ident", "inbox", "promoted", "waiting", "wake")

    def __init__(self, ident: int) -> None:
        self.ident = ident
        self.wake = threading.Lock()
        self.wake.acquire()
        # Messages delivered and not yet taken; an exception when the worker failed.
        self.inbox: deque[FromWorker | ServiceNowError] = deque()
        self.done = False  # its last message was delivered: it left `_calls`
        self.closing = False  # its caller closed it: only its last message is still wanted
        self.waiting = False  # asleep on `wake` and listed in `_followers`
        self.promoted = False  # woken to take over the pipe, not with an answer


class Channel:
    """A worker process and the pipe to it."""

    def __init__(self, pipe: Pipe, process: WorkerProcess | None,
                 on_open_browser: Callable[[str], None], io: IoMode) -> None:
        self.on_open_browser = on_open_browser
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        # Guards _calls, _followers and _reading; held only briefly, never for I/O.
        self._lock = threading.Lock()
        self._calls: Calls[Call] = Calls()
        self._followers: list[Call] = []
        self._reading = False
        self._closing = False
        self._owner_pid = os.getpid()
        self.io = io
        self._pipe, self._process = pipe, process
        self._worker_pid: int = process.pid if process is not None else 0
        self._waiter = pipe.waiter(process.sentinel if process is not None else None)
        _channels.add(self)

    @classmethod
    def start(cls, on_open_browser: Callable[[str], None], io: IoMode | None = None,
              agent: dict[str, object] | None = None, fds: tuple[int, ...] = ()) -> Channel:
        """Start a worker (an agent, with `agent` settings) and the channel to it.

        `fds` are descriptors the worker inherits, under the same numbers (Secret.fd).
        """
        io = io or default_io()
        pipe, process = spawn.launch(io, agent, fds)
        return cls(pipe, process, on_open_browser, io)

    @classmethod
    def over(cls, pipe: Pipe, on_open_browser: Callable[[str], None], io: IoMode) -> Channel:
        """A channel to an agent, on a socket or named pipe already connected to it."""
        return cls(pipe, None, on_open_browser, io)

    @property
    def attached(self) -> bool:
        """True for a channel to an agent: the worker is not ours to stop."""
        return self._process is None

    @property
    def pid(self) -> int:
        """The id of the process that holds the tokens (known for sure once connected)."""
        return self._worker_pid

    @property
    def owned_here(self) -> bool:
        """False in a forked child, which must not drive its parent's worker."""
        return os.getpid() == self._owner_pid

    def next_id(self) -> int:
        """A fresh call id."""
        return next(self._ids)

    def call(self, message: ToWorker, timeout: float | None) -> FromWorker:
        """Send `message` and wait up to `timeout` seconds for the answer with its id.

        A caller interrupted while it waits (Ctrl-C, a
        KeyboardInterrupt) cancels the call in the worker before the interruption goes on.
        """
        call = self.open(message)
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        outcome = self.next(call, deadline)
        if outcome is None:
            raise RequestTimeoutError(f"no answer within {timeout:g} s")
        return outcome

    def open(self, message: ToWorker) -> Call:
        """Send `message` and park a call for its answers; `next()` takes them."""
        call = Call(message.id)
        with self._lock:
            self._calls.add(call.ident, call)
        try:
            with self._send_lock:
                self._pipe.send(message)
        except (OSError, ValueError):
            pass  # the worker is gone: reading the pipe shows it and fails this call
        return call

    def next(self, call: Call, deadline: float | None) -> FromWorker | None:
        """The call's next message, waiting until `deadline`; None once it passed.

        A call that gets nothing in time is given up: the worker is told (Cancel) and what
        comes for it later is dropped. An Error message is returned; a worker that failed
        raises its WorkerError. A caller interrupted while it waits (Ctrl-C, a
        KeyboardInterrupt) cancels the call in the worker before the interruption goes on.
        """
        try:
            self._wait(call, deadline)
        except BaseException:
            self._abandon(call)
            self.send_quietly(Cancel(call.ident))
            raise
        with self._lock:
            if not call.inbox:
                given_up = self._calls.pop(call.ident) is not None
                call.done = True
            else:
                given_up = False
        if not call.inbox:
            if given_up:
                self.send_quietly(Cancel(call.ident))
            return None
        outcome = call.inbox.popleft()
        if isinstance(outcome, ServiceNowError):
            raise outcome
        return outcome

    def close_call(self, call: Call, drain: float = 0.0) -> None:
        """Stop a call before its last message: the worker is told, later messages dropped.

        With `drain`, wait up to that many seconds for the worker to end the call, reading
        what it had already sent: a stream's worker may be blocked writing to the pipe, and
        only a reader here lets it see the Cancel and close its HTTP response at once.
        """
        with self._lock:
            pending = self._calls.get(call.ident) is call
            call.closing = True
            call.inbox.clear()
            if not pending:
                call.done = True
                return
        self.send_quietly(Cancel(call.ident))
        if drain > 0:
            try:
                self._wait(call, time.monotonic() + drain)
            except BaseException:
                self._abandon(call)
                raise
        with self._lock:
            if self._calls.get(call.ident) is call:
                self._calls.pop(call.ident)
            call.done = True
            call.inbox.clear()

    def send(self, message: ToWorker) -> None:
        """Send `message` without waiting for an answer."""
        broken = self._calls.broken
        if broken is not None:
            raise broken
        with self._send_lock:
            self._pipe.send(message)

    def send_quietly(self, message: ToWorker) -> None:
        """Send `message` if the worker is there to take it."""
        try:
            self.send(message)
        except (ServiceNowError, OSError, ValueError):
            pass

    # --- waiting: read the pipe, or sleep while another caller reads it --------------------

    def _wait(self, call: Call, deadline: float | None) -> None:
        """Return once `call` has a message in its inbox, or with none once `deadline` passed."""
        while True:
            with self._lock:
                if call.inbox or call.done:
                    return
                lead = not self._reading
                if lead:
                    self._reading = True
                else:
                    call.waiting = True
                    self._followers.append(call)
            if lead:
                try:
                    self._read_until(call, deadline)
                finally:
                    self._hand_over()
                return
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not call.wake.acquire(timeout=-1 if remaining is None else remaining):
                with self._lock:
                    if call.waiting:  # nobody is about to wake us: the deadline passed
                        call.waiting = False
                        self._followers.remove(call)
                        return
                call.wake.acquire()  # a wake-up was on its way: take it
            if call.promoted:
                call.promoted = False
                continue
            return

    def _abandon(self, call: Call) -> None:
        """Give up `call` after an exception in its wait: nobody may be left without a reader.

        A leader's exception already handed the pipe over (`_read_until`'s finally). A follower
        may have been interrupted just as it was woken to lead: it passes the pipe on.
        """
        with self._lock:
            self._calls.pop(call.ident)
            if call.waiting:
                call.waiting = False
                self._followers.remove(call)
                return
            promoted, call.promoted = call.promoted, False
        if promoted:
            self._hand_over()

    def _hand_over(self) -> None:
        """Give up reading the pipe; wake a waiting caller to read it instead."""
        with self._lock:
            self._reading = False
            successor = self._followers.pop(0) if self._followers else None
            if successor is not None:
                successor.waiting = False
                successor.promoted = True
        if successor is not None:
            successor.wake.release()

    def _read_until(self, own: Call, deadline: float | None) -> None:
        pipe = self._pipe
        while not own.inbox and not own.done:
            if not pipe.buffered:
                if deadline is None:
                    wait = None
                else:
                    wait = deadline - time.monotonic()
                    if wait <= 0:
                        return
                readable, exited = self._waiter.wait(wait)
                if not readable:
                    if exited:
                        # The worker exited and left nothing unread: fail every pending call.
                        self._fail_all(self._failure())
                        return
                    continue
            try:
                message = pipe.receive()
            except (EOFError, OSError):
                self._fail_all(self._failure())
                return
            except Exception:  # a malformed frame: the stream can no longer be trusted
                logger.exception("snworker: unreadable message from the worker")
                self._fail_all(self._failure())
                return
            self._calls.heard = True
            route(message, self)

    # --- what the worker's messages ask for (core.Sink) ----------------------------------

    def deliver(self, ident: int, outcome: FromWorker) -> None:
        """Wake the caller waiting for `ident` with its message; drop a late one."""
        last = is_last(outcome)
        with self._lock:
            call = self._calls.get(ident)
            if call is None:
                return  # its caller gave up: drop the late answer
            if call.closing and not last:
                return  # a closed stream's pieces still on their way
            call.inbox.append(outcome)
            if last:
                self._calls.pop(ident)
                call.done = True
            wake = call.waiting
            if wake:
                call.waiting = False
                self._followers.remove(call)
        if wake:
            call.wake.release()

    def open_browser(self, url: str) -> None:
        """Show the consent page in a thread of its own: the pipe's reader reads on."""
        threading.Thread(target=self.on_open_browser, args=(url,), name="snworker-browser",
                         daemon=True).start()

    def refused(self, error: WorkerError) -> None:
        """The worker refused to start."""
        self._fail_all(error)

    def worker_pid(self, pid: int) -> None:
        """The process that holds the tokens, as the worker reports it."""
        self._worker_pid = pid

    def _failure(self) -> WorkerError:
        process = self._process
        if process is not None and not self._closing:
            process.join(1.0)  # the pipe can close a moment before the exit status is known
        return worker_failure(self._closing, process is None, self._calls.heard,
                              None if process is None else process.exitcode)

    def _fail_all(self, error: WorkerError) -> None:
        with self._lock:
            calls = self._calls.fail_all(error)
            self._followers.clear()
            woken = []
            for call in calls:
                call.inbox.append(error)
                call.done = True
                if call.waiting:
                    call.waiting = False
                    woken.append(call)
        for call in woken:
            call.wake.release()

    # --- shutdown ------------------------------------------------------------------------

    def close(self, timeout: float) -> None:
        """Wait up to `timeout` s for the worker to exit, then terminate it, then kill it."""
        self._closing = True
        process = self._process
        if process is not None and self.owned_here and not process.join(timeout):
            process.terminate()
            if not process.join(1.0):
                process.kill()
                process.join(1.0)
        self._fail_all(ConnectionClosedError("the connection is closed"))
        with self._lock:
            reading, self._reading = self._reading, True
        if not reading:
            self._drain_logs()
            self._release()

    def release(self) -> None:
        """Let go of a worker without stopping it (an agent, once it has started)."""
        self._closing = True
        self._fail_all(ConnectionClosedError("the connection is closed"))
        self._release()

    def _release(self) -> None:
        closers = [self._pipe.close, self._waiter.close]
        if self._process is not None:
            closers.append(self._process.close)
        for release in closers:
            try:
                release()
            except OSError:
                pass

    def _drain_logs(self) -> None:
        """Re-emit what the worker logged after the last answer anybody read."""
        try:
            while self._pipe.buffered or self._waiter.wait(0)[0]:
                message = self._pipe.receive()
                if isinstance(message, Log):
                    route(message, self)
        except Exception:
            pass


# A forked child shares the parent's end of every pipe: were it to use one, parent and child
# would read each other's answers, and while it held them the worker would not see its
# parent's death. Its copies are closed and marked unusable the moment it is born.
_channels: weakref.WeakSet[Channel] = weakref.WeakSet()


def _disown_after_fork() -> None:
    for channel in list(_channels):
        channel._calls.broken = WorkerError(
            f"this connection belongs to process {channel._owner_pid}; a forked child must "
            "call connect() itself")
        channel._lock = threading.Lock()  # the parent may have held it at the fork
        channel._send_lock = threading.Lock()
        try:
            channel._release()
        except Exception:
            pass


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork()
    os.register_at_fork(after_in_child=_disown_after_fork)
