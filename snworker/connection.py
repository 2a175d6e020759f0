"""connect(), ServiceNowConnection and ApiResponse: the parent side. Nothing here holds a secret."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import weakref
import webbrowser
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import replace
from types import TracebackType
from typing import Any, TypeVar, overload

from snworker.channel import Call, Channel
from snworker.core import (
    CLOSED,
    CONNECT_GRACE,
    DEADLINE_GRACE,
    ConnectionFacts,
    GrantState,
    WorkerHardening,
    conclude,
    consent_deadline,
    consented,
    error_for,
    interrupted_note,
    prepare,
    timed_out,
)
from snworker.errors import (
    AuthTokenExpiredError,
    ConnectionClosedError,
    RequestTimeoutError,
    ServiceNowError,
    WorkerError,
)
from snworker.grants import Grant
from snworker.messages import (
    Connect,
    Connected,
    Disconnect,
    Error,
    FromWorker,
    Head,
    Request,
    Result,
)
from snworker.policy import Policy, RetryPolicy
from snworker.response import ApiResponse
from snworker.settings import DEFAULT_REDIRECT_URI, connect_settings, seconds
from snworker.streams import WINDOW, StreamResponse, Upload, is_stream, send_upload

T = TypeVar("T")

logger = logging.getLogger("snworker")

_DISCONNECT_TIMEOUT = 5.0


class ServiceNowConnection(ConnectionFacts):
    """A connection to one instance through a worker process that holds the tokens."""

    _channel: Channel

    def __init__(self, channel: Channel, settings: Connect, answer: Connected) -> None:
        self._channel = channel
        self._settings = settings  # what a reconnect() asks for again
        self._instance_url = answer.instance_url
        self._client_id = settings.client_id
        self._request_timeout = settings.request_timeout
        self._hardening = WorkerHardening.from_report(answer.hardening)
        self._state = GrantState(answer.user)
        # reconnect() is single-flight: callers during one wait for its outcome, and a caller
        # whose AuthTokenExpiredError came before the last reconnect() finished needs none.
        self._reconnect_lock = threading.Lock()
        self._reconnecting: Future[None] | None = None
        self._seen = threading.local()  # the generation at this thread's last expired grant
        self._closed = False
        self._close_lock = threading.Lock()
        # Dropped without disconnect(): ask the worker to revoke and exit, without waiting
        # (this may run inside garbage collection). Interpreter exit is _disconnect_all's job.
        self._abandoned = weakref.finalize(self, _abandon, channel)
        self._abandoned.atexit = False

    @overload
    def execute_api_request(
        self, path: str, http_method: str = ..., data: Any = ...,
        suppress_response_body: bool = ..., headers: Mapping[str, str] | None = ..., *,
        params: Mapping[str, Any] | None = ..., timeout: float | None = ...,
        raise_for_status: bool = ..., retry: bool = ..., result_type: None = ...,
    ) -> ApiResponse[Any]: ...

    @overload
    def execute_api_request(
        self, path: str, http_method: str = ..., data: Any = ...,
        suppress_response_body: bool = ..., headers: Mapping[str, str] | None = ..., *,
        params: Mapping[str, Any] | None = ..., timeout: float | None = ...,
        raise_for_status: bool = ..., retry: bool = ..., result_type: type[T],
    ) -> ApiResponse[T]: ...

    def execute_api_request(
        self,
        path: str,
        http_method: str = "GET",
        data: Any = None,
        suppress_response_body: bool = False,
        headers: Mapping[str, str] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        raise_for_status: bool = True,
        retry: bool = True,
        result_type: Any = None,
    ) -> ApiResponse[Any]:
        """Send one request to the instance through the worker.

        Args:
            path: path on the instance, e.g. "/api/now/table/incident" (never a URL).
            http_method: GET, POST, PUT, PATCH, DELETE or HEAD.
            data: a JSON-serialisable body, or bytes sent as they are; a binary file object
                or an iterator of bytes streams up (sent with its length when a seekable file
                tells it, else chunked).
            suppress_response_body: ask the instance for no body (X-no-response-body).
            headers: extra request headers (not Authorization, Cookie, Host or
                Proxy-Authorization).
            params: query parameters; a list value repeats the parameter, booleans are
                sent as "true"/"false", None values are left out.
            timeout: deadline in seconds for the whole call, retries included.
            raise_for_status: False returns a 4xx/5xx answer as it came (redacted) instead
                of raising ApiRequestError.
            retry: False makes one attempt: no retries on transient failures, for a caller
                that retries on its own (the access token is still renewed after a 401).
            result_type: the type of `data`, for static type checkers only.

        Returns:
            The response, for any status below 400 (3xx redirects are not followed), and for
            any status at all with raise_for_status=False.

        Raises:
            InvalidRequestError: the request was refused before anything was sent.
            ApiRequestError: the instance answered 4xx/5xx (unless raise_for_status=False), or
                the network failed.
            RequestTimeoutError: the deadline passed.
            AuthTokenExpiredError: the grant cannot be renewed; call conn.reconnect().
            WorkerError: the worker is gone (WorkerCrashedError, ConnectionClosedError).
        """
        if self._closed:
            raise ConnectionClosedError(CLOSED)
        state = self._state
        if state.expired is not None:
            self._seen.generation = state.generation
            state.check()
        deadline = self._request_timeout if timeout is None else seconds(timeout, "timeout")
        upload = Upload(data) if is_stream(data) else None
        request = prepare(self._channel.next_id(), path, http_method, data,
                          suppress_response_body, headers, params, deadline, raise_for_status,
                          retry, upload=None if upload is None else upload.length)
        _, answer = self._exchange(request, upload)
        try:
            return conclude(request, answer, state)
        except AuthTokenExpiredError:
            self._seen.generation = state.generation
            raise

    def stream_api_request(
        self,
        path: str,
        http_method: str = "GET",
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        raise_for_status: bool = True,
        retry: bool = True,
    ) -> StreamResponse:
        """Send one request and read its answer's body in pieces, as it comes.

        Status and headers are there when this returns; `iter_bytes()` yields the body. Use
        it as a context manager: leaving it closes the stream, read to its end or not (the
        worker then closes the HTTP response). Neither process holds more of the body than a
        window of a few megabytes; the worker redacts it across the borders of its pieces.

        Args:
            path, http_method, data, headers, params: as for `execute_api_request`; `data`
                may be a binary file object or an iterator of bytes, which streams up.
            timeout: seconds to wait for the answer to begin, then for each piece of it.
            raise_for_status: False: a 4xx/5xx answer is streamed like any other, instead of
                raising ApiRequestError.
            retry: False makes one attempt, as for `execute_api_request`. A body streamed up
                is sent once in any case: it is retried only when no connection was made.

        Raises:
            as `execute_api_request`; while reading, RequestTimeoutError, ApiRequestError
            (the network failed mid-body) and WorkerError.
        """
        if self._closed:
            raise ConnectionClosedError(CLOSED)
        state = self._state
        if state.expired is not None:
            self._seen.generation = state.generation
            state.check()
        deadline = self._request_timeout if timeout is None else seconds(timeout, "timeout")
        upload = Upload(data) if is_stream(data) else None
        request = prepare(self._channel.next_id(), path, http_method, data, False, headers,
                          params, deadline, raise_for_status, retry, WINDOW,
                          None if upload is None else upload.length)
        call, answer = self._exchange(request, upload)
        if type(answer) is Error:
            raise self._stream_error(answer)
        if type(answer) is Result:  # a body that ended within its first piece, whole
            return StreamResponse(self._channel, call,
                                  Head(answer.id, answer.status, answer.headers),
                                  deadline + DEADLINE_GRACE, self._stream_error,
                                  answer.body or b"")
        if type(answer) is not Head:
            self._channel.close_call(call)
            raise ServiceNowError(f"unexpected answer from the worker: {type(answer).__name__}")
        return StreamResponse(self._channel, call, answer, deadline + DEADLINE_GRACE,
                              self._stream_error)

    def _exchange(self, request: Request, upload: Upload | None) -> tuple[Call, FromWorker]:
        """Send `request` (and the pieces of its upload) and wait for the answer, or the Head
        of a streamed one."""
        channel = self._channel
        call = channel.open(request)
        try:
            answer = send_upload(channel, call, upload,
                                 time.monotonic() + request.timeout + DEADLINE_GRACE)
        except KeyboardInterrupt as exc:  # the worker was told to abort it: say what it means
            channel.close_call(call)
            exc.add_note(interrupted_note(request))
            raise
        except BaseException:
            channel.close_call(call)
            raise
        if answer is None:
            raise timed_out(request)
        return call, answer

    def _stream_error(self, answer: Error) -> ServiceNowError:
        """The exception of an Error message of a stream; an expired grant is remembered."""
        error = error_for(answer, self._state)
        if isinstance(error, AuthTokenExpiredError):
            self._seen.generation = self._state.generation
        return error

    def reconnect(self, *, open_browser: Callable[[str], Any] | None = None,
                  authorization_timeout: float | None = None) -> None:
        """Ask the user to authorize this same connection again, after AuthTokenExpiredError.

        Single-flight across threads: threads that call it while a consent is under way wait
        for its outcome, and a thread whose AuthTokenExpiredError came before the last
        reconnect() finished returns at once. So any number of threads that meet the error and
        call this cause one consent. Afterwards every holder of the connection goes on working.

        Args:
            open_browser: shows the consent page; default: what connect() was given.
            authorization_timeout: seconds the user has; default: connect()'s.

        Raises:
            AuthorizationError: the user did not allow access again (the connection stays as
                it was).
            WorkerError: the worker is gone, or the connection is closed.
        """
        if self._closed:
            raise ConnectionClosedError(CLOSED)
        with self._reconnect_lock:
            flight = self._reconnecting
            leader = flight is None
            if flight is None:
                if self._state.renewed_since(getattr(self._seen, "generation", None)):
                    return  # reconnected since this thread met the expired grant
                flight = self._reconnecting = Future()
        settings = self._settings
        timeout = settings.authorization_timeout if authorization_timeout is None else \
            seconds(authorization_timeout, "authorization_timeout")
        if not leader:
            flight.result(timeout + settings.request_timeout + CONNECT_GRACE)
            return
        try:
            if open_browser is not None:
                self._channel.on_open_browser = _browser_runner(open_browser)
            channel = self._channel
            answer = _authorize(channel, replace(settings, id=channel.next_id(),
                                                 authorization_timeout=timeout))
            with self._reconnect_lock:
                self._state.renew(answer)
        except BaseException as exc:
            flight.set_exception(exc)
            raise
        else:
            flight.set_result(None)
        finally:
            with self._reconnect_lock:
                self._reconnecting = None

    def disconnect(self, timeout: float = _DISCONNECT_TIMEOUT) -> None:
        """Revoke the grant at the instance and stop the worker. Safe to call twice.

        Args:
            timeout: seconds the worker may spend revoking; the worker is stopped after it
                whatever the network does.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._abandoned.detach()
        _open_connections.discard(self)
        channel = self._channel
        if channel.owned_here:
            try:
                channel.send(Disconnect(channel.next_id(), timeout))
            except (ServiceNowError, OSError, ValueError):
                pass
        channel.close(timeout + 2.0)

    def __enter__(self) -> ServiceNowConnection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.disconnect()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<ServiceNowConnection {self._instance_url} {state}>"


def connect(
    instance: str,
    client_id: str,
    *,
    redirect_uri: str | Sequence[str] = DEFAULT_REDIRECT_URI,
    scopes: Iterable[str] = (),
    open_browser: Callable[[str], Any] | None = None,
    authorization_timeout: float = 300.0,
    request_timeout: float = 30.0,
    retry: RetryPolicy | None = None,
    ca_bundle: str | os.PathLike[str] | None = None,
    proxy: str | None = None,
    agent: bool = False,
    grant: Grant | None = None,
    policy: Policy | None = None,
) -> ServiceNowConnection:
    """Start a worker, have the user authorize it, and return a connection through it.

    Args:
        instance: "https://<name>.service-now.com", or just "<name>".
        client_id: the OAuth client id registered on the instance (a public client with PKCE).
        redirect_uri: the registered loopback redirect URL, or a list of them: the first whose
            port is free is used. Port 0 picks any free port (only for servers that match
            loopback ports loosely, such as the stub).
        scopes: extra OAuth scopes.
        open_browser: shows the consent page, called with its URL; default: the system browser.
        authorization_timeout: seconds the user has to allow access.
        request_timeout: the default deadline for each request, in seconds.
        retry: how transient failures are retried; default RetryPolicy().
        ca_bundle: a PEM file of the certificate authorities to trust, instead of the
            operating system's trust store (for example a corporate inspection proxy's CA).
        proxy: an http(s):// proxy URL for the instance; default: HTTPS_PROXY, unless
            NO_PROXY names the instance. Never used for a loopback instance.
        agent: use a running `snworker agent` for this instance and client id, if there is
            one (no consent needed then); else start a worker of its own.
        grant: an unattended grant (`ClientCredentials`, `JwtBearer`) instead of the user's
            consent: no browser; the worker reads its secrets and renews by running it again.
        policy: what the worker may send (`Policy`); it refuses anything else, unsent.

    Raises:
        AuthorizationError: the user denied access, did not answer in time, or the instance
            refused the code exchange.
        InvalidRequestError: an argument is malformed (nothing was started).
        WorkerStartError: the worker process could not be started.
    """
    settings = connect_settings(instance, client_id, redirect_uri=redirect_uri, scopes=scopes,
                                authorization_timeout=authorization_timeout,
                                request_timeout=request_timeout, retry=retry,
                                ca_bundle=ca_bundle, proxy=proxy, grant=grant,
                                policy=policy)
    opener = open_browser if open_browser is not None else _open_system_browser
    if agent:
        from snworker import agent as agents

        address = agents.find(settings.instance_url, settings.client_id)
        if address is not None:
            try:
                return agents.attach(address, open_browser=opener,
                                     request_timeout=settings.request_timeout)
            except WorkerError:
                logger.info("snworker: the agent at %s did not answer; starting a worker",
                            address)
    channel = Channel.start(_browser_runner(opener), fds=grant.fds() if grant else ())
    message = replace(settings, id=channel.next_id())
    conn = ServiceNowConnection(channel, message, authorize_new(channel, message))
    _open_connections.add(conn)
    return conn


def open_connection(channel: Channel, message: Connect) -> ServiceNowConnection:
    """Authorize over `channel` and return the connection; the channel is let go on failure."""
    try:
        answer = _authorize(channel, message)
    except BaseException:
        channel.release()
        raise
    conn = ServiceNowConnection(channel, message, answer)
    _open_connections.add(conn)
    return conn


def authorize_new(channel: Channel, message: Connect) -> Connected:
    """The first consent of a worker just started; the worker is stopped if it fails."""
    try:
        return _authorize(channel, message)
    except ServiceNowError:
        _stop_worker(channel)
        raise
    except BaseException:  # KeyboardInterrupt included: never leave a worker behind
        channel.close(0.5)
        raise


def _authorize(channel: Channel, message: Connect) -> Connected:
    """Run one consent in the worker; the answer, or the error it ended with."""
    try:
        answer: FromWorker | None = channel.call(message, consent_deadline(message))
    except RequestTimeoutError:
        answer = None
    return consented(message, answer)


def _abandon(channel: Channel) -> None:
    if channel.owned_here:
        try:
            channel.send(Disconnect(channel.next_id(), _DISCONNECT_TIMEOUT))
        except (ServiceNowError, OSError, ValueError):
            pass


def _stop_worker(channel: Channel) -> None:
    """Stop a worker that holds no grant: nothing to revoke, so no wait for the network."""
    try:
        channel.send(Disconnect(channel.next_id(), 0.1))
    except (ServiceNowError, OSError, ValueError):
        pass
    channel.close(1.0)


def _browser_runner(opener: Callable[[str], Any]) -> Callable[[str], None]:
    def run(url: str) -> None:
        try:
            shown = opener(url)
        except Exception as exc:
            logger.warning("snworker: could not open a browser (%s)", exc)
            shown = False
        if shown is False:
            print(
                "snworker: open this URL in a browser to allow access to ServiceNow:\n"
                f"  {url}", file=sys.stderr, flush=True,
            )

    return run


def _open_system_browser(url: str) -> bool:
    return webbrowser.open(url, new=1)


# Connections still open at interpreter exit are disconnected, so their grants are revoked.
_open_connections: weakref.WeakSet[ServiceNowConnection] = weakref.WeakSet()


@atexit.register
def _disconnect_all() -> None:
    for conn in list(_open_connections):
        try:
            conn.disconnect(timeout=2.0)
        except Exception:
            pass
