"""Bodies in pieces: streamed answers and uploads through a real worker, within bounded windows.

The stub serves attachments from memory; the bodies here are made of pseudo-random bytes so a
piece out of place would show. Peak memory is sampled with psutil, in this process and in the
worker that holds the tokens.
"""

from __future__ import annotations

import gc
import hashlib
import io
import os
import random
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

import snworker
from snworker.streams import PIECE, WINDOW
from snworker.testing import StubServiceNow
from snworker.worker.main import STREAM_PIECE
from tests.conftest import connect
from tests.processes import kill
from tests.relays import Relay, pump

ATTACH = "/api/now/attachment/file"
MB = 1 << 20


def body_of(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def pieces_of(size: int, piece: int = 300_000, seed: int = 7) -> Iterator[bytes]:
    """`size` pseudo-random bytes in pieces, made as they are asked for (never held whole)."""
    rng = random.Random(seed)
    sent = 0
    while sent < size:
        take = min(piece, size - sent)
        sent += take
        yield rng.randbytes(take)


def upload(conn: snworker.ServiceNowConnection, sn: Any, data: Any, name: str = "f.bin",
           ) -> dict[str, Any]:
    incident = sn.records("incident")[0]
    resp = conn.execute_api_request(
        ATTACH, "POST", data, headers={"Content-Type": "application/octet-stream"},
        params={"table_name": "incident", "table_sys_id": incident["sys_id"], "file_name": name})
    assert resp.status == 201
    return resp.data  # type: ignore[no-any-return]


class Peak:
    """Samples the resident memory of some processes until stopped; the growth of each."""

    def __init__(self, **pids: int) -> None:
        self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.base = {name: p.memory_info().rss for name, p in self._processes.items()}
        self.peak = dict(self.base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            for name, process in self._processes.items():
                try:
                    self.peak[name] = max(self.peak[name], process.memory_info().rss)
                except psutil.Error:
                    pass

    def growth(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join(5)
        return {name: self.peak[name] - self.base[name] for name in self.base}


@pytest.fixture(params=[
    pytest.param("fd", marks=pytest.mark.skipif(
        sys.platform == "win32", reason="the fd framing needs POSIX file descriptors")),
    "conn",
])
def framed(request, stub, monkeypatch) -> Iterator[snworker.ServiceNowConnection]:
    """A connection whose pipe uses each framing in turn."""
    monkeypatch.setenv("SNWORKER_IO", request.param)
    connection = connect(stub)
    assert connection._channel.io == request.param
    yield connection
    connection.disconnect()


def test_a_streamed_answer_comes_in_pieces_on_either_framing(framed, stub):
    data = body_of(3 * MB + 12345)
    record = upload(framed, stub, data)
    with framed.stream_api_request(f"/api/now/attachment/{record['sys_id']}/file") as resp:
        assert resp.status == 200  # known before any of the body is read
        assert resp.headers["content-type"] == "application/octet-stream"
        pieces = list(resp.iter_bytes())
    assert b"".join(pieces) == data
    assert len(pieces) > 1 and max(map(len, pieces)) <= STREAM_PIECE
    assert resp.closed
    # The connection goes on serving, plain calls and streams alike.
    assert framed.execute_api_request("/api/now/table/incident").status == 200
    with framed.stream_api_request("/api/now/table/incident", params={"sysparm_limit": 2}) as r:
        assert r.read().startswith(b'{"result":[')


def test_iter_bytes_recuts_to_a_chunk_size(conn, stub):
    data = body_of(700_001)
    record = upload(conn, stub, data)
    with conn.stream_api_request(f"/api/now/attachment/{record['sys_id']}/file") as resp:
        pieces = list(resp.iter_bytes(chunk_size=100_000))
    assert b"".join(pieces) == data
    assert [len(p) for p in pieces] == [100_000] * 7 + [1]
    with pytest.raises(RuntimeError):
        resp.iter_bytes()


def test_a_slow_reader_holds_a_bounded_window_in_both_processes(conn, stub):
    size = 48 * MB
    record = upload(conn, stub, pieces_of(size))
    assert record["size_bytes"] == str(size)
    worker = conn.worker_pid
    assert worker is not None
    with conn.stream_api_request(f"/api/now/attachment/{record['sys_id']}/file") as resp:
        peak = Peak(worker=worker)
        # Before reading, other calls read the pipe: whatever the worker sends for the stream
        # meanwhile waits in this process, as much as the worker sends.
        for _ in range(10):
            conn.execute_api_request("/api/now/table/incident", params={"sysparm_limit": 1})
        time.sleep(0.2)
        conn.execute_api_request("/api/now/table/incident", params={"sysparm_limit": 1})
        digest = hashlib.sha256()
        for piece in resp.iter_bytes():
            digest.update(piece)
        grown = peak.growth()
    assert digest.hexdigest() == record["hash"]
    # This process never held more than the window and the piece in hand, unread.
    assert resp.peak_buffered <= WINDOW + STREAM_PIECE
    assert resp.peak_buffered >= WINDOW  # the other calls let the window fill
    # The worker read the instance no faster than the reader: far less than the body.
    assert grown["worker"] < 16 * MB, grown


def test_a_stream_closed_early_is_released_and_its_http_response_closed(conn, stub):
    record = upload(conn, stub, pieces_of(32 * MB))
    worker = psutil.Process(conn.worker_pid)
    port = int(stub.url.rsplit(":", 1)[1])

    def connections_to_stub() -> int:
        return sum(1 for c in worker.net_connections("tcp")
                   if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)

    with conn.stream_api_request(f"/api/now/attachment/{record['sys_id']}/file") as resp:
        pieces = resp.iter_bytes()
        assert next(pieces)
        during = connections_to_stub()
        assert during >= 1
    assert resp.closed
    deadline = time.monotonic() + 5
    while connections_to_stub() >= during and time.monotonic() < deadline:
        time.sleep(0.02)
    assert connections_to_stub() < during  # aborted, not read on and pooled
    # Dropped without closing: the finalizer tells the worker just the same.
    resp2 = conn.stream_api_request(f"/api/now/attachment/{record['sys_id']}/file")
    assert resp2.status == 200
    del resp2
    gc.collect()
    deadline = time.monotonic() + 5
    while connections_to_stub() > 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert connections_to_stub() == 0
    # The dropped stream's call leaves once its closing thread read the worker's last word.
    while len(conn._channel._calls) and time.monotonic() < deadline + 5:
        time.sleep(0.02)
    assert len(conn._channel._calls) == 0
    assert conn.execute_api_request("/api/now/table/incident").status == 200


def test_error_statuses_raise_or_stream_as_asked(conn):
    missing = "/api/now/table/incident/0123456789abcdef0123456789abcdef"
    with pytest.raises(snworker.ApiRequestError) as caught:
        conn.stream_api_request(missing)
    assert caught.value.status == 404
    with conn.stream_api_request(missing, raise_for_status=False) as resp:
        assert resp.status == 404
        assert b"No Record found" in resp.read()


def test_bad_input_is_refused_before_anything_is_sent(conn, stub):
    before = len(stub.requests)
    with pytest.raises(snworker.InvalidRequestError):
        conn.stream_api_request("//evil.example/x")
    with pytest.raises(snworker.InvalidRequestError):
        conn.execute_api_request(ATTACH, "POST", io.StringIO("text mode"))
    with pytest.raises(snworker.InvalidRequestError):
        conn.execute_api_request(ATTACH, "POST", iter(["not", "bytes"]))
    assert len(stub.requests) == before
    assert conn.execute_api_request("/api/now/table/incident").status == 200


def test_uploads_stream_from_files_and_iterators(conn, stub, tmp_path):
    data = body_of(2 * MB + 7)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    with open(path, "rb") as file:
        from_file = upload(conn, stub, file)
    from_iterator = upload(conn, stub, iter([data[:5], b"", data[5:MB], data[MB:]]))
    half_read = io.BytesIO(data)
    half_read.seek(MB)
    from_position = upload(conn, stub, half_read)
    sha = hashlib.sha256(data).hexdigest()
    assert from_file["hash"] == from_iterator["hash"] == sha
    assert from_position["hash"] == hashlib.sha256(data[MB:]).hexdigest()
    empty = upload(conn, stub, iter([]))
    assert empty["size_bytes"] == "0"


def test_an_upload_and_a_streamed_answer_in_one_call(conn, stub):
    # The Table API echoes the record it created: the body goes up in pieces, comes down in
    # pieces.
    record = b'{"short_description":"' + b"x" * 600_000 + b'"}'
    pieces = iter([record[i:i + 70_000] for i in range(0, len(record), 70_000)])
    with conn.stream_api_request("/api/now/table/incident", "POST", pieces) as resp:
        assert resp.status == 201
        body = resp.read()
    assert body.count(b"x") >= 600_000


def test_a_worker_killed_mid_stream_fails_the_reader_promptly(conn, stub):
    record = upload(conn, stub, pieces_of(16 * MB))
    with conn.stream_api_request(f"/api/now/attachment/{record['sys_id']}/file",
                                 timeout=30) as resp:
        pieces = resp.iter_bytes()
        next(pieces)
        killed = time.monotonic()
        kill(conn.worker_pid)
        with pytest.raises(snworker.WorkerCrashedError):
            for _ in pieces:
                pass
        assert time.monotonic() - killed < 3.0


def test_a_worker_killed_mid_upload_fails_the_caller_promptly(conn, stub):
    started = threading.Event()

    def endless() -> Iterator[bytes]:
        while True:
            started.set()
            yield b"z" * PIECE

    killer = threading.Timer(0.5, lambda: kill(conn.worker_pid))
    killer.start()
    began = time.monotonic()
    with pytest.raises(snworker.WorkerCrashedError):
        upload(conn, stub, endless())
    assert started.is_set() and time.monotonic() - began < 4.0
    killer.join()


class StallingRelay(Relay):
    """A relay that, once armed, passes at most `limit` more bytes of each answer, then stalls."""

    def __init__(self, target: tuple[str, int], limit: int) -> None:
        self.limit = limit
        self.armed = threading.Event()
        super().__init__(target)

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self._target, timeout=10)
        threading.Thread(target=pump, args=(client, upstream, None, self._lock),
                         daemon=True).start()
        passed = 0
        try:
            while data := upstream.recv(65536):
                if self.armed.is_set():
                    if passed >= self.limit:
                        time.sleep(30)
                        return
                    passed += len(data)
                client.sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()


def test_a_stream_that_stalls_mid_body_times_out():
    with StubServiceNow() as sn:
        relay = StallingRelay(("127.0.0.1", int(sn.url.rsplit(":", 1)[1])), limit=600_000)
        url = f"http://127.0.0.1:{relay.port}"
        conn = snworker.connect(url, sn.client_id, redirect_uri=sn.redirect_uri,
                                open_browser=snworker.testing.approve)
        try:
            record = upload(conn, sn, pieces_of(8 * MB))
            relay.armed.set()
            began = time.monotonic()
            with (conn.stream_api_request(f"/api/now/attachment/{record['sys_id']}/file",
                                          timeout=1.0) as resp,
                  pytest.raises(snworker.RequestTimeoutError)):
                for _ in resp.iter_bytes():
                    pass
            assert time.monotonic() - began < 6.0
            relay.armed.clear()
            assert conn.execute_api_request("/api/now/table/incident").status == 200
        finally:
            conn.disconnect()
            relay.close()


@pytest.mark.skipif(sys.platform == "win32", reason="the POSIX agent socket")
def test_a_stream_through_an_agent(stub, tmp_path, monkeypatch):
    from snworker import agent as agents

    info, channel = agents.start(stub.url, stub.client_id, redirect_uri=stub.redirect_uri,
                                 open_browser=snworker.testing.approve, authorization_timeout=15,
                                 address=str(tmp_path / "agent" / "agent.sock"), idle=60)
    channel.release()
    monkeypatch.setenv(agents.ENVIRONMENT, info.address)
    try:
        conn = snworker.attach()
        data = body_of(2 * MB + 3)
        record = upload(conn, stub, iter([data[:MB], data[MB:]]))
        with conn.stream_api_request(f"/api/now/attachment/{record['sys_id']}/file") as resp:
            assert resp.read() == data
        with conn.stream_api_request(f"/api/now/attachment/{record['sys_id']}/file") as resp:
            assert next(resp.iter_bytes())  # closed early: the agent ends it and goes on
        assert conn.execute_api_request("/api/now/table/incident").status == 200
        conn.disconnect()
    finally:
        agents.control(info.address, "stop")
        assert agents.wait_gone(info.pid, 10)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_200_mb_down_and_up_with_bounded_memory_in_each_process():
    stub = StubServiceNow.start_process()
    try:
        conn = snworker.connect(stub.url, stub.client_id, redirect_uri=stub.redirect_uri,
                                open_browser=snworker.testing.approve)
        with conn:
            size = 200 * MB
            worker = conn.worker_pid
            assert worker is not None
            peak = Peak(parent=os.getpid(), worker=worker)
            record = upload(conn, stub, pieces_of(size, piece=MB))
            up = peak.growth()
            peak = Peak(parent=os.getpid(), worker=worker)
            digest = hashlib.sha256()
            with conn.stream_api_request(
                    f"/api/now/attachment/{record['sys_id']}/file") as resp:
                for piece in resp.iter_bytes():
                    digest.update(piece)
            down = peak.growth()
        assert record["size_bytes"] == str(size)
        assert digest.hexdigest() == record["hash"]
        for grown in (up, down):
            assert grown["parent"] < 40 * MB and grown["worker"] < 40 * MB, (up, down)
    finally:
        stub.close()


def test_an_iterator_that_fails_midway_stops_the_upload_and_the_connection_goes_on(conn, stub):
    def failing() -> Iterator[bytes]:
        yield b"a" * PIECE
        yield b"b" * PIECE
        yield "not bytes"  # type: ignore[misc]

    began = time.monotonic()
    with pytest.raises(snworker.InvalidRequestError):
        upload(conn, stub, failing())
    assert time.monotonic() - began < 5.0
    assert conn.execute_api_request("/api/now/table/incident").status == 200
    assert not [r for r in stub.requests if r["path"] == ATTACH]  # the stub never got it whole

    def broken() -> Iterator[bytes]:
        yield b"a" * PIECE
        raise OSError("the disk went away")

    with pytest.raises(OSError):
        upload(conn, stub, broken())
    assert conn.execute_api_request("/api/now/table/incident").status == 200
