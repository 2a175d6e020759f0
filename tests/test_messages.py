"""The framing of messages across the pipe: round trips, and refusal of anything but data.

Every test runs over both framings: on the file descriptor (POSIX) and with the connection's
send_bytes/recv_bytes (Windows, and SNWORKER_IO=conn).
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import threading

import multiprocess
import multiprocess.connection
import pytest

from snworker import messages
from snworker.messages import (
    Cancel,
    Chunk,
    Connect,
    Connected,
    Credit,
    Disconnect,
    Error,
    Head,
    Log,
    OpenBrowser,
    ProtocolError,
    Request,
    Result,
)
from snworker.pipes.conn import ConnPipe
from snworker.policy import RetryPolicy

if sys.platform != "win32":
    from snworker.pipes.fd import FdPipe

# The descriptor framing is POSIX's; Windows frames with send_bytes/recv_bytes ("conn").
posix_framing = pytest.mark.skipif(sys.platform == "win32",
                                   reason="the descriptor framing is POSIX-only")
FRAMINGS = [pytest.param("fd", marks=posix_framing), "conn"]

SAMPLES = [
    Connect(1, "https://x.service-now.com", "cid", ("http://127.0.0.1:0/cb",), ("a",), 300.0, 30.0,
            RetryPolicy().to_wire(), 20),
    Request(2, "GET", "/api/now/table/incident", (("sysparm_limit", "1"),), (), False, 30.0),
    Request(3, "POST", "/api/now/table/incident", (), (("X-A", "b"),), True, 5.0, body=b'{"a":1}'),
    Request(4, "POST", "/x", (), (), False, 5.0, False, False, body=b""),
    Cancel(5),
    Disconnect(6, 5.0),
    OpenBrowser(7, "https://x/oauth_auth.do?a=b"),
    Connected(8, "https://x", {"sys_id": "1", "user_name": "admin", "name": "A"}),
    Connected(9, "https://x", None),
    Result(10, 200, (("Content-Type", "application/json"),), b'{"result":[]}'),
    Result(11, 204, (), None),
    Error(12, "api", "boom", 503, "detail", (("Retry-After", "1"),)),
    Log(0, 10, "snworker.worker", "hello"),
    Request(13, "GET", "/x", (), (), False, 5.0, window=1 << 20, raise_for_status=False),
    Request(14, "POST", "/x", (), (), False, 5.0, upload=-1),
    Head(15, 200, (("Content-Type", "application/octet-stream"),)),
    Chunk(16, False, b"\x00" * 70000),
    Chunk(17, True, b""),
    Credit(18, 1 << 18),
]


def ends(io: str, read_ahead: bool = True):
    a, b = multiprocess.Pipe()
    if io == "fd":
        return FdPipe(a.fileno(), a.close), FdPipe(b.fileno(), b.close, read_ahead), a, b
    wait = multiprocess.connection.wait
    return ConnPipe(a, wait), ConnPipe(b, wait), a, b


@pytest.fixture(params=FRAMINGS)
def io(request):
    return request.param


@pytest.fixture
def pipe(io):
    a, b, raw_a, raw_b = ends(io)
    yield a, b
    raw_a.close()
    raw_b.close()


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(pipe, message):
    a, b = pipe
    # From a thread of its own: a message over the pipe's buffer (a 70 kB Chunk) waits for
    # its reader on Windows.
    sender = threading.Thread(target=a.send, args=(message,))
    sender.start()
    assert b.receive() == message
    sender.join(5)
    assert not sender.is_alive()


@pytest.mark.parametrize("size", [0, 10, 70_000, 1 << 20, 8 << 20])
def test_bodies_of_every_size_cross_whole_and_raw(pipe, size):
    a, b = pipe
    body = os.urandom(size)
    message = Result(1, 200, (("A", "b"),), body)
    head, _ = messages.encode(message)
    assert len(head) < 100  # the body is never inside the pickle

    def send_both() -> None:
        a.send(message)
        a.send(Cancel(2))

    sender = threading.Thread(target=send_both)
    sender.start()
    assert b.receive() == message
    assert b.receive() == Cancel(2)
    sender.join(5)


@posix_framing
def test_read_ahead_keeps_what_it_read_for_the_next_message():
    a, b, raw_a, raw_b = ends("fd")
    for message in SAMPLES:
        a.send(message)
    got = [b.receive()]
    assert b.buffered  # one read took several messages
    got += [b.receive() for _ in SAMPLES[1:]]
    assert got == SAMPLES
    assert not b.buffered
    raw_a.close()
    raw_b.close()


def send_raw(io: str, conn, head: bytes, body: bytes = b"", claimed: int | None = None) -> None:
    """Write a frame as a compromised peer would, bypassing the encoder."""
    prefix = struct.pack("!IQ", len(head), len(body) if claimed is None else claimed)
    if io == "fd":
        os.write(conn.fileno(), prefix + head + body)
    else:
        conn.send_bytes(prefix + head + body)


@pytest.fixture
def raw_pipe(io):
    _, b, raw_a, raw_b = ends(io, read_ahead=False)
    yield raw_a, b
    raw_a.close()
    raw_b.close()


def test_a_frame_naming_a_global_is_refused(io, raw_pipe):
    # A compromised parent could otherwise make the worker run code by sending a crafted pickle.
    raw, b = raw_pipe

    class Payload:
        def __reduce__(self):
            return (os.getcwd, ())

    send_raw(io, raw, pickle.dumps((2, False, Payload())))
    with pytest.raises(ProtocolError, match="refused global"):
        b.receive()


@pytest.mark.parametrize("head", [
    pickle.dumps((99, False, 1)), pickle.dumps((2, False, 1)), pickle.dumps(7), b"garbage",
    pickle.dumps((2, True, 1)),
])
def test_malformed_frames_raise_protocol_errors(io, raw_pipe, head):
    raw, b = raw_pipe
    send_raw(io, raw, head)
    with pytest.raises(ProtocolError):
        b.receive()


def test_a_body_the_head_does_not_announce_is_refused(io, raw_pipe):
    raw, b = raw_pipe
    send_raw(io, raw, pickle.dumps((5, False, 1, "u")), body=b"unexpected")
    with pytest.raises(ProtocolError):
        b.receive()


def test_a_frame_claiming_a_huge_body_is_refused_before_reading_it(io, raw_pipe):
    raw, b = raw_pipe
    send_raw(io, raw, pickle.dumps((7, True, 1, 200, ())), claimed=1 << 62)
    with pytest.raises(ProtocolError, match="size limit"):
        b.receive()


def test_a_closed_peer_is_eof(io):
    _, b, raw_a, raw_b = ends(io)
    raw_a.close()
    with pytest.raises(EOFError):
        b.receive()
    raw_b.close()


def test_messages_are_frozen_and_slotted():
    for message in SAMPLES:
        assert not hasattr(message, "__dict__")
        with pytest.raises(AttributeError):
            message.id = 0  # type: ignore[misc]


def test_secrets_do_not_show_in_reprs():
    assert "SECRET" not in repr(Request(1, "POST", "/x", (), (), False, 1.0, body=b"SECRET"))
    assert "SECRET" not in repr(Result(1, 200, (), b"SECRET"))


def test_frames_stay_whole_when_the_pipe_is_full(pipe):
    # 60 KB frames are each written at once; against a reader that starts late, the socket
    # buffer fills and the writer waits mid-stream.
    a, b = pipe
    sent = [Result(i, 200, (), os.urandom(60_000)) for i in range(40)]

    def send_all() -> None:
        for message in sent:
            a.send(message)

    sender = threading.Thread(target=send_all)
    sender.start()
    sender.join(0.3)
    assert [b.receive() for _ in sent] == sent
    sender.join(5)
    assert not sender.is_alive()


def sentinel():
    """What a worker's sentinel is on this OS, and how to fire it: a pipe's read end (EOF), or
    a Windows event (signalled)."""
    if sys.platform == "win32":
        import _winapi

        event = _winapi.CreateEventW(0, True, False, None)
        return event, lambda: _winapi.SetEvent(event), lambda: _winapi.CloseHandle(event)
    read, write = os.pipe()
    return read, lambda: os.close(write), lambda: os.close(read)


def test_the_waiter_sees_the_pipe_and_the_sentinel(io):
    a, b, raw_a, raw_b = ends(io)
    handle, fire, close = sentinel()
    waiter = b.waiter(handle)
    try:
        assert waiter.wait(0.01) == (False, False)
        a.send(Cancel(1))
        assert waiter.wait(1.0) == (True, False)
        assert b.receive() == Cancel(1)
        fire()
        assert waiter.wait(1.0) == (False, True)
    finally:
        waiter.close()
        close()
        raw_a.close()
        raw_b.close()
