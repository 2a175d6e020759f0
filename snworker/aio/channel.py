"""The boundary for an event loop: the same pipe, messages and pending calls as `channel.py`.

    tasks --send--> pipe --> worker
      ^
      | each call awaits a future parked in `Calls` by its id
      |
    the loop reads the pipe when it is readable (POSIX: add_reader on the pipe and on the
    worker's sentinel), or a reader thread hands it what it read (Windows' named pipes)

Nothing here blocks the loop: starting the worker, joining it and opening the browser run in
threads. A task cancelled while it waits (task.cancel(), asyncio.timeout, a failing TaskGroup)
sends Cancel(id), and the worker aborts the HTTP exchange in flight.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable

from snworker import spawn
from snworker.core import Calls, is_last, route, worker_failure
from snworker.errors import ConnectionClosedError, ServiceNowError, WorkerError
from snworker.messages import Cancel, FromWorker, Message, ToWorker
from snworker.pipes import IoMode, Pipe, default_io
from snworker.spawn import WorkerProcess

logger = logging.getLogger("snworker")

# A message with a body larger than this is written from a thread: a write of that size can
# wait for the worker to read, and the loop must not wait with it.
_SEND_ON_LOOP = 1 << 16

Outcome = FromWorker | ServiceNowError | None


class StreamCall:
    """A call that takes several messages (a stream's Head and Chunks, an upload's Credits)."""

    __slots__ = ("closing", "done", "ident", "inbox", "waiter")

    def __init__(self, ident: int) -> None:
        self.ident = ident
        # Messages delivered and not yet taken; an exception when the worker failed.
        self.inbox: deque[FromWorker | ServiceNowError] = deque()
        self.waiter: asyncio.Future[None] | None = None  # a task awaits the next message
        self.done = False  # its last message was delivered: it left the pending calls
        self.closing = False  # its caller closed it: nothing more is wanted

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class AsyncChannel:
    """A worker process (or an agent) and the pipe to it, driven by one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pipe: Pipe,
                 process: WorkerProcess | None, on_open_browser: Callable[[str], None],
                 io: IoMode) -> None:
        self.on_open_browser = on_open_browser
        self.io = io
        self._loop = loop
        self._pipe, self._process = pipe, process
        self._ids = itertools.count(1)
        self._calls: Calls[asyncio.Future[Outcome] | StreamCall] = Calls()
        # Sends come from the loop and, for large bodies, from threads: one frame at a time.
        self._send_lock = threading.Lock()
        self._closing = False
        self._released = False
        self._worker_pid = process.pid if process is not None else 0
        self._watch = pipe.watch(loop, process.sentinel if process is not None else None,
                                 self._received, self._ended)

    @classmethod
    async def start(cls, on_open_browser: Callable[[str], None], io: IoMode | None = None,
                    agent: dict[str, object] | None = None,
                    fds: tuple[int, ...] = ()) -> AsyncChannel:
        """Start a worker (in a thread: spawning takes a while) and the channel to it;
        `fds` as for `Channel.start`."""
        loop = asyncio.get_running_loop()
        chosen = io or default_io()
        pipe, process = await loop.run_in_executor(None, spawn.launch, chosen, agent, fds)
        return cls(loop, pipe, process, on_open_browser, chosen)

    @classmethod
    def over(cls, pipe: Pipe, on_open_browser: Callable[[str], None],
             io: IoMode) -> AsyncChannel:
        """A channel to an agent, on a socket or named pipe already connected to it."""
        return cls(asyncio.get_running_loop(), pipe, None, on_open_browser, io)

    @property
    def attached(self) -> bool:
        """True for a channel to an agent: the worker is not ours to stop."""
        return self._process is None

    @property
    def pid(self) -> int:
        """The id of the process that holds the tokens."""
        return self._worker_pid

    def next_id(self) -> int:
        """A fresh call id."""
        return next(self._ids)

    async def call(self, message: ToWorker, timeout: float | None) -> FromWorker | None:
        """Send `message` and await the answer with its id; None once `timeout` s passed.

        Cancelling the awaiting task gives the call up and tells the worker (Cancel).
        """
        loop = self._loop
        future: asyncio.Future[Outcome] = loop.create_future()
        ident = message.id
        self._calls.add(ident, future)
        timer = None if timeout is None else loop.call_later(
            max(timeout, 0.0), _expire, future)
        try:
            await self._send_for(message)
            outcome = await future
        except asyncio.CancelledError:
            if self._calls.pop(ident) is not None:
                self.send_quietly(Cancel(ident))
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if outcome is None:  # the deadline passed first
            if self._calls.pop(ident) is not None:
                self.send_quietly(Cancel(ident))
            return None
        if isinstance(outcome, ServiceNowError):
            raise outcome
        return outcome

    def send(self, message: ToWorker) -> None:
        """Send `message` without waiting for an answer."""
        broken = self._calls.broken
        if broken is not None:
            raise broken
        with self._send_lock:
            self._pipe.send(message)

    def send_quietly(self, message: ToWorker) -> None:
        """Send `message` if the worker is still there; from a thread if a large body is
        being written right now (the loop does not wait for it)."""
        if self._calls.broken is not None:
            return
        if not self._send_lock.acquire(blocking=False):
            try:
                self._loop.run_in_executor(None, self._send_ignoring, message)
            except RuntimeError:  # the loop is closed (interpreter exit): wait for the lock
                self._send_ignoring(message)
            return
        try:
            self._pipe.send(message)
        except (OSError, ValueError):
            pass
        finally:
            self._send_lock.release()

    def _send_ignoring(self, message: ToWorker) -> None:
        try:
            self._send_locked(message)
        except (OSError, ValueError):
            pass

    async def open(self, message: ToWorker) -> StreamCall:
        """Send `message` and park a call for its several messages; `next()` takes them."""
        call = StreamCall(message.id)
        self._calls.add(call.ident, call)
        await self._send_for(message)
        return call

    async def next(self, call: StreamCall, timeout: float | None) -> FromWorker | None:
        """The call's next message, awaiting it up to `timeout` s; None once that passed.

        A call that gets nothing in time, or whose task is cancelled meanwhile, is given up:
        the worker is told (Cancel). An Error message is returned; a worker that failed raises
        its WorkerError.
        """
        if not call.inbox and not call.done:
            loop = self._loop
            waiter = call.waiter = loop.create_future()
            timer = None if timeout is None else loop.call_later(
                max(timeout, 0.0), _expire_waiter, waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                self.close_call(call)
                raise
            finally:
                call.waiter = None
                if timer is not None:
                    timer.cancel()
        if not call.inbox:
            self.close_call(call)
            return None
        outcome = call.inbox.popleft()
        if isinstance(outcome, ServiceNowError):
            raise outcome
        return outcome

    def close_call(self, call: StreamCall) -> None:
        """Stop a call before its last message: the worker is told, later messages dropped."""
        call.closing = True
        call.inbox.clear()
        if not call.done:
            call.done = True
            if self._calls.pop(call.ident) is not None:
                self.send_quietly(Cancel(call.ident))

    async def send_body(self, message: ToWorker) -> None:
        """Send a message that may carry a large body (an upload's piece) without waiting on
        the loop; OSError or ValueError when the worker is gone."""
        body = getattr(message, "body", None)
        if body is not None and len(body) > _SEND_ON_LOOP:
            await self._loop.run_in_executor(None, self._send_locked, message)
        else:
            self._send_locked(message)

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        """Run `callback(*args)` on the loop's thread (from any thread)."""
        self._loop.call_soon_threadsafe(callback, *args)

    async def _send_for(self, message: ToWorker) -> None:
        body = getattr(message, "body", None)
        try:
            if body is not None and len(body) > _SEND_ON_LOOP:
                await self._loop.run_in_executor(None, self._send_locked, message)
            else:
                self._send_locked(message)
        except (OSError, ValueError):
            pass  # the worker is gone: the pipe's end shows it and fails the call

    def _send_locked(self, message: ToWorker) -> None:
        with self._send_lock:
            self._pipe.send(message)

    # --- what the worker says (on the loop's thread) -------------------------------------

    def _received(self, messages: list[Message]) -> None:
        self._calls.heard = True
        for message in messages:
            route(message, self)

    def deliver(self, ident: int, outcome: FromWorker) -> None:
        """Hand `outcome` to the call waiting for `ident`; drop a late one."""
        slot = self._calls.get(ident)
        if slot is None:
            return  # its caller gave up
        if isinstance(slot, StreamCall):
            if is_last(outcome):
                self._calls.pop(ident)
                slot.done = True
            slot.inbox.append(outcome)
            slot.wake()
            return
        self._calls.pop(ident)
        if not slot.done():
            slot.set_result(outcome)

    def open_browser(self, url: str) -> None:
        """Show the consent page from a thread: the loop goes on."""
        threading.Thread(target=self.on_open_browser, args=(url,), name="snworker-browser",
                         daemon=True).start()

    def refused(self, error: WorkerError) -> None:
        """The worker refused to start."""
        self._fail_all(error)

    def worker_pid(self, pid: int) -> None:
        """The process that holds the tokens."""
        self._worker_pid = pid

    def _ended(self, error: Exception | None) -> None:
        if error is not None:
            logger.error("snworker: unreadable message from the worker (%s)", error)
        if self._closing:
            self._fail_all(ConnectionClosedError("the connection is closed"))
            return
        # Why it ended needs the exit status, which may come a moment after the pipe closed:
        # wait for it in a thread. Calls made meanwhile wait too, and fail with the rest.
        future = self._loop.run_in_executor(None, self._failure)
        future.add_done_callback(lambda done: self._fail_all(
            done.result() if not done.cancelled() and done.exception() is None
            else WorkerError("the worker is gone")))

    def _failure(self) -> WorkerError:
        process = self._process
        if process is not None:
            process.join(1.0)
        return worker_failure(self._closing, process is None, self._calls.heard,
                              None if process is None else process.exitcode)

    def _fail_all(self, error: WorkerError) -> None:
        for slot in self._calls.fail_all(error):
            if isinstance(slot, StreamCall):
                slot.inbox.append(error)
                slot.done = True
                slot.wake()
            elif not slot.done():
                slot.set_result(error)

    # --- shutdown ------------------------------------------------------------------------

    async def close(self, timeout: float) -> None:
        """Wait up to `timeout` s for the worker to exit (reading its last log records), then
        terminate it, then kill it; all off the loop."""
        self._closing = True
        process = self._process
        if process is not None:
            await self._loop.run_in_executor(None, _stop, process, timeout)
        self._fail_all(ConnectionClosedError("the connection is closed"))
        self._release()

    def release(self) -> None:
        """Let go of the worker without stopping it (an agent)."""
        self._closing = True
        self._fail_all(ConnectionClosedError("the connection is closed"))
        self._release()

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        self._watch.close()
        closers = [self._pipe.close]
        if self._process is not None:
            closers.append(self._process.close)
        for release in closers:
            try:
                release()
            except OSError:
                pass


def _expire_waiter(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _expire(future: asyncio.Future[Outcome]) -> None:
    if not future.done():
        future.set_result(None)


def _stop(process: WorkerProcess, timeout: float) -> None:
    if not process.join(timeout):
        process.terminate()
        if not process.join(1.0):
            process.kill()
            process.join(1.0)
