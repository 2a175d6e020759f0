"""The parent's end of the boundary: starting the worker, framing, pending calls, crash detection.

Data flow:

    caller threads --(send lock)--> pipe --> worker
         ^
         | a pending call is a lock the caller blocks on; the reader releases it by id
         |
    reader thread <-- pipe <-- worker
         also waits on the worker's sentinel, so a dead worker is seen at once

Every call carries an integer id and is parked in `_pending` until the reader pops it. Whoever
pops an entry owns its outcome: the reader (an answer arrived), the caller (its deadline passed
first) or the reader's crash handler. A late answer finds no entry and is dropped.
"""

from __future__ import annotations

import itertools
import logging
import os
import selectors
import signal
import threading
from collections.abc import Callable
from typing import Any

import multiprocess
import multiprocess.spawn as mp_spawn

from snworker import messages
from snworker.errors import (
    ConnectionClosedError,
    RequestTimeoutError,
    ServiceNowError,
    WorkerCrashedError,
    WorkerError,
    WorkerStartError,
)
from snworker.messages import (
    Cancel,
    Connected,
    Error,
    FromWorker,
    Log,
    OpenBrowser,
    Result,
    ToWorker,
)

logger = logging.getLogger("snworker")

# The worker runs only snworker's own code. By default a spawned child re-imports the parent's
# __main__, which would run the application's top-level code (and its imports) in the process
# that holds the tokens, cost start-up time, and break scripts without a __main__ guard.
_spawning_worker = threading.local()
_preparation_data = mp_spawn.get_preparation_data


def _worker_preparation_data(name: str) -> dict[str, Any]:
    data: dict[str, Any] = _preparation_data(name)
    if getattr(_spawning_worker, "active", False):
        data.pop("init_main_from_name", None)
        data.pop("init_main_from_path", None)
    return data


mp_spawn.get_preparation_data = _worker_preparation_data


class _Call:
    """One pending call: the caller blocks on `done` until the reader fills `outcome`."""

    __slots__ = ("done", "outcome")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.outcome: FromWorker | ServiceNowError | None = None


class Channel:
    """A worker process and the pipe to it."""

    def __init__(self, on_open_browser: Callable[[str], None]) -> None:
        self._on_open_browser = on_open_browser
        self._ids = itertools.count(1)
        self._pending: dict[int, _Call] = {}
        self._send_lock = threading.Lock()
        self._broken: WorkerError | None = None
        self._closing = False
        self._owner_pid = os.getpid()

        ctx = multiprocess.get_context("spawn")
        self._conn, child_conn = ctx.Pipe(duplex=True)
        from snworker.worker.main import run as worker_entry  # the one import of the worker

        self._process = ctx.Process(
            target=worker_entry, args=(child_conn, os.getpid()), name="snworker-worker",
            daemon=True,
        )
        _spawning_worker.active = True
        try:
            self._process.start()
        except Exception as exc:
            raise WorkerStartError(f"could not start the snworker worker process: {exc}") from exc
        finally:
            _spawning_worker.active = False
            # Only the worker may hold its end: EOF on ours then means the worker is gone.
            child_conn.close()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._conn.fileno(), selectors.EVENT_READ, "pipe")
        self._selector.register(self._process.sentinel, selectors.EVENT_READ, "sentinel")
        self._reader = threading.Thread(
            target=self._read_loop, name="snworker-reader", daemon=True
        )
        self._reader.start()

    @property
    def pid(self) -> int | None:
        """The worker's process id."""
        return self._process.pid  # type: ignore[no-any-return]

    @property
    def owned_here(self) -> bool:
        """False in a forked child, which must not drive its parent's worker."""
        return os.getpid() == self._owner_pid

    def next_id(self) -> int:
        """A fresh call id."""
        return next(self._ids)

    def call(self, message: ToWorker, timeout: float | None) -> FromWorker:
        """Send `message` and wait up to `timeout` seconds for the answer with its id."""
        call = _Call()
        ident = message.id
        self._pending[ident] = call
        if self._broken is not None and self._pending.pop(ident, None) is not None:
            raise self._broken
        try:
            with self._send_lock:
                messages.send(self._conn, message)
        except (OSError, ValueError):
            # The reader sees the same failure and fails every pending call, this one included.
            pass
        if not call.done.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            if self._pending.pop(ident, None) is not None:
                self._send_quietly(Cancel(ident))
                raise RequestTimeoutError(f"no answer within {timeout:g} s")
            call.done.acquire()  # the reader popped it first: its answer is on the way
        outcome = call.outcome
        if isinstance(outcome, ServiceNowError):
            raise outcome
        assert outcome is not None
        return outcome

    def send(self, message: ToWorker) -> None:
        """Send `message` without waiting for an answer."""
        if self._broken is not None:
            raise self._broken
        with self._send_lock:
            messages.send(self._conn, message)

    def _send_quietly(self, message: ToWorker) -> None:
        try:
            with self._send_lock:
                messages.send(self._conn, message)
        except (OSError, ValueError):
            pass

    def check(self) -> None:
        """Raise the channel's failure, if it has one."""
        if self._broken is not None:
            raise self._broken

    # --- reader thread -------------------------------------------------------------------

    def _read_loop(self) -> None:
        conn = self._conn
        reader = messages.Reader(conn)
        try:
            while True:
                if reader.buffered:
                    self._dispatch(reader.receive())
                    continue
                for key, _ in self._selector.select():
                    if key.data == "pipe":
                        self._dispatch(reader.receive())
                    else:
                        # The worker exited. Answers it sent before dying are still in the pipe:
                        # deliver them, then fail the rest.
                        while reader.buffered or conn.poll(0):
                            self._dispatch(reader.receive())
                        raise EOFError
        except (EOFError, OSError, ValueError):
            pass
        except Exception:  # a malformed frame: the stream can no longer be trusted
            logger.exception("snworker: unreadable message from the worker")
        finally:
            self._fail_all(self._failure())

    def _dispatch(self, message: messages.Message) -> None:
        match message:
            case Result() | Error() | Connected():
                call = self._pending.pop(message.id, None)
                if call is not None:
                    call.outcome = message
                    call.done.release()
            case OpenBrowser():
                threading.Thread(
                    target=self._on_open_browser, args=(message.url,),
                    name="snworker-browser", daemon=True,
                ).start()
            case Log():
                logging.getLogger(message.logger).log(message.level, "%s", message.message)
            case _:  # a parent-bound stream never carries parent-to-worker messages
                logger.warning("snworker: unexpected message %s", type(message).__name__)

    def _failure(self) -> WorkerError:
        if self._closing:
            return ConnectionClosedError("the connection is closed")
        self._process.join(1.0)  # the pipe can close a moment before the exit status is known
        code = self._process.exitcode
        return WorkerCrashedError(_crash_message(code), code)

    def _fail_all(self, error: WorkerError) -> None:
        self._broken = error
        while self._pending:
            try:
                _, call = self._pending.popitem()
            except KeyError:
                break
            call.outcome = error
            call.done.release()

    # --- shutdown ------------------------------------------------------------------------

    def close(self, timeout: float) -> None:
        """Wait up to `timeout` s for the worker to exit, then terminate it, then kill it."""
        self._closing = True
        process = self._process
        if self.owned_here:
            process.join(timeout)
            if process.is_alive():
                process.terminate()
                process.join(1.0)
            if process.is_alive():
                process.kill()
                process.join(1.0)
        try:
            self._conn.close()
        except OSError:
            pass
        if self._reader is not threading.current_thread():
            self._reader.join(2.0)
        self._fail_all(ConnectionClosedError("the connection is closed"))
        self._selector.close()


def _crash_message(code: int | None) -> str:
    if code is None:
        return "the snworker worker process stopped answering (its pipe closed)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return (
            f"the snworker worker process was killed by {name} (exit code {code}); this usually "
            "means something outside snworker ended it (the OOM killer, a kill command, or a "
            "supervisor). Call connect() again."
        )
    return (
        f"the snworker worker process exited unexpectedly with code {code}; "
        f"its log (snworker.enable_logging('DEBUG')) may say why. Call connect() again."
    )

