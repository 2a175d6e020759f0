"""connect(), attach() and AsyncServiceNowConnection: the asyncio driver over the shared core.

The same worker, messages and errors as `snworker.connect()`; the rules live in
`snworker.core` and `snworker.settings`, this module only awaits.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, TypeVar, overload

from snworker.aio.channel import AsyncChannel, StreamCall
from snworker.aio.streams import AsyncStreamResponse, send_upload
from snworker.aio.table import AsyncTable, R
from snworker.connection import _browser_runner, _open_system_browser
from snworker.core import (
    CLOSED,
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
from snworker.streams import WINDOW, Upload, is_stream

T = TypeVar("T")

_DISCONNECT_TIMEOUT = 5.0


class AsyncServiceNowConnection(ConnectionFacts):
    """A connection to one instance through a worker process, for asyncio code."""

    _channel: AsyncChannel

    def __init__(self, channel: AsyncChannel, settings: Connect, answer: Connected) -> None:
        self._channel = channel
        self._settings = settings
        self._instance_url = answer.instance_url
        self._client_id = settings.client_id
        self._request_timeout = settings.request_timeout
        self._hardening = WorkerHardening.from_report(answer.hardening)
        self._state = GrantState(answer.user)
        # reconnect() is single-flight: tasks that call it during one await its outcome; a
        # task whose AuthTokenExpiredError came before the last one finished needs none.
        self._reconnecting: asyncio.Future[None] | None = None
        self._seen: weakref.WeakKeyDictionary[asyncio.Task[Any], int] = \
            weakref.WeakKeyDictionary()
        self._closed = False
        _open_connections.add(self)
        # Dropped without disconnect(): ask the worker to revoke and exit, without waiting.
        self._abandoned = weakref.finalize(self, _abandon, channel)
        self._abandoned.atexit = False

    @overload
    async def execute_api_request(
        self, path: str, http_method: str = ..., data: Any = ...,
        suppress_response_body: bool = ..., headers: Mapping[str, str] | None = ..., *,
        params: Mapping[str, Any] | None = ..., timeout: float | None = ...,
        raise_for_status: bool = ..., retry: bool = ..., result_type: None = ...,
    ) -> ApiResponse[Any]: ...

    @overload
    async def execute_api_request(
        self, path: str, http_method: str = ..., data: Any = ...,
        suppress_response_body: bool = ..., headers: Mapping[str, str] | None = ..., *,
        params: Mapping[str, Any] | None = ..., timeout: float | None = ...,
        raise_for_status: bool = ..., retry: bool = ..., result_type: type[T],
    ) -> ApiResponse[T]: ...

    async def execute_api_request(
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
        """Send one request to the instance through the worker; the arguments and errors of
        `ServiceNowConnection.execute_api_request`.

        Cancelling the task that awaits it (also by asyncio.timeout or a failing TaskGroup)
        tells the worker, which aborts the HTTP exchange in flight: the instance sees the
        connection closed. A request that reached the instance may have taken effect there;
        the CancelledError's note says so.
        """
        if self._closed:
            raise ConnectionClosedError(CLOSED)
        state = self._state
        if state.expired is not None:
            self._note_expired()
            state.check()
        deadline = self._request_timeout if timeout is None else seconds(timeout, "timeout")
        channel = self._channel
        if is_stream(data):  # a file or an iterator of bytes: it streams up
            upload = await asyncio.get_running_loop().run_in_executor(None, Upload, data)
            request = prepare(channel.next_id(), path, http_method, None,
                              suppress_response_body, headers, params, deadline,
                              raise_for_status, retry, upload=upload.length)
            _, answer = await self._exchange(request, upload)
        else:
            request = prepare(channel.next_id(), path, http_method, data,
                              suppress_response_body, headers, params, deadline,
                              raise_for_status, retry)
            try:
                answered = await channel.call(request, deadline + DEADLINE_GRACE)
            except asyncio.CancelledError as exc:
                exc.add_note(interrupted_note(request))
                raise
            if answered is None:
                raise timed_out(request)
            answer = answered
        try:
            return conclude(request, answer, state)
        except AuthTokenExpiredError:
            self._note_expired()
            raise

    async def stream_api_request(
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
    ) -> AsyncStreamResponse:
        """Send one request and read its answer's body in pieces, as it comes; the arguments
        and errors of `ServiceNowConnection.stream_api_request`.

        Status and headers are there when this returns; `aiter_bytes()` yields the body. Use
        it with `async with`: leaving it closes the stream, read to its end or not. Cancelling
        the task that reads it closes it too, and the worker closes the HTTP response.
        """
        if self._closed:
            raise ConnectionClosedError(CLOSED)
        state = self._state
        if state.expired is not None:
            self._note_expired()
            state.check()
        deadline = self._request_timeout if timeout is None else seconds(timeout, "timeout")
        upload = None
        if is_stream(data):
            upload = await asyncio.get_running_loop().run_in_executor(None, Upload, data)
        request = prepare(self._channel.next_id(), path, http_method,
                          None if upload is not None else data, False, headers, params,
                          deadline, raise_for_status, retry, WINDOW,
                          None if upload is None else upload.length)
        call, answer = await self._exchange(request, upload)
        channel = self._channel
        if type(answer) is Error:
            raise self._stream_error(answer)
        if type(answer) is Result:  # a body that ended within its first piece, whole
            return AsyncStreamResponse(channel, call,
                                       Head(answer.id, answer.status, answer.headers),
                                       deadline + DEADLINE_GRACE, self._stream_error,
                                       answer.body or b"")
        if type(answer) is not Head:
            channel.close_call(call)
            raise ServiceNowError(f"unexpected answer from the worker: {type(answer).__name__}")
        return AsyncStreamResponse(channel, call, answer, deadline + DEADLINE_GRACE,
                                   self._stream_error)

    async def _exchange(self, request: Request, upload: Upload | None,
                        ) -> tuple[StreamCall, FromWorker]:
        """Send `request` (and the pieces of its upload) and await the answer, or the Head of
        a streamed one."""
        channel = self._channel
        call = await channel.open(request)
        try:
            answer = await send_upload(channel, call, upload, request.timeout + DEADLINE_GRACE)
        except asyncio.CancelledError as exc:
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
        """The exception of a stream's Error message; an expired grant is remembered."""
        error = error_for(answer, self._state)
        if isinstance(error, AuthTokenExpiredError):
            self._note_expired()
        return error

    def table(self, name: str, record_type: type[R] | None = None) -> AsyncTable[R]:
        """The Table API of table `name`; `record_type` (a TypedDict) types its records."""
        return AsyncTable(self, name)

    async def reconnect(self, *, open_browser: Callable[[str], Any] | None = None,
                        authorization_timeout: float | None = None) -> None:
        """Ask the user to authorize this same connection again, after AuthTokenExpiredError.

        Single-flight: tasks that call it while a consent is under way await its outcome, and
        a task whose error came before the last reconnect() finished returns at once. The
        browser and the wait for Allow never block the loop.

        Raises:
            AuthorizationError: the user did not allow access again.
            WorkerError: the worker is gone, or the connection is closed.
        """
        if self._closed:
            raise ConnectionClosedError(CLOSED)
        task = asyncio.current_task()
        if self._reconnecting is not None:
            await asyncio.shield(self._reconnecting)
            return
        if task is not None and self._state.renewed_since(self._seen.get(task)):
            return  # reconnected since this task met the expired grant
        settings = self._settings
        timeout = settings.authorization_timeout if authorization_timeout is None else \
            seconds(authorization_timeout, "authorization_timeout")
        flight = self._reconnecting = asyncio.get_running_loop().create_future()
        try:
            if open_browser is not None:
                self._channel.on_open_browser = _browser_runner(open_browser)
            channel = self._channel
            message = replace(settings, id=channel.next_id(), authorization_timeout=timeout)
            answer = consented(message, await channel.call(message, consent_deadline(message)))
            self._state.renew(answer)
        except BaseException as exc:
            flight.set_exception(exc)
            flight.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            flight.set_result(None)
        finally:
            self._reconnecting = None

    async def disconnect(self, timeout: float = _DISCONNECT_TIMEOUT) -> None:
        """Revoke the grant at the instance and stop the worker (an agent: detach from it).
        Safe to call twice; the waits run off the loop.
        """
        if self._closed:
            return
        self._closed = True
        self._abandoned.detach()
        _open_connections.discard(self)
        channel = self._channel
        channel.send_quietly(Disconnect(channel.next_id(), timeout))
        if channel.attached:
            channel.release()
        else:
            await channel.close(timeout + 2.0)

    async def __aenter__(self) -> AsyncServiceNowConnection:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<AsyncServiceNowConnection {self._instance_url} {state}>"

    def _note_expired(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._seen[task] = self._state.generation

    def _abandon(self) -> None:
        """At interpreter exit: ask the worker to revoke and exit, without waiting."""
        if not self._closed:
            self._closed = True
            self._abandoned.detach()
            _abandon(self._channel)


async def connect(
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
) -> AsyncServiceNowConnection:
    """Start a worker, have the user authorize it, and return a connection through it.

    The arguments, and the errors, of `snworker.connect()`. The worker starts in a thread, the
    browser opens in one, and the wait for the user's Allow is an await: the loop runs on.
    """
    settings = connect_settings(instance, client_id, redirect_uri=redirect_uri, scopes=scopes,
                                authorization_timeout=authorization_timeout,
                                request_timeout=request_timeout, retry=retry,
                                ca_bundle=ca_bundle, proxy=proxy, grant=grant,
                                policy=policy)
    opener = open_browser if open_browser is not None else _open_system_browser
    if agent:
        from snworker import agent as agents

        loop = asyncio.get_running_loop()
        address = await loop.run_in_executor(None, agents.find, settings.instance_url,
                                             settings.client_id)
        if address is not None:
            try:
                return await attach(address, open_browser=opener,
                                    request_timeout=settings.request_timeout)
            except WorkerError:
                pass  # it did not answer: start a worker of our own
    channel = await AsyncChannel.start(_browser_runner(opener),
                                       fds=grant.fds() if grant else ())
    message = replace(settings, id=channel.next_id())
    try:
        answer = consented(message, await channel.call(message, consent_deadline(message)))
    except ServiceNowError:
        channel.send_quietly(Disconnect(channel.next_id(), 0.1))
        await channel.close(1.0)
        raise
    except BaseException:  # cancelled: never leave a worker behind
        channel.send_quietly(Disconnect(channel.next_id(), 0.1))
        await asyncio.shield(channel.close(0.5))
        raise
    return AsyncServiceNowConnection(channel, message, answer)


async def attach(
    agent: str | None = None,
    *,
    open_browser: Callable[[str], Any] | None = None,
    authorization_timeout: float = 300.0,
    request_timeout: float = 30.0,
) -> AsyncServiceNowConnection:
    """A connection served by a running agent: `agent`'s address, else SNWORKER_AGENT's.

    The arguments and errors of `snworker.attach()`; its `disconnect()` leaves the agent
    running.
    """
    from snworker import agent as agents

    address = agents.resolve(agent)
    opener = open_browser if open_browser is not None else _open_system_browser
    pipe = await asyncio.get_running_loop().run_in_executor(None, agents.open_agent, address)
    channel = AsyncChannel.over(pipe, _browser_runner(opener), agents.AGENT_IO)
    message = agents.attach_message(channel.next_id(), authorization_timeout, request_timeout)
    try:
        answer = consented(message, await channel.call(message, consent_deadline(message)))
    except BaseException:
        channel.release()
        raise
    return AsyncServiceNowConnection(channel, message, answer)

def _abandon(channel: AsyncChannel) -> None:
    channel.send_quietly(Disconnect(channel.next_id(), _DISCONNECT_TIMEOUT))


# Connections still open at interpreter exit are asked to revoke and stop (no loop is left to
# wait on; the worker also stops by itself when this process's end of the pipe closes).
_open_connections: weakref.WeakSet[AsyncServiceNowConnection] = weakref.WeakSet()


@atexit.register
def _abandon_all() -> None:
    for conn in list(_open_connections):
        try:
            conn._abandon()
        except Exception:
            pass

