"""What an agent's clients may hold in flight: per client, and all of them together.

    client frame being read  --take(piece)-->  ClientBudget  --+-->  InFlight (every client)
    request carried out, or message handled  --give(size)-->  both

A client's frame takes its bytes piece by piece as they arrive (`snworker.pipes.fd`), and gives
them back once its message has been answered. A piece that does not fit waits, up to the
client's read deadline, for the client's own requests (or others') to finish; a frame that can
never fit is refused at once. Either way the client is dropped, and nobody else notices.
"""

from __future__ import annotations

import threading
import time

from snworker.policy import AgentLimits


class InFlight:
    """The bytes all clients of one agent hold in flight, and the condition they wait on."""

    def __init__(self, limits: AgentLimits) -> None:
        self.limits = limits
        self.held = 0
        self.changed = threading.Condition()

    def client(self) -> ClientBudget:
        """A budget for one more client."""
        return ClientBudget(self)


class ClientBudget:
    """One client's share: what its frame being read and its requests under way hold."""

    def __init__(self, shared: InFlight) -> None:
        self._shared = shared
        limits = shared.limits
        self.stall = limits.stall
        self.most = min(limits.client_bytes, limits.total_bytes)  # the largest frame that fits
        self.held = 0
        self._unsettled = 0  # taken by the frame being read, not yet handed to its message

    def take(self, size: int) -> bool:
        """Reserve `size` bytes more, waiting up to `stall` seconds; False when refused."""
        shared, limits = self._shared, self._shared.limits
        deadline = time.monotonic() + self.stall
        with shared.changed:
            while (self.held + size > limits.client_bytes
                   or shared.held + size > limits.total_bytes):
                left = deadline - time.monotonic()
                if left <= 0 or self._unsettled + size > self.most:
                    return False
                shared.changed.wait(left)
            self.held += size
            shared.held += size
            self._unsettled += size
            return True

    def settle(self) -> int:
        """What the frame just read took: its message holds it now, until `give`."""
        with self._shared.changed:
            taken, self._unsettled = self._unsettled, 0
            return taken

    def give(self, size: int) -> None:
        """Give back `size` bytes, waking whoever waits for room."""
        if not size:
            return
        with self._shared.changed:
            self.held -= size
            self._shared.held -= size
            self._shared.changed.notify_all()
