"""https for the stub: a certificate from a local certificate authority, and a TLS front.

`LocalAuthority` makes a certificate authority (with `trustme`) and a server certificate for
the loopback names, and writes the authority's certificate to a PEM file that clients trust
(`requests`' `verify=`, `REQUESTS_CA_BUNDLE`, snworker's `ca_bundle=`). `TlsFront` listens for
TLS connections and relays each one's decrypted bytes to the stub's plain HTTP server on another
loopback port, so the stub itself is the same with and without TLS.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import socket
import ssl
import tempfile
import threading
import weakref
from typing import Final

HANDSHAKE_TIMEOUT: Final = 10.0
# A relayed connection idle this long is closed, as the stub's server closes its idle channels.
IDLE_TIMEOUT: Final = 120.0
CHUNK: Final = 256 * 1024
SERVER_NAMES: Final = ("127.0.0.1", "localhost", "::1")


class LocalAuthority:
    """A certificate authority of this process and a server certificate it issued.

    The authority's certificate is written to `ca_file` (removed when this object is collected).
    """

    def __init__(self) -> None:
        try:
            import trustme
        except ImportError as error:  # pragma: no cover - the testing extra installs it
            raise RuntimeError(
                "the stub's TLS needs trustme: pip install 'snworker[testing]'"
            ) from error
        authority = trustme.CA(organization_name="snworker stub")
        certificate = authority.issue_cert(*SERVER_NAMES)
        self._directory = tempfile.mkdtemp(prefix="snworker-stub-ca-")
        weakref.finalize(self, shutil.rmtree, self._directory, True)
        self.ca_file = os.path.join(self._directory, "ca.pem")
        authority.cert_pem.write_to_path(self.ca_file)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        certificate.configure_cert(self.context)


class TlsFront:
    """Accepts TLS connections on `host:port` and relays each to `backend` (plain HTTP)."""

    def __init__(self, context: ssl.SSLContext, host: str, port: int,
                 backend: tuple[str, int]) -> None:
        self._context = context
        self._backend = backend
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._acceptor = threading.Thread(target=self._accept, name=f"stub-tls-{self.port}",
                                          daemon=True)

    def start(self) -> None:
        """Accept connections on a background thread."""
        self._acceptor.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every relayed connection, and wait for the relay threads."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
            threads = list(self._threads)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._acceptor.ident is not None:
            self._acceptor.join(timeout)
        for thread in threads:
            thread.join(timeout)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._relay, args=(client,),
                                      name=f"stub-tls-relay-{self.port}", daemon=True)
            with self._lock:
                if self._stopping.is_set():
                    client.close()
                    return
                self._connections.add(client)
                self._threads.add(thread)
            thread.start()

    def _relay(self, client: socket.socket) -> None:
        backend: socket.socket | None = None
        secure: ssl.SSLSocket | None = None
        try:
            client.settimeout(HANDSHAKE_TIMEOUT)
            secure = self._context.wrap_socket(client, server_side=True)
            with self._lock:
                self._connections.add(secure)
            backend = socket.create_connection(self._backend, timeout=HANDSHAKE_TIMEOUT)
            with self._lock:
                self._connections.add(backend)
            secure.settimeout(IDLE_TIMEOUT)
            backend.settimeout(IDLE_TIMEOUT)
            self._pump(secure, backend)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            for sock in (secure, backend, client):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()
            with self._lock:
                self._connections.difference_update({client, secure, backend})
                self._threads.discard(threading.current_thread())

    def _pump(self, secure: ssl.SSLSocket, backend: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(secure, selectors.EVENT_READ)
            selector.register(backend, selectors.EVENT_READ)
            while not self._stopping.is_set():
                # Data already decrypted waits in the TLS object, unseen by select().
                ready = [secure] if secure.pending() else [
                    key.fileobj for key, _ in selector.select(IDLE_TIMEOUT)]
                if not ready:
                    return
                for source in ready:
                    target = backend if source is secure else secure
                    try:
                        data = source.recv(CHUNK)  # type: ignore[union-attr]
                    except ssl.SSLWantReadError:
                        continue
                    if not data:
                        return
                    target.sendall(data)
