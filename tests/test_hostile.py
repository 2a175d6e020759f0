"""Hostile input from the parent: through the public API, as raw frames on the pipe, and as a
worker killed at random moments. Each ends in a clear error; nothing is sent, nothing hangs,
nothing is left behind.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

import snworker
from snworker.testing import StubServiceNow, approve
from tests.conftest import api_requests, connect, port_is_free
from tests.processes import descendants, process_gone

INCIDENTS = "/api/now/table/incident"


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[StubServiceNow, snworker.ServiceNowConnection]]:
    with StubServiceNow() as sn:
        conn = connect(sn)
        try:
            yield sn, conn
        finally:
            conn.disconnect()


HOSTILE: list[tuple[str, dict[str, Any]]] = [
    # paths
    ("url", {"path": "https://evil.example/x"}),
    ("http url", {"path": "http://127.0.0.1:1/api/now/table/incident"}),
    ("scheme-relative", {"path": "//evil.example/x"}),
    ("no slash", {"path": "evil.example/x"}),
    ("empty path", {"path": ""}),
    ("crlf in path", {"path": "/api/now/table/incident\r\nX-Injected: 1"}),
    ("lf in path", {"path": "/api/now/table/incident\n"}),
    ("nul in path", {"path": "/api/now/table/incident\x00"}),
    ("tab in path", {"path": "/api/now/table/incident\t"}),
    ("dot-dot", {"path": "/api/../oauth_token.do"}),
    ("encoded dot-dot", {"path": "/api/%2e%2e/oauth_revoke_token.do"}),
    ("encoded crlf", {"path": "/api/now/%0d%0aX:1"}),
    ("encoded double slash", {"path": "/%2f%2fevil.example/x"}),
    ("backslashes", {"path": "/api/now\\..\\x"}),
    ("fragment", {"path": "/api/now/table/incident#frag"}),
    ("bytes path", {"path": b"/api/now/table/incident"}),
    # methods
    ("TRACE", {"method": "TRACE"}),
    ("CONNECT", {"method": "CONNECT"}),
    ("OPTIONS", {"method": "OPTIONS"}),
    ("method with crlf", {"method": "GET\r\n"}),
    ("method with a request line", {"method": "GET /x HTTP/1.1"}),
    ("empty method", {"method": ""}),
    ("number method", {"method": 7}),
    # headers
    ("Authorization", {"headers": {"Authorization": "Bearer mine"}}),
    ("Cookie", {"headers": {"cookie": "a=b"}}),
    ("Host", {"headers": {"HOST": "evil.example"}}),
    ("Proxy-Authorization", {"headers": {"Proxy-Authorization": "Basic eA=="}}),
    ("Transfer-Encoding", {"headers": {"Transfer-Encoding": "chunked"}}),
    ("Content-Length", {"headers": {"Content-Length": "1"}}),
    ("Connection", {"headers": {"Connection": "close"}}),
    ("Expect", {"headers": {"Expect": "100-continue"}}),
    ("Accept-Encoding", {"headers": {"Accept-Encoding": "zstd"}}),
    ("method override", {"headers": {"X-HTTP-Method-Override": "DELETE"}}),
    ("session token", {"headers": {"X-UserToken": "abc"}}),
    ("forwarded", {"headers": {"X-Forwarded-For": "10.0.0.1"}}),
    ("unknown standard header", {"headers": {"Referer": "https://evil.example"}}),
    ("space in name", {"headers": {"Bad Name": "x"}}),
    ("colon in name", {"headers": {"X-A:b": "x"}}),
    ("empty name", {"headers": {"": "x"}}),
    ("crlf in value", {"headers": {"X-A": "b\r\nX-B: c"}}),
    ("nul in value", {"headers": {"X-A": "b\x00"}}),
    ("non-ascii value", {"headers": {"X-A": "café"}}),
    ("huge value", {"headers": {"X-A": "x" * 9000}}),
    ("given twice", {"headers": {"X-A": "1", "x-a": "2"}}),
    ("too many", {"headers": {f"X-H{i}": "1" for i in range(65)}}),
    ("number value", {"headers": {"X-A": 1}}),
    ("headers not a mapping", {"headers": [("X-A", "1")]}),
    # parameters
    ("number name", {"params": {1: "a"}}),
    ("object value", {"params": {"a": object()}}),
    ("dict value", {"params": {"a": {"b": 1}}}),
    ("params not a mapping", {"params": "a=b"}),
    # bodies
    ("object in body", {"data": {"when": object()}}),
    ("nan in body", {"data": {"n": float("nan")}}),
    ("set body", {"data": {1, 2}}),
    # deadlines
    ("zero timeout", {"timeout": 0}),
    ("infinite timeout", {"timeout": float("inf")}),
    ("text timeout", {"timeout": "5"}),
    ("negative timeout", {"timeout": -1}),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[name for name, _ in HOSTILE])
def test_hostile_requests_are_refused_with_nothing_sent(shared, case):
    sn, conn = shared
    kwargs = dict(case[1])
    path = kwargs.pop("path", INCIDENTS)
    method = kwargs.pop("method", "POST")
    data = kwargs.pop("data", {"short_description": "x"})
    before = len(api_requests(sn))
    with pytest.raises(snworker.InvalidRequestError):
        conn.execute_api_request(path, method, data, **kwargs)
    assert len(api_requests(sn)) == before
    assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200


def test_the_table_has_enough_cases():
    assert len(HOSTILE) >= 40


# --- garbage on a real worker's pipe ------------------------------------------------------


def write_raw(conn: snworker.ServiceNowConnection, data: bytes) -> None:
    """Write bytes on the pipe as code in the parent could, whichever framing is in use."""
    pipe = conn._channel._pipe
    if conn._channel.io == "fd":
        os.write(pipe.fileno(), data)
    else:
        pipe._conn.send_bytes(data)


def frame(head: bytes, body: bytes = b"", claimed: int | None = None) -> bytes:
    return struct.pack("!IQ", len(head), len(body) if claimed is None else claimed) + head + body


class Payload:
    def __reduce__(self) -> Any:
        return (os.system, ("touch /tmp/snworker-pwned",))


GARBAGE = {
    "random bytes": os.urandom(200),
    "unknown message type": frame(pickle.dumps((99, False, 1))),
    "a pickled global": frame(pickle.dumps((2, False, Payload()))),
    "a huge length": frame(pickle.dumps((2, True, 1)), claimed=1 << 62),
    "a head over the limit": struct.pack("!IQ", 1 << 30, 0),
    "a body the head denies": frame(pickle.dumps((3, False, 1)), b"x" * 10),
    "a result sent to the worker": frame(pickle.dumps((7, True, 1, 200, ())), b"{}"),
}


@pytest.mark.parametrize("garbage", list(GARBAGE), ids=list(GARBAGE))
def test_garbage_on_the_pipe_stops_the_worker_cleanly(garbage):
    with StubServiceNow() as sn:
        conn = connect(sn)
        pid = conn.worker_pid
        write_raw(conn, GARBAGE[garbage])
        started = time.monotonic()
        if garbage == "a result sent to the worker":  # well formed: ignored, still serving
            assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
            conn.disconnect()
            return
        with pytest.raises(snworker.WorkerCrashedError) as caught:
            conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}, timeout=10)
        assert time.monotonic() - started < 5
        assert caught.value.exitcode == 3 and "could not read" in str(caught.value)
        assert process_gone(pid, 2)
        assert sn.revocation_count == 1  # it revoked the grant on its way out
        assert not os.path.exists("/tmp/snworker-pwned")
        conn.disconnect()
        for secret in sn.issued_secrets():
            assert secret not in str(caught.value)


def test_a_truncated_frame_ends_in_a_bounded_error():
    with StubServiceNow() as sn:
        conn = connect(sn)
        pid = conn.worker_pid
        write_raw(conn, struct.pack("!IQ", 500, 0) + b"\x80\x05")  # a head cut short
        started = time.monotonic()
        with pytest.raises((snworker.RequestTimeoutError, snworker.WorkerCrashedError)):
            conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}, timeout=1)
        conn.disconnect(timeout=1)
        assert time.monotonic() - started < 8
        assert process_gone(pid, 2)


# --- the worker killed at random moments ---------------------------------------------------


def kill_new_workers(after: float, known: set[int], done: threading.Event) -> None:
    """After `after` seconds, SIGKILL every process this test process started since `known`."""
    if done.wait(after):
        return
    for proc in descendants():
        if proc.pid not in known:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass


@pytest.mark.parametrize("after", [0.0, 0.03, 0.08, 0.15, 0.3, 0.6])
def test_a_worker_killed_during_connect_fails_clearly_and_leaves_nothing(after):
    with StubServiceNow() as sn:
        known = {p.pid for p in descendants()}
        done = threading.Event()
        ports: list[int] = []

        def slow_approve(url: str) -> bool:
            from urllib.parse import parse_qs, urlsplit

            redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]
            ports.append(urlsplit(redirect).port or 0)
            time.sleep(0.2)
            return approve(url)

        killer = threading.Thread(target=kill_new_workers, args=(after, known, done))
        killer.start()
        started = time.monotonic()
        try:
            conn = connect(sn, open_browser=slow_approve, authorization_timeout=10)
        except snworker.WorkerError as exc:
            assert isinstance(exc, snworker.WorkerStartError | snworker.WorkerCrashedError)
            assert time.monotonic() - started < 5
        else:
            conn.disconnect()  # the kill came after connect() had finished
        finally:
            done.set()
            killer.join(5)
        assert _no_new_processes(known, within=2)
        assert all(_frees(p, within=2) for p in ports)
        with connect(sn) as conn:  # the next connect() works
            assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200


def _frees(port: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while not port_is_free(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _no_new_processes(known: set[int], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not [p for p in descendants() if p.pid not in known]:
            return True
        time.sleep(0.05)
    return False


# Only Linux's worker has a supervisor (it forks into a fresh address space); elsewhere the
# worker's parent is this test process.
SUPERVISOR = pytest.param("supervisor", marks=pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="only Linux's worker runs under a supervisor"))


@pytest.mark.parametrize("victim", ["worker", SUPERVISOR])
def test_a_worker_killed_during_a_refresh_fails_clearly_and_leaves_nothing(victim):
    with StubServiceNow() as sn:
        known = {p.pid for p in descendants()}
        conn = connect(sn)
        sn.expire_access_tokens()
        sn.inject(status=None, delay=2.0, times=1, path_prefix="/oauth_token.do")
        errors: list[BaseException] = []

        def call() -> None:
            try:
                conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}, timeout=10)
            except BaseException as exc:
                errors.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(0.5)  # the refresh now waits at the stub
        assert sn.grant_counts["refresh_token"] == 0
        pid = conn.worker_pid
        target = psutil.Process(pid) if victim == "worker" else psutil.Process(pid).parent()
        assert target is not None
        killed_at = time.monotonic()
        target.kill()
        caller.join(5)
        assert [type(e) for e in errors] == [snworker.WorkerCrashedError]
        assert time.monotonic() - killed_at < 2.5
        conn.disconnect()
        assert _no_new_processes(known, within=2)
        with connect(sn) as again:
            assert again.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
