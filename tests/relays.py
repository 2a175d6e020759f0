"""Network stand-ins on 127.0.0.1 for tests: a recording relay, a TLS front, a CONNECT proxy."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from pathlib import Path


class Relay:
    """127.0.0.1:port -> `target`, keeping every byte clients sent, per connection.

    With `tls`, clients speak TLS to the relay, which speaks plain TCP to the target.
    """

    def __init__(self, target: tuple[str, int], tls: ssl.SSLContext | None = None) -> None:
        self._target = target
        self._tls = tls
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.streams: list[bytearray] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            if self._tls is not None:
                client = self._tls.wrap_socket(client, server_side=True)
            upstream = self._upstream(client)
        except (OSError, ssl.SSLError):
            client.close()
            return
        if upstream is None:
            client.close()
            return
        stream = bytearray()
        with self._lock:
            self.streams.append(stream)
        threading.Thread(target=pump, args=(client, upstream, stream, self._lock),
                         daemon=True).start()
        pump(upstream, client, None, self._lock)

    def _upstream(self, client: socket.socket) -> socket.socket | None:
        return socket.create_connection(self._target, timeout=10)

    def recorded(self) -> list[bytes]:
        with self._lock:
            return [bytes(s) for s in self.streams]

    def close(self) -> None:
        self._server.close()


class ConnectProxy(Relay):
    """An HTTP CONNECT proxy that tunnels every host to `target`, keeping what it saw."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.connects: list[str] = []
        super().__init__(target)

    def _upstream(self, client: socket.socket) -> socket.socket | None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return None
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        self.connects.append(line)
        if not line.startswith("CONNECT "):
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return None
        upstream = socket.create_connection(self._target, timeout=10)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        return upstream


def pump(source: socket.socket, sink: socket.socket, record: bytearray | None,
         lock: threading.Lock) -> None:
    """Copy bytes from `source` to `sink` until either closes, keeping them in `record`."""
    try:
        while data := source.recv(65536):
            if record is not None:
                with lock:
                    record += data
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def make_certificates(directory: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """A test CA, and a server certificate and key for `names` (DNS names or IP addresses)."""
    ca_key, ca, key, csr, cert = (directory / n for n in
                                  ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    extensions = directory / "server.ext"
    alt = ",".join(f"IP:{n}" if n.replace(".", "").isdigit() else f"DNS:{n}" for n in names)
    extensions.write_text(
        f"subjectAltName={alt}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    run = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
         "-out", str(ca), "-days", "2", "-subj", "/CN=snworker test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
         str(csr), "-subj", f"/CN={names[0]}"],
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(extensions)],
    ]
    for command in run:
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    return ca, cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS server context for `cert`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context
