"""The worker as an agent: one authorized worker shared by a user's processes, as ssh-agent is.

    snworker agent start  --pipe-->  the agent: consent once  -->  listens on a socket only its
                                                                   user can open
    client processes      --socket (one Peer each)-->  the same Worker: transport, tokens,
                                                       redaction, checks for every client

Started, hardened and isolated exactly as a spawned worker (`boot.py`), it then outlives the
process that started it. A client's Connect attaches it to the grant there is, or, when the grant
can no longer be renewed, runs one consent for everyone who asks meanwhile. A client's Disconnect
only detaches it; a client that crashes or writes garbage is dropped, and nobody else notices.
The agent stops, revoking its grant, on `agent stop`, on SIGTERM, after `idle` seconds without a
client, when its grant is gone and nobody reconnects within `idle` seconds, and when its socket's
directory is removed (the end of the user's login session, for $XDG_RUNTIME_DIR).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from snworker.messages import Connect, Control, Disconnect, FromWorker, Request, Result
from snworker.pipes import Pipe
from snworker.policy import AgentLimits
from snworker.worker.agent.limits import ClientBudget, InFlight
from snworker.worker.failures import Failure, InvalidRequest
from snworker.worker.harden import Report
from snworker.worker.main import Worker
from snworker.worker.peer import Flight, Peer

logger = logging.getLogger("snworker.worker")

# How often the agent looks at its idle time, its grant and its socket.
_LOOK_EVERY = 0.5
_REVOKE_AT_STOP = 5.0
# A foreground agent whose command ended: gone within a second or so, as an orphaned worker.
_REVOKE_WHEN_ITS_COMMAND_ENDS = 1.0


class Listener(Protocol):
    """Where clients connect: a Unix socket, or a named pipe on Windows."""

    address: str

    def accept(self, budget: ClientBudget) -> tuple[Pipe, str, bool] | None:
        """The next client this agent serves, and whether it runs as the agent's own user; its
        frames held to `budget` (and its answers written within `budget.stall` seconds, where
        the OS allows); None for one that was refused; OSError once closed."""
        ...

    def gone(self) -> bool:
        """True when the address no longer leads here (removed, or the session ended)."""
        ...

    def close(self) -> None:
        """Stop listening and remove the address."""
        ...


def listen(address: str, allow: dict[str, list[int]] | None = None,
           own_directory: bool = False) -> Listener:
    """Listen on `address` so that only this user's processes get in, and the `allow`ed
    users' and groups' (POSIX: {"users": [uid...], "groups": [gid...]}); with
    `own_directory`, its directory was made for this agent alone, and is removed when it stops."""
    if sys.platform == "win32":
        if allow:
            from snworker.worker.harden import Refused

            raise Refused("a Windows agent serves its own user only")
        from snworker.worker.agent._win32 import listen as listen_win32

        return listen_win32(address)
    else:
        from snworker.worker.agent._posix import listen as listen_posix

        allowed = allow or {}
        return listen_posix(address, [int(u) for u in allowed.get("users", ())],
                            [int(g) for g in allowed.get("groups", ())], own_directory)


class AgentWorker(Worker):
    """A Worker that serves a peer per client, and stops on its own terms."""

    def __init__(self, hardening: Report, idle: float, limits: AgentLimits) -> None:
        super().__init__(hardening)
        self._idle = idle
        self._limits = limits
        self._in_flight = InFlight(limits)
        self._settings: Connect | None = None  # the consent every later one repeats
        self._waiting: list[tuple[Peer, int]] = []  # Connects answered by the consent under way
        self._consent_owner: tuple[Peer, int] | None = None
        self._stop_reason = ""
        self._revoke_within = _REVOKE_AT_STOP
        self._clients_seen = 0
        self._idle_since = time.monotonic()
        self._consent_lock = threading.Lock()

    def serve_agent(self, starter: Pipe, listener: Listener) -> None:
        """Serve the process that started the agent, then every client, until told to stop."""
        self._listener = listener
        self.add_peer(starter, "starter")
        threading.Thread(target=self._accept, args=(listener,), name="snworker-agent-accept",
                         daemon=True).start()
        self._watch(listener)
        logger.info("snworker agent: stopping (%s)", self._stop_reason)
        self._revoke(self._revoke_within)
        self._wipe("the agent stopped")
        self._forget_secrets()
        listener.close()
        for peer in self.peers():
            self.drop_peer(peer)

    def stop(self, reason: str, revoke_within: float = _REVOKE_AT_STOP) -> None:
        """Stop serving: the grant is revoked on the way out, within `revoke_within` s."""
        if not self._stop_reason:
            self._stop_reason = reason
            self._revoke_within = revoke_within
        self._done.set()

    # --- clients ---------------------------------------------------------------------------

    def _accept(self, listener: Listener) -> None:
        while not self._done.is_set():
            budget = self._in_flight.client()
            try:
                accepted = listener.accept(budget)
            except OSError:
                return
            if accepted is None:
                continue
            pipe, who, own = accepted
            served = sum(1 for peer in self.peers() if peer.name != "starter")
            if served >= self._limits.clients:
                logger.warning("snworker agent: refused %s: %d clients are served already",
                               who, served)
                pipe.close()
                continue
            self._clients_seen += 1
            self.add_peer(pipe, f"client-{self._clients_seen}", own_user=own, budget=budget)
            logger.debug("snworker agent: %s attached", who)

    def _watch(self, listener: Listener) -> None:
        ungranted_since: float | None = None
        while not self._done.wait(_LOOK_EVERY):
            now = time.monotonic()
            if listener.gone():
                self.stop("its socket was removed, or the login session ended")
            elif self.clients():
                self._idle_since = now
            elif now - self._idle_since >= self._idle:
                self.stop(f"no client for {self._idle:g} s")
            tokens = self._tokens
            if tokens is not None and not tokens.granted and not self._connecting:
                ungranted_since = ungranted_since or now
                if now - ungranted_since >= self._idle:
                    self.stop("its grant ended and nobody authorized it again")
            else:
                ungranted_since = None

    def broadcast(self, message: FromWorker) -> None:
        """Log records go to the process that started the agent, not to its clients."""
        for peer in self.peers():
            if peer.name == "starter":
                peer.send(message)

    def clients(self) -> list[Peer]:
        """The attached clients: not the process that started the agent, nor one that only
        asked for its status (which must not keep an idle agent alive)."""
        return [peer for peer in self.peers() if peer.attached and peer.name != "starter"]

    # --- what peers ask ----------------------------------------------------------------------

    def connect(self, peer: Peer, message: Connect) -> None:
        """Attach `peer` to the grant there is, or run one consent for everyone waiting."""
        peer.attached = True
        settings = self._settings
        if settings is not None and message.instance_url and (
                message.instance_url, message.client_id) != (settings.instance_url,
                                                              settings.client_id):
            self._reply_failure(peer, message.id, InvalidRequest(
                f"this agent serves {settings.instance_url} for client id "
                f"{settings.client_id}, not {message.instance_url}"))
            return
        with self._consent_lock:
            tokens = self._tokens
            if tokens is not None and tokens.granted:
                peer.send(self._connected_message(message.id))
                return
            if settings is None and not message.instance_url:
                self._reply_failure(peer, message.id, Failure("the agent is not authorized yet"))
                return
            self._waiting.append((peer, message.id))
            if self._connecting:
                return  # the consent under way answers this one too
            if settings is None:
                self._settings = settings = message
            self._consent_owner = (peer, message.id)
            # The agent's own settings, grant and access policy: a client changes none of them.
            super().connect(peer, dataclasses.replace(settings, id=message.id))

    def carry_out(self, peer: Peer, request: Request, flight: Flight) -> None:
        """A peer that sends requests uses the connection: it counts as a client."""
        peer.attached = True
        super().carry_out(peer, request, flight)

    def _finish_consent(self, peer: Peer, message: Connect, failure: Failure | None) -> None:
        # Whoever asked while this consent ran gets its outcome; later askers start afresh.
        with self._consent_lock:
            waiting, self._waiting = self._waiting, []
            self._connecting = False
        for waiter, ident in waiting or [(peer, message.id)]:
            if failure is not None:
                self._reply_failure(waiter, ident, failure)
            else:
                waiter.send(self._connected_message(ident))

    def cancel(self, peer: Peer, ident: int) -> None:
        """Only the client whose browser shows the consent page can cancel it."""
        if self._consent_owner == (peer, ident):
            self._connect_cancel.set()

    def control(self, peer: Peer, message: Control) -> None:
        """`status`, or `stop`."""
        if message.command == "status":
            peer.send(Result(message.id, 200, (("Content-Type", "application/json"),),
                             json.dumps(self.status()).encode()))
        elif message.command == "stop" and not peer.own_user:
            self._reply_failure(peer, message.id, InvalidRequest(
                "only the agent's own user may stop it"))
        elif message.command == "stop":
            peer.send(Result(message.id, 200, (), None))
            self.stop("asked to")
        else:
            self._reply_failure(peer, message.id, InvalidRequest(
                f"unknown agent command {message.command!r}"))

    def status(self) -> dict[str, Any]:
        """What `snworker agent status` shows."""
        tokens = self._tokens
        settings = self._settings
        clients = self.clients()
        return {
            "pid": os.getpid(),
            "address": self._listener.address,
            "instance": settings.instance_url if settings else None,
            "client_id": settings.client_id if settings else None,
            "user": self._user,
            "granted": bool(tokens and tokens.granted),
            "token_expires_in": round(tokens.expires_in() or 0.0) if tokens else None,
            "clients": len(clients),
            "idle_timeout": self._idle,
            "idle_left": None if clients else
            round(max(0.0, self._idle - (time.monotonic() - self._idle_since))),
            "hardening": dict(self._hardening),
            "unattended": self._unattended is not None,
            "policy": self._access.describe(),
            "in_flight": self._in_flight.held,
        }

    def disconnect(self, peer: Peer, message: Disconnect) -> None:
        """A client detaches; the agent goes on."""
        self.drop_peer(peer)

    def peer_gone(self, peer: Peer) -> None:
        """A client ended (or crashed): drop it, nobody else notices."""
        self.drop_peer(peer)

    def violation(self, peer: Peer, error: Exception) -> None:
        """A client wrote garbage: drop it, nobody else notices."""
        logger.warning("snworker agent: dropped %s, which sent an unreadable message (%s)",
                       peer.name, type(error).__name__)
        self.drop_peer(peer)


def run(hardening: Report, starter: Pipe, address: str, idle: float,
        on_signal: Callable[[Callable[[], None]], None],
        allow: dict[str, list[int]] | None = None, *, limits: dict[str, Any] | None = None,
        follow: Callable[[Callable[[], None]], None] | None = None,
        own_directory: bool = False) -> None:
    """Listen on `address`, then serve as an agent within `limits` (AgentLimits' wire form);
    `on_signal` wires SIGTERM to a stop, and `follow` (a foreground agent's) the end of the
    process that started it. `own_directory`: the address's directory goes with the agent."""
    listener = listen(address, allow, own_directory)
    agent = AgentWorker(hardening, idle, AgentLimits.from_wire(limits or {}))
    on_signal(lambda: agent.stop("SIGTERM"))
    if follow is not None:
        follow(lambda: agent.stop("the command that ran it in the foreground ended",
                                  _REVOKE_WHEN_ITS_COMMAND_ENDS))
    agent.serve_agent(starter, listener)
