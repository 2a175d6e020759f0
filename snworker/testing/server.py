"""Serving the stub: a waitress server in a background thread, in a child process, or in front.

    python -m snworker.testing.server [--host H] [--port N] [--client-id ID] [--config JSON]

prints `snworker stub: url=... client_id=... redirect_uri=...` once it is listening, then serves
until interrupted (or, with `--exit-with-stdin`, until its standard input closes).
"""

from __future__ import annotations

import argparse
import itertools
import json
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import waitress
from waitress import wasyncore
from waitress.channel import ClientDisconnected, HTTPChannel
from waitress.task import ThreadedTaskDispatcher

from snworker.testing.app import StubApplication
from snworker.testing.control import AuthMethod, StubControls
from snworker.testing.oauth import ConsentMode
from snworker.testing.remote import RemoteStub
from snworker.testing.scripted_api import Handler
from snworker.testing.state import DEFAULT_THREADS, StubConfig, StubState
from snworker.testing.tls import LocalAuthority, TlsFront

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

# Bodies up to this size stay in memory instead of being spooled to a temporary file.
MEMORY_BUFFER = 64 * 1024 * 1024
STOP_TIMEOUT = 5.0
CONNECTION_LIMIT = 500
PROCESS_START_TIMEOUT = 20.0
READY_PREFIX = "snworker stub: "


class OnDemandDispatcher(ThreadedTaskDispatcher):  # type: ignore[misc]
    """Waitress's task dispatcher, starting a handler thread only when a request finds none idle.

    A stub serving one request at a time runs one handler thread; one serving 32 clients at
    once grows to 32, up to `limit`. Shutdown is waitress's own.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self._numbers = itertools.count()

    def add_task(self, task: Any) -> None:
        with self.lock:
            self.queue.append(task)
            running = len(self.threads) - self.stop_count
            idle = running - self.active_count
            if len(self.queue) > idle and running < self.limit and self.stop_count == 0:
                number = next(self._numbers)
                self.threads.add(number)
                # Counted busy until it first waits, as waitress counts the threads it starts.
                self.active_count += 1
                self.start_new_thread(self.handler_thread, number)
            self.queue_cv.notify()


class PlainHttpChannel(HTTPChannel):  # type: ignore[misc]
    """Waitress's channel, answering a TLS handshake at once instead of waiting for a line.

    A client that takes the stub's http:// URL for https:// sends a TLS ClientHello, which holds
    no line end: waitress would wait for the rest of a request line until the client's deadline,
    and the client would report a timeout. Like nginx and Apache, the stub answers a plain 400 at
    once; the client's TLS layer then names the real cause (the server does not speak TLS).
    """

    _spoken = False

    def received(self, data: bytes) -> bool:
        first, self._spoken = not self._spoken, True
        if first and data[:1] == _TLS_HANDSHAKE_RECORD:
            self.write_soon(_NOT_TLS_ANSWER)
            self.close_when_flushed = True
            return False
        return bool(super().received(data))


_TLS_HANDSHAKE_RECORD = b"\x16"
_NOT_TLS_BODY = b"This stub speaks plain HTTP: use its http:// URL.\n"
_NOT_TLS_ANSWER = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(_NOT_TLS_BODY), _NOT_TLS_BODY))


class StubServer:
    """A waitress server for one application, run by a background thread.

    With a TLS context, clients connect to a `TlsFront` on the configured port, which relays
    to the waitress server on a free loopback port.
    """

    def __init__(self, state: StubState, tls: ssl.SSLContext | None = None) -> None:
        self._server: Any = waitress.create_server(
            StubApplication(state, self._drop, self._client_gone),
            host=state.config.host,
            port=0 if tls is not None else state.config.port,
            url_scheme="https" if tls is not None else "http",
            _dispatcher=OnDemandDispatcher(state.config.threads),
            # Room for a few hundred clients at once (keep-alive holds their connections).
            connection_limit=CONNECTION_LIMIT,
            channel_timeout=120,
            asyncore_use_poll=True,
            inbuf_overflow=MEMORY_BUFFER,
            outbuf_overflow=MEMORY_BUFFER,
            clear_untrusted_proxy_headers=False,
            ident="ServiceNow",
        )
        self._server.channel_class = PlainHttpChannel
        self.port: int = int(self._server.effective_port)
        self._front: TlsFront | None = None
        if tls is not None:
            try:
                self._front = TlsFront(tls, state.config.host, state.config.port,
                                       (str(self._server.effective_host), self.port))
            except BaseException:
                self._server.close()
                raise
            self.port = self._front.port
        self._thread = threading.Thread(
            target=self._server.run, name=f"stub-servicenow-{self.port}", daemon=True
        )

    def start(self) -> None:
        """Serve; the socket already listens, so clients may connect at once."""
        self._thread.start()
        if self._front is not None:
            self._front.start()

    def stop(self) -> None:
        """Close the listening socket and every connection, then the worker threads."""
        server = self._server
        trigger = server.trigger
        if self._front is not None:
            self._front.stop(STOP_TIMEOUT)

        def close_connections() -> None:
            # Runs on the loop thread: the socket map is only safe to change there.
            for dispatcher in list(server._map.values()):
                if isinstance(dispatcher, HTTPChannel):
                    dispatcher.handle_close()
                elif dispatcher is not trigger:
                    # The server's own close() would close the trigger too.
                    wasyncore.dispatcher.close(dispatcher)

        trigger.pull_trigger(close_connections)
        # Worker threads finishing a request pull the trigger, so it stays open until they are
        # gone. Taking it out of the socket map ends the loop; it is closed only after that,
        # because a thunk that closed it could run before `pull_trigger` has written to it.
        server.task_dispatcher.shutdown(timeout=STOP_TIMEOUT)
        trigger.pull_trigger(trigger.del_channel)
        self._thread.join(STOP_TIMEOUT)
        trigger.close()

    def _drop(self, environ: WSGIEnvironment) -> NoReturn:
        """Close the client's connection without an answer."""
        channel = self._channel_of(environ)
        if channel is not None:
            try:
                channel.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        raise ClientDisconnected

    def _client_gone(self, environ: WSGIEnvironment, seconds: float) -> bool:
        """Wait `seconds`; True as soon as the client closes the connection the request came on.

        While a request is served, waitress reads nothing more from its connection, so the
        end of the client's stream waits there to be seen: one wait on the socket, no polling.
        """
        end = time.monotonic() + seconds
        channel = self._channel_of(environ)
        if channel is None:
            time.sleep(seconds)
            return False
        sock = channel.socket
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_READ)
                while (left := end - time.monotonic()) > 0:
                    if not selector.select(left):
                        return False
                    if not sock.recv(1, socket.MSG_PEEK):
                        return True
                    time.sleep(left)  # the next request, pipelined: it waits its turn
                    return False
        except (OSError, ValueError):
            return True
        return False

    def _channel_of(self, environ: WSGIEnvironment) -> Any:
        peer = (environ.get("REMOTE_ADDR"), int(environ.get("REMOTE_PORT") or 0))
        for _ in range(3):  # the loop thread may change the map while it is read
            try:
                channels = list(self._server._map.values())
            except RuntimeError:
                continue
            for channel in channels:
                if isinstance(channel, HTTPChannel) and tuple(channel.addr[:2]) == peer:
                    return channel
            return None
        return None


class StubServiceNow(StubControls):
    """A stubbed ServiceNow instance served on a real socket by a background thread.

    Args:
        host: the address to listen on.
        port: the port; 0 picks a free one.
        client_id: the OAuth application registered from the start.
        redirect_uri: its registered redirect URI; loopback URIs match any port.
        app_name: the application's name on the consent page.
        access_lifespan: seconds an access token lives.
        refresh_lifespan: seconds a refresh token lives.
        pkce_required: refuse authorization requests without an S256 code challenge.
        consent: "ask" shows the consent page, "allow" and "deny" answer at once.
        strict_redirect: behave as the platform does with an unregistered redirect URI: send
            the browser to the first registered URI (and match loopback ports exactly).
        seed: load the deterministic seed data.
        auth: how clients may sign in: any of "code" (the authorization-code flow, the only
            one by default), "basic" (Basic auth with a user's name and password), "password"
            and "client_credentials" (those grants, for a client with a secret; without
            "client_credentials" that grant is refused as with its system property off), "jwt"
            (the JWT bearer grant, against `jwt_verifiers`).
        client_secret: the secret of the `client_id` application (for the password grants).
        threads: the most requests served at once; handler threads start as requests need them.
        application_user: the user_name of the OAuth Application User that client-credentials
            tokens act for; None: none is named, and the grant is refused as the platform does.
        jwt_verifiers: the JWT verifier map: key id -> PEM certificate or public key (RS*,
            ES*), or shared key (HS*), for the "jwt" (JWT bearer) sign-in method.
        jwt_user_field: the sys_user field an assertion's `sub` names: user_name, email or
            sys_id.
        queries: "strict" refuses a query naming a field the table lacks or a term the stub
            does not implement (400); "lenient" ignores such terms, as the platform does an
            unknown field.
        tls: serve https with a certificate from a local certificate authority (`ca_file`).
        users: (user name, password) pairs: users who sign in with that password (a seed
            user's password is replaced), there again after `reset()`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        client_id: str = "snworker-test",
        redirect_uri: str = "http://127.0.0.1:0/callback",
        app_name: str = "snworker test app",
        access_lifespan: float = 1800,
        refresh_lifespan: float = 8_640_000,
        pkce_required: bool = True,
        consent: ConsentMode = "ask",
        strict_redirect: bool = False,
        seed: bool = True,
        auth: Sequence[AuthMethod] = ("code",),
        client_secret: str | None = None,
        threads: int = DEFAULT_THREADS,
        application_user: str | None = "admin",
        jwt_verifiers: Mapping[str, str] | None = None,
        jwt_user_field: str = "user_name",
        queries: Literal["strict", "lenient"] = "strict",
        tls: bool = False,
        users: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.config = StubConfig(
            host=host,
            port=port,
            client_id=client_id,
            redirect_uri=redirect_uri,
            app_name=app_name,
            access_lifespan=access_lifespan,
            refresh_lifespan=refresh_lifespan,
            pkce_required=pkce_required,
            consent=consent,
            strict_redirect=strict_redirect,
            seed=seed,
            auth=tuple(auth),
            client_secret=client_secret,
            threads=threads,
            application_user=application_user,
            jwt_verifiers=dict(jwt_verifiers or {}),
            jwt_user_field=jwt_user_field,
            queries=queries,
            tls=tls,
            users=tuple((name, password) for name, password in users),
        )
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self._authority = LocalAuthority() if tls else None
        self._state = StubState(self.config)
        self._server: StubServer | None = None

    @property
    def ca_file(self) -> str | None:
        """With `tls=True`, the PEM file of the certificate authority to trust; else None."""
        return None if self._authority is None else self._authority.ca_file

    def route(
        self, path: str, handler: Handler, methods: Sequence[str] = ("GET",)
    ) -> None:
        """Answer `methods` on `path` with a handler of your own (a Scripted REST API).

        Args:
            path: under `/api/`, a werkzeug rule: `/api/x_acme/v1/items/<sys_id>`.
            handler: called with a `ScriptedRequest`; its return value is sent as
                `{"result": value}` with 200, or a `ScriptedResponse` sets status and headers.
            methods: the HTTP methods answered.

        Routes need authentication as the platform's APIs do, and are gone after `reset()`.
        """
        with self._state.lock:
            self._state.routes.add(path, handler, methods)

    @property
    def url(self) -> str:
        """The instance URL, `http://127.0.0.1:<port>` (`https://` with `tls=True`)."""
        if self._server is None:
            raise RuntimeError("the stub is not started")
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        scheme = "https" if self._authority is not None else "http"
        return f"{scheme}://{host}:{self._server.port}"

    def start(self) -> StubServiceNow:
        """Listen and serve; returns once clients can connect."""
        if self._server is None:
            context = None if self._authority is None else self._authority.context
            server = StubServer(self._state, context)
            server.start()
            self._server = server
        return self

    def stop(self) -> None:
        """Stop serving and free the port; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def _control(self, operation: str, **arguments: Any) -> Any:
        return self._state.control(operation, arguments)

    def __enter__(self) -> StubServiceNow:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @classmethod
    def start_process(
        cls,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        client_id: str = "snworker-test",
        redirect_uri: str = "http://127.0.0.1:0/callback",
        app_name: str = "snworker test app",
        access_lifespan: float = 1800,
        refresh_lifespan: float = 8_640_000,
        pkce_required: bool = True,
        consent: ConsentMode = "ask",
        strict_redirect: bool = False,
        seed: bool = True,
        auth: Sequence[AuthMethod] = ("code",),
        client_secret: str | None = None,
        threads: int = DEFAULT_THREADS,
        application_user: str | None = "admin",
        jwt_verifiers: Mapping[str, str] | None = None,
        jwt_user_field: str = "user_name",
        queries: Literal["strict", "lenient"] = "strict",
        tls: bool = False,
        users: Sequence[tuple[str, str]] = (),
    ) -> RemoteStub:
        """Start the same stub in a child process; returns once it serves.

        Takes the constructor's arguments, as keywords. The child exits when the returned
        `RemoteStub` is closed, or when this process dies.
        """
        config = StubConfig(
            host=host, port=port, client_id=client_id, redirect_uri=redirect_uri,
            app_name=app_name, access_lifespan=access_lifespan,
            refresh_lifespan=refresh_lifespan, pkce_required=pkce_required, consent=consent,
            strict_redirect=strict_redirect, seed=seed, auth=tuple(auth),
            client_secret=client_secret, threads=threads, application_user=application_user,
            jwt_verifiers=dict(jwt_verifiers or {}), jwt_user_field=jwt_user_field,
            queries=queries, tls=tls, users=tuple((name, password) for name, password in users),
        )
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "snworker.testing.server",
                "--config",
                json.dumps(config.to_json()),
                "--exit-with-stdin",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            ready = _read_ready_line(process, PROCESS_START_TIMEOUT)
            return RemoteStub(ready["url"], process, ca_file=ready.get("ca_file"))
        except BaseException:
            process.kill()
            process.wait()
            raise


def _read_ready_line(process: subprocess.Popen[bytes], timeout: float) -> dict[str, str]:
    # A thread reads: select() takes only sockets on Windows, and this is a pipe. If the line
    # does not come in time, the caller kills the process, and the reader sees EOF.
    stdout = process.stdout
    assert stdout is not None
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.append(stdout.readline(1 << 16)),
                              name="snworker-stub-ready", daemon=True)
    reader.start()
    reader.join(timeout)
    if not lines:
        raise TimeoutError(f"the stub process did not start within {timeout} s")
    line = lines[0].decode(errors="replace")
    if not line.startswith(READY_PREFIX):
        raise RuntimeError(f"the stub process did not start (exit code {process.poll()})")
    return dict(part.split("=", 1) for part in line[len(READY_PREFIX) :].split())


def _ready_line(stub: StubServiceNow) -> str:
    line = (
        f"{READY_PREFIX}url={stub.url} client_id={stub.client_id}"
        f" redirect_uri={stub.redirect_uri}"
    )
    return line if stub.ca_file is None else f"{line} ca_file={stub.ca_file}"


def _serve(stub: StubServiceNow, exit_with_stdin: bool) -> None:
    stopped = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: stopped.set())
    with stub:
        print(_ready_line(stub), flush=True)
        if exit_with_stdin:

            def wait_for_stdin_to_close() -> None:
                sys.stdin.buffer.read()
                stopped.set()

            threading.Thread(target=wait_for_stdin_to_close, daemon=True).start()
        try:
            while not stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass


def run_foreground(
    host: str = "127.0.0.1", port: int = 0, client_id: str = "snworker-test", **settings: Any
) -> None:
    """Serve a stub in the foreground until Ctrl-C; the first line printed gives its URL.

    `settings` are the constructor's other keyword arguments.
    """
    _serve(StubServiceNow(host=host, port=port, client_id=client_id, **settings),
           exit_with_stdin=False)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line of `python -m snworker.testing.server`."""
    parser = argparse.ArgumentParser(prog="python -m snworker.testing.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--client-id", default="snworker-test")
    parser.add_argument("--config", help="constructor settings as a JSON object")
    parser.add_argument("--exit-with-stdin", action="store_true", help="stop when stdin closes")
    options = parser.parse_args(argv)
    settings: dict[str, Any] = {
        "host": options.host,
        "port": options.port,
        "client_id": options.client_id,
    }
    if options.config:
        settings.update(json.loads(options.config))
    _serve(StubServiceNow(**settings), exit_with_stdin=options.exit_with_stdin)


if __name__ == "__main__":
    main()
