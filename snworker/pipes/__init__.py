"""The pipe between the parent and the worker: two framings of the same messages.

    fd     POSIX: frames written and read on the pipe's file descriptor, one write per message
           and reads through a buffer; the parent waits with epoll (Linux) or selectors.
    conn   any OS: one `send_bytes`/`recv_bytes` frame per message (two for a large body); the
           parent waits with `multiprocess.connection.wait`. Windows uses it, since a named
           pipe's handle is no file descriptor.

The parent picks one (`SNWORKER_IO=fd|conn` overrides the default) and names it to the worker
when it starts it, so the two ends never disagree. Code above this package never asks which
framing or which OS it runs on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, Protocol

from snworker.errors import WorkerStartError
from snworker.messages import Message

if TYPE_CHECKING:
    import asyncio

IoMode = Literal["fd", "conn"]
IO_MODES: tuple[IoMode, ...] = ("fd", "conn")


class Pipe(Protocol):
    """One end of the pipe, framing messages. Sends are serialised by the caller."""

    @property
    def buffered(self) -> bool:
        """True when a message read ahead is waiting (a readiness wait would not see it)."""
        ...

    def send(self, message: Message) -> None:
        """Write one message; raises OSError or ValueError when the peer is gone."""
        ...

    def receive(self) -> Message:
        """Read one message; EOFError at the end, ProtocolError for a malformed frame."""
        ...

    def waiter(self, sentinel: int | None) -> Waiter:
        """Something that waits for this pipe and `sentinel` (a process sentinel) together."""
        ...

    def watch(self, loop: asyncio.AbstractEventLoop, sentinel: int | None,
              received: Received, ended: Ended) -> Watch:
        """Read on for an event loop: `received` gets the messages read, in order, and
        `ended` is called once when the pipe ends, the sentinel fires, or a frame is
        malformed (with that error). Both are called on the loop's thread."""
        ...

    def close(self) -> None:
        """Close this end."""
        ...

    def hang_up(self) -> None:
        """Stop the traffic both ways, so that a thread reading this end wakes to its end."""
        ...


Received = Callable[[list[Message]], None]
Ended = Callable[[Exception | None], None]


class Watch(Protocol):
    """Reading for an event loop; `close()` stops it (the pipe stays open)."""

    def close(self) -> None:
        """Stop reading."""
        ...


class Waiter(Protocol):
    """Waits until the pipe is readable or the sentinel fired."""

    def wait(self, timeout: float | None) -> tuple[bool, bool]:
        """(pipe readable, sentinel fired); both False when `timeout` seconds passed."""
        ...

    def close(self) -> None:
        """Release what the waiter holds."""
        ...


def default_io() -> IoMode:
    """The framing for this platform, unless `SNWORKER_IO` names another (else WorkerStartError)."""
    chosen = os.environ.get("SNWORKER_IO", "").strip().lower()
    if chosen in IO_MODES:
        if chosen == "fd" and sys.platform == "win32":
            raise WorkerStartError("SNWORKER_IO=fd needs POSIX file descriptors; use conn on "
                                   "Windows, or leave SNWORKER_IO unset")
        return chosen
    if chosen:
        raise WorkerStartError(f"SNWORKER_IO must be one of {', '.join(IO_MODES)} (or unset), "
                               f"not {chosen!r}")
    return "conn" if sys.platform == "win32" else "fd"
