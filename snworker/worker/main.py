"""The worker: what every pipe it serves shares (transport, tokens, redaction), and its consent.

A spawned worker serves one pipe, its parent's (`Worker.serve`): when that parent disconnects,
dies, or writes garbage, the worker revokes its grant and exits. An agent
(`snworker.worker.agent`) serves many, one per client, with the same `Worker` underneath.
Everything that holds a token stays in this process; only redacted results leave it.
"""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import os
import platform
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

from snworker.checks import IDEMPOTENT
from snworker.messages import (
    EXIT_PROTOCOL,
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
    Pairs,
    Request,
    Result,
)
from snworker.pipes import Pipe
from snworker.policy import RetryPolicy
from snworker.worker.access import AccessPolicy
from snworker.worker.authorize import TokenEndpoint, run_flow
from snworker.worker.exchange import Cancellation, Exchange
from snworker.worker.failures import (
    ApiFailure,
    Cancelled,
    Failure,
    InvalidRequest,
    Timeout,
    TokenExpired,
)
from snworker.worker.harden import Report
from snworker.worker.peer import UPLOAD_WINDOW, Budget, Flight, Peer
from snworker.worker.redact import Redactor
from snworker.worker.tokens import TokenGrant, TokenStore
from snworker.worker.transport import (
    Answer,
    Checked,
    Transport,
    error_from_response,
    read_piece,
    response_headers,
)
from snworker.worker.unattended import UnattendedGrant

logger = logging.getLogger("snworker.worker")

# How long the worker tries to revoke the grant when its parent has died.
_REVOKE_WHEN_ORPHANED = 1.0
# How long it tries to revoke a grant that a new consent replaced.
_REVOKE_REPLACED = 5.0
# After a body this large, hand freed heap back to the system: glibc keeps it otherwise, and a
# worker that once carried 8 MB would hold some 160 MB for the rest of its life.
_TRIM_AT = 1 << 20
# A streamed body is read from the instance this much at a time.
STREAM_PIECE = 1 << 18
# Pieces of a stream read and redacted, waiting to be written to the pipe.
_OUTBOX = 4
# How long a stream waits for its reader (credit for an answer, the next piece of an upload)
# before it gives up: a parent that is alive but stopped reading must not hold a connection
# for ever. A parent that is gone ends the stream at once.
STALL_LIMIT = 900.0
_CURRENT_USER_PATH = "/api/now/table/sys_user"
_CURRENT_USER_QUERY = (
    ("sysparm_query", "sys_id=javascript:gs.getUserID()"),
    ("sysparm_limit", "1"),
    ("sysparm_fields", "sys_id,user_name,name"),
    ("sysparm_exclude_reference_link", "true"),
)


@dataclass(slots=True)
class _Streamed:
    """An answer whose body goes to the parent in pieces: still open (`raw`), or read whole."""

    status: int
    headers: Pairs
    raw: Any
    body: bytes


class Worker:
    """One connection's worth of state: the transport, the tokens, the peers it answers."""

    def __init__(self, hardening: Report) -> None:
        _keep_freed_memory_a_while()
        self._hardening = hardening
        self._redactor = Redactor()
        self._transport: Transport | None = None
        self._tokens: TokenStore | None = None
        self._endpoint: TokenEndpoint | None = None
        self._connect_id: int | None = None
        self._connect_cancel = threading.Event()
        self._connecting = False
        self._origin: tuple[str, str] | None = None  # (instance, client id), once connected
        self._user: dict[str, str] | None = None
        self._policy = RetryPolicy()
        self._access = AccessPolicy(None)
        self._unattended: UnattendedGrant | None = None
        self._ready = threading.Event()
        self._done = threading.Event()
        self._orphaned = threading.Lock()
        self._peers: set[Peer] = set()
        self._peers_lock = threading.Lock()

    # --- serving --------------------------------------------------------------------------

    def serve(self, pipe: Pipe) -> None:
        """Serve the parent's pipe until it disconnects (an orphaned worker exits sooner)."""
        self.add_peer(pipe, "request")
        try:
            self._done.wait()
        finally:
            self._wipe("the connection is closed")
            self._forget_secrets()

    def add_peer(self, pipe: Pipe, name: str, own_user: bool = True,
                 budget: Budget | None = None) -> Peer:
        """Start answering on `pipe` (`own_user`: False for another user's process; its
        messages hold bytes from `budget`, if any)."""
        peer = Peer(pipe, self, name, budget)
        peer.own_user = own_user
        with self._peers_lock:
            self._peers.add(peer)
        peer.start()
        return peer

    def drop_peer(self, peer: Peer) -> None:
        """Stop answering `peer`."""
        with self._peers_lock:
            self._peers.discard(peer)
        peer.close()

    def peers(self) -> list[Peer]:
        """The peers being answered."""
        with self._peers_lock:
            return list(self._peers)

    def connect(self, peer: Peer, message: Connect) -> None:
        """Run the consent for `message` in a thread of its own."""
        refusal = self._refuse_connect(message)
        if refusal is not None:
            self._reply_failure(peer, message.id, InvalidRequest(refusal))
            return
        self._connect_id = message.id
        self._connect_cancel = threading.Event()
        self._connecting = True
        threading.Thread(target=self._connect, args=(peer, message),
                         name="snworker-authorize", daemon=True).start()

    def cancel(self, peer: Peer, ident: int) -> None:
        """The parent stopped waiting for its consent."""
        if ident == self._connect_id:
            self._connect_cancel.set()

    def control(self, peer: Peer, message: Control) -> None:
        """Only an agent takes commands."""
        self._reply_failure(peer, message.id, InvalidRequest("this worker is not an agent"))

    def carry_out(self, peer: Peer, request: Request, flight: Flight) -> None:
        """Answer `request`; a bug or a failure becomes an Error, never a lost answer."""
        if not self._ready.is_set():
            self._reply_failure(peer, request.id, Failure("the worker is not connected yet"))
            return
        cancelled = flight.cancelled
        try:
            executed = self._execute(request, cancelled, flight=flight, peer=peer)
            if type(executed) is _Streamed:
                flight.grant(request.window)  # the window the parent opened
                self._stream(peer, request.id, flight, executed)
                return
            assert type(executed) is Result
            answer: Result | Error = executed
        except Failure as exc:
            answer = self._error(request.id, exc)
        except Exception as exc:  # a bug must not cost the caller its answer
            logger.exception("snworker worker: request failed unexpectedly")
            answer = self._error(request.id, ApiFailure(f"internal error: {type(exc).__name__}"))
        if not cancelled.is_set() or flight.refused:
            peer.send(answer)
        if type(answer) is Result and answer.body is not None and len(answer.body) >= _TRIM_AT:
            del answer
            _release_freed_memory()

    # --- connecting -----------------------------------------------------------------------

    def _refuse_connect(self, message: Connect) -> str | None:
        """Why this worker will not run `message`'s consent, or None."""
        if self._connecting:
            return "an authorization is already under way"
        if self._origin is not None and self._origin != (message.instance_url, message.client_id):
            # A worker serves one instance and client for its life: a connection that was
            # authorized there can be authorized again there, nowhere else.
            return "this worker serves another instance or client id; start a new connection"
        return None

    def _connect(self, peer: Peer, message: Connect) -> None:
        """Run the consent: the first for this worker, or again for the same connection."""
        try:
            if self._transport is None:
                self._install_logging(message.log_level)
                logger.debug("snworker worker: process %d, sys.path %s", os.getpid(), sys.path)
                self._policy = RetryPolicy.from_wire(message.policy)
                # Fixed by the first consent: a later Connect cannot lift it.
                self._access = AccessPolicy.from_wire(message.access)
                _check_connect(message)
                self._transport = Transport(message.instance_url, self._policy, message.proxy,
                                            message.ca_bundle)
                self._endpoint = TokenEndpoint(self._transport, message.client_id,
                                               message.request_timeout, self._redactor)
                self._origin = (message.instance_url, message.client_id)
            else:
                _check_connect(message)
            transport, endpoint = self._transport, self._endpoint
            assert endpoint is not None
            if message.grant:
                unattended = self._unattended_grant(message)
                grant = unattended.run(self._connect_cancel)
            else:
                unattended = None
                grant = run_flow(
                    transport, endpoint, message.client_id, message.redirect_uris,
                    tuple(message.scopes), message.authorization_timeout,
                    lambda url: peer.send(OpenBrowser(message.id, url)), self._connect_cancel,
                    self._redactor,
                )
            tokens = self._tokens
            if tokens is None:
                tokens = TokenStore(endpoint.refresh, self._policy.refresh_margin,
                                    renew=unattended.renew if unattended else None)
                tokens.install(grant)
                self._tokens = tokens
            else:
                self._replace_grant(tokens, grant)
            logger.info("snworker worker: authorized at %s; access token valid %.0f s",
                        message.instance_url, grant.expires_at - time.monotonic())
            user = self._current_user(message.request_timeout)
        except Failure as exc:
            failure: Failure | None = exc
        except ValueError as exc:
            failure = InvalidRequest(str(exc))
        else:
            failure = None
            self._user = user
            self._ready.set()
            logger.info("snworker worker: hardening %s", _describe(self._hardening))
        self._finish_consent(peer, message, failure)

    def _unattended_grant(self, message: Connect) -> UnattendedGrant:
        """The grant `message` names, its secrets read now; the same one for a reconnect."""
        if self._unattended is None:
            assert self._transport is not None
            if not isinstance(message.grant, tuple):
                raise InvalidRequest("a malformed grant")
            self._unattended = UnattendedGrant(message.grant, self._transport,
                                               message.client_id, message.request_timeout,
                                               self._redactor)
        return self._unattended

    def _finish_consent(self, peer: Peer, message: Connect, failure: Failure | None) -> None:
        # Done before the answer goes out: whoever reads it may ask for another consent at once.
        self._connecting = False
        self._connected(peer, message, failure)

    def _connected(self, peer: Peer, message: Connect, failure: Failure | None) -> None:
        """Tell `peer` how its consent ended."""
        if failure is not None:
            self._reply_failure(peer, message.id, failure)
        else:
            peer.send(self._connected_message(message.id))

    def _connected_message(self, ident: int) -> Connected:
        assert self._origin is not None
        return Connected(ident, self._origin[0], self._user, os.getpid(), self._hardening)

    def _replace_grant(self, tokens: TokenStore, grant: TokenGrant) -> None:
        """A new consent for the same connection: use its grant; revoke the one it replaces."""
        previous = tokens.last_refresh_token
        tokens.install(grant)
        endpoint = self._endpoint
        if previous is not None and previous != grant.refresh_token and endpoint is not None:
            threading.Thread(target=endpoint.revoke, args=(previous, _REVOKE_REPLACED),
                             name="snworker-revoke", daemon=True).start()

    def _current_user(self, timeout: float) -> dict[str, str] | None:
        request = Request(0, "GET", _CURRENT_USER_PATH, _CURRENT_USER_QUERY, (), False, timeout)
        try:
            # The worker's own read of its user, not the parent's: outside the access policy.
            result = self._execute(request, threading.Event(), internal=True)
            assert type(result) is Result
        except TokenExpired:
            raise
        except Failure as exc:
            answered = f"answered {exc.status}" if exc.status else "failed"
            logger.info("snworker worker: current_user is None: GET %s %s (%s); the instance "
                        "may not let this user read sys_user. The connection works.",
                        _CURRENT_USER_PATH, answered, exc.message)
            return None
        try:
            records = json.loads(result.body or b"{}").get("result")
            record = records[0] if isinstance(records, list) and records else None
        except (ValueError, AttributeError):
            return None
        if not isinstance(record, dict):
            return None
        return {k: str(record.get(k, "")) for k in ("sys_id", "user_name", "name")}

    # --- requests -------------------------------------------------------------------------

    def _execute(self, request: Request, cancelled: threading.Event, internal: bool = False,
                 flight: Flight | None = None, peer: Peer | None = None,
                 ) -> Result | _Streamed:
        transport, tokens = self._transport, self._tokens
        if transport is None or tokens is None:
            raise Failure("the worker is not connected")
        checked = transport.check(request)
        if not internal:
            self._access.check(checked.method, checked.url, checked.body)
        method = checked.method
        started = time.monotonic()
        deadline = started + min(checked.timeout, transport.policy.total_timeout)

        exchange = cancelled.exchange if isinstance(cancelled, Cancellation) else Exchange()
        keep_open: Callable[[int], bool] | None = None
        if checked.window:
            def keep_open(status: int) -> bool:
                # What may be retried, or is answered with an Error, is read whole.
                retried = checked.retry and transport.retryable(method, status)
                return status != 401 and not retried and (
                    status < 400 or not checked.raise_for_status)

        if checked.upload is not None:
            if peer is None or flight is None:
                raise InvalidRequest("a streamed body needs a parent to send it")
            upload, parent, inflight = checked.upload, peer, flight

            def pieces() -> Iterator[bytes]:
                return self._pieces(parent, request.id, inflight, upload)

            # A body sent once cannot be sent again: no retry once it started (a status
            # worth retrying comes back as it is), only when no connection could be made.
            def attempt(remaining: float) -> Answer:
                return self._send_authorized(checked, tokens, remaining, exchange, pieces,
                                             keep_open)

            response = transport.call(attempt, deadline, cancelled, resend_on_error=False,
                                      retry=checked.retry)
        else:
            def attempt(remaining: float) -> Answer:
                answer = self._send_authorized(checked, tokens, remaining, exchange, None,
                                               keep_open)
                return transport.classify(method, answer) if checked.retry else answer

            # Without `retry` the caller's client retries as it sees fit (a requests Retry,
            # say): the worker makes one attempt, so retries never stack. Renewing the token
            # after a 401 and sending once more is not a retry the caller could make, and stays.
            response = transport.call(attempt, deadline, cancelled,
                                      resend_on_error=method in IDEMPOTENT, retry=checked.retry)
        try:
            headers = self._redactor.pairs(response_headers(response))
        except BaseException:
            response.close()
            raise
        status = response.status
        if response.raw is not None:
            # A Cancel aborts the body's reads too: the connection is the request's still.
            connection = getattr(response.raw, "_connection", None)
            if connection is not None:
                exchange.attach(connection)
            return _Streamed(status, headers, response.raw, b"")
        body = self._redactor.body(response.body)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s -> %d, %d bytes in %.1f ms", method, request.path.split("?")[0],
                         status, len(body), (time.monotonic() - started) * 1000)
        if status >= 400 and checked.raise_for_status:
            raise error_from_response(status, body, headers)
        if checked.window:
            return _Streamed(status, headers, None, body)
        return Result(request.id, status, headers, body)

    def _stream(self, peer: Peer, ident: int, flight: Flight, answer: _Streamed) -> None:
        """Send a streamed answer: its Head, then its body in Chunks within the parent's credit.

        The body is redacted piece by piece, across their borders. This thread reads and
        redacts; a thread of the stream's own writes to the pipe, so reading the next piece
        from the instance overlaps sending the last one (at most _OUTBOX pieces wait between
        them). A parent that closes the stream (Cancel) or goes away ends it: the HTTP response
        is closed, not read on.
        """
        raw, whole = answer.raw, memoryview(answer.body)
        redactor = self._redactor.stream()
        outbox: queue.Queue[FromWorker | None] = queue.Queue(_OUTBOX)
        threading.Thread(target=_send_all, args=(peer, outbox), name="snworker-stream",
                         daemon=True).start()
        finished = False
        try:
            # A body that ends within its first piece goes as one Result: a small answer
            # costs a stream no more than a plain call.
            ahead: list[bytes] = []
            if raw is not None:
                ahead.append(read_piece(raw, STREAM_PIECE))
                if len(ahead[0]) < STREAM_PIECE:
                    ahead.append(read_piece(raw, STREAM_PIECE) if ahead[0] else b"")
                finished = len(ahead) == 2 and not ahead[1]
                body = ahead[0]
            else:
                finished, body = len(whole) <= STREAM_PIECE, bytes(whole)
            if finished:
                outbox.put(Result(ident, answer.status, answer.headers,
                                  self._redactor.body(body)))
                return
            outbox.put(Head(ident, answer.status, answer.headers))
            while True:
                if flight.credit(STALL_LIMIT) <= 0:
                    if flight.cancelled.is_set():
                        outbox.put(Chunk(ident, True, b""))  # ends the stream for the parent
                        return
                    raise Timeout(f"the stream was not read for {STALL_LIMIT:g} s; it was closed")
                if ahead:
                    piece = ahead.pop(0)
                elif raw is not None:
                    piece = read_piece(raw, STREAM_PIECE)
                else:
                    piece, whole = bytes(whole[:STREAM_PIECE]), whole[STREAM_PIECE:]
                finished = not piece
                clean = redactor.feed(piece, finished)
                if clean or finished:
                    flight.spend(len(clean))
                    outbox.put(Chunk(ident, finished, clean))
                if finished:
                    return
        except Failure as exc:  # also when cancelled: the parent may be waiting for the end
            outbox.put(self._error(ident, exc))
        except Exception as exc:  # a bug must not leave the parent waiting
            logger.exception("snworker worker: a stream failed unexpectedly")
            outbox.put(self._error(ident, ApiFailure(f"internal error: {type(exc).__name__}")))
        finally:
            outbox.put(None)
            if raw is not None:
                if not finished:
                    raw.close()  # the rest is never read: the connection is not reused
                raw.release_conn()

    def _pieces(self, peer: Peer, ident: int, flight: Flight,
                length: int) -> Iterator[bytes]:
        """The body the parent uploads, piece by piece, as urllib3 sends it on.

        The worker grants the parent a window, and more credit as each piece leaves. It sends
        exactly the length declared (a longer body is cut off, a shorter one fails the request,
        and either way the connection is closed, never reused), so no byte of the parent's can
        frame a second request.
        """
        peer.send(Credit(ident, UPLOAD_WINDOW))
        sent = owed = 0
        while True:
            chunk = flight.take(STALL_LIMIT)
            if chunk is None:
                if flight.refused:
                    raise ApiFailure("the body came faster than the worker allowed; the request "
                                     "was stopped")
                if flight.cancelled.is_set():
                    raise Cancelled("the caller stopped the upload")
                raise Timeout(f"no more of the body came for {STALL_LIMIT:g} s")
            data = chunk.body
            sent += len(data)
            if length >= 0 and sent > length:
                raise ApiFailure(f"the body was longer than the {length} bytes declared; the "
                                 "request was stopped")
            if data:
                yield data
                owed += len(data)
                if owed >= UPLOAD_WINDOW // 4:  # a quarter window at a time: fewer wake-ups
                    peer.send(Credit(ident, owed))
                    owed = 0
            if chunk.last:
                if length >= 0 and sent != length:
                    raise ApiFailure(f"the body ended after {sent} of the {length} bytes "
                                     "declared; the request was stopped")
                return

    def _send_authorized(self, checked: Checked, tokens: TokenStore, remaining: float,
                         exchange: Exchange,
                         pieces: Callable[[], Iterator[bytes]] | None = None,
                         keep_open: Callable[[int], bool] | None = None) -> Answer:
        """Send with the current token; after a 401, renew once and resend once."""
        token = tokens.access_token()
        started = time.monotonic()
        response = self._transport_send(checked, token, remaining, exchange, pieces, keep_open)
        if response.status != 401:
            return response
        renewed = tokens.renew_after_unauthorized(token)
        if pieces is not None:
            raise ApiFailure("the instance refused the access token; it was renewed, but a "
                             "streamed body is sent once: send the request again", 401)
        response = self._transport_send(checked, renewed,
                                        remaining - (time.monotonic() - started), exchange,
                                        None, keep_open)
        if response.status == 401:
            tokens.expire("the instance refused a freshly renewed access token")
            raise TokenExpired("the instance refused a freshly renewed access token; "
                               "call conn.reconnect()")
        return response

    def _transport_send(self, checked: Checked, token: str, remaining: float,
                        exchange: Exchange, pieces: Callable[[], Iterator[bytes]] | None,
                        keep_open: Callable[[int], bool] | None) -> Answer:
        assert self._transport is not None
        # Token renewals stay outside the exchange: other requests may be waiting for them.
        with exchange.current():
            if exchange.aborted:
                raise Cancelled("cancelled by the caller")
            return self._transport.send(checked, "Bearer " + token, max(remaining, 0.001),
                                        None if pieces is None else pieces(), keep_open)

    # --- disconnecting --------------------------------------------------------------------

    def disconnect(self, peer: Peer, message: Disconnect) -> None:
        """The parent is done: revoke within its timeout, wipe the tokens, stop serving."""
        self._connect_cancel.set()
        peer.cancel_all()
        timeout = message.timeout if isinstance(message.timeout, int | float) else 5.0
        self._revoke(max(0.1, min(timeout, 30.0)))
        self._wipe("the connection is closed")
        self._forget_secrets()
        if self._transport is not None:
            self._transport.close()
        self._done.set()

    def peer_gone(self, peer: Peer) -> None:
        """The parent closed its end without a Disconnect: it is gone."""
        self.parent_gone()

    def violation(self, peer: Peer, error: Exception) -> None:
        """The parent wrote garbage: revoke and exit."""
        self._protocol_violation(error)

    def _revoke(self, timeout: float) -> None:
        """Revoke the last refresh token held, refused or not, within `timeout` seconds (an
        unattended grant has none: its access token)."""
        tokens, endpoint = self._tokens, self._endpoint
        refresh_token = tokens.last_refresh_token if tokens is not None else None
        if refresh_token is None and self._unattended is not None and tokens is not None:
            refresh_token = tokens.access_token_held
        if refresh_token is None or endpoint is None:
            return
        revoked = endpoint.revoke(refresh_token, timeout)
        logger.info("snworker worker: grant %s", "revoked" if revoked else
                    "NOT revoked (the instance did not answer)")

    def parent_gone(self) -> NoReturn:
        """The parent process ended without a Disconnect: revoke, briefly, and exit."""
        # The pipe's reader and the parent watchdog may both get here: one revokes.
        with self._orphaned:
            self._revoke(_REVOKE_WHEN_ORPHANED)
            os._exit(0)

    def _protocol_violation(self, error: Exception) -> NoReturn:
        """A frame that is not a message: nothing after it can be trusted. Revoke and exit."""
        logger.error("snworker worker: an unreadable message from the parent (%s); stopping",
                     type(error).__name__)
        self._revoke(_REVOKE_WHEN_ORPHANED)
        os._exit(EXIT_PROTOCOL)

    def _wipe(self, reason: str) -> None:
        if self._tokens is not None:
            self._tokens.expire(reason)

    def _forget_secrets(self) -> None:
        """The worker is done: overwrite the secrets the unattended grant read."""
        if self._unattended is not None:
            self._unattended.wipe()

    # --- sending --------------------------------------------------------------------------

    def _reply_failure(self, peer: Peer, ident: int, failure: Failure) -> None:
        peer.send(self._error(ident, failure))

    def _error(self, ident: int, failure: Failure) -> Error:
        """The Error message for `failure`, its texts redacted: they may quote the instance."""
        redactor = self._redactor
        detail = None if failure.detail is None else redactor.text(failure.detail)
        return Error(ident, failure.kind, redactor.text(failure.message), failure.status, detail,
                     redactor.pairs(failure.headers))

    def _install_logging(self, level: int) -> None:
        root = logging.getLogger("snworker")
        root.setLevel(level if isinstance(level, int) else logging.WARNING)
        root.propagate = False
        root.addHandler(_PipeHandler(self))

    def redact(self, text: str) -> str:
        """`text` with every secret this worker has held replaced."""
        return self._redactor.text(text)

    def broadcast(self, message: FromWorker) -> None:
        """Send `message` to every peer (log records)."""
        for peer in self.peers():
            peer.send(message)


class _PipeHandler(logging.Handler):
    """Sends redacted log records to the peers."""

    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self._worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += f" ({type(record.exc_info[1]).__name__})"
            text = self._worker.redact(text)
            self._worker.broadcast(Log(0, record.levelno, record.name, text))
        except Exception:
            self.handleError(record)


def _send_all(peer: Peer, outbox: queue.Queue[FromWorker | None]) -> None:
    """Send what a stream puts in `outbox`, in order, until None."""
    while (message := outbox.get()) is not None:
        peer.send(message)


def _release_freed_memory() -> None:
    trim = _malloc_trim()
    if trim is not None:
        try:
            trim(0)
        except Exception:  # a platform call must never cost a request thread its life
            logger.debug("snworker worker: malloc_trim failed", exc_info=True)


# glibc hands the top of its heap back to the system as soon as 128 KB lie free there, and
# takes it back page by page on the next allocation: a stream that allocates and frees a piece
# of 256 KB at a time would fault in every page of every piece (measured: 600 µs per piece,
# against 10 µs with these settings, on a virtual machine where a page fault is dear). A heap
# top of up to _TRIM_AT_TOP stays; bodies above _MMAP_FROM are mapped and unmapped whole; and
# after a large body the worker still trims its heap (_release_freed_memory).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TRIM_AT_TOP = 16 << 20
_MMAP_FROM = 4 << 20


def _keep_freed_memory_a_while() -> None:
    if platform.libc_ver()[0] != "glibc":
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_AT_TOP)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_FROM)
    except (AttributeError, OSError, TypeError):
        logger.debug("snworker worker: mallopt failed", exc_info=True)


@functools.cache
def _malloc_trim() -> Any:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):
        return None


def _describe(report: Pairs) -> str:
    return "; ".join(f"{name}: {status or 'applied'}" for name, status in report)


def _check_connect(message: Connect) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(message.instance_url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not (parts.scheme == "https" or (parts.scheme == "http" and loopback)) or parts.path:
        raise InvalidRequest("the instance URL must be an https origin (http only for loopback)")
    uris = message.redirect_uris
    if not isinstance(uris, tuple) or not uris or not all(isinstance(u, str) for u in uris):
        raise InvalidRequest("the redirect URIs must be a tuple of loopback http URLs")
    for uri in uris:
        redirect = urlsplit(uri)
        if redirect.scheme != "http" or redirect.hostname != "127.0.0.1":
            # Not localhost: a browser may resolve it to ::1, where the listener is not.
            raise InvalidRequest("the redirect URI must be an http URL on 127.0.0.1")
    if message.proxy is not None:
        proxy = urlsplit(message.proxy)
        if proxy.scheme not in ("http", "https") or not proxy.hostname:
            raise InvalidRequest("the proxy must be an http:// or https:// URL")
    if message.ca_bundle is not None and not os.path.isabs(message.ca_bundle):
        raise InvalidRequest("the CA bundle must be an absolute path")

