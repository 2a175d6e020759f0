"""The framing of messages across the pipe: round trips, and refusal of anything but data."""

from __future__ import annotations

import os
import pickle
import threading

import multiprocess
import pytest

from snworker import messages
from snworker.messages import (
    Cancel,
    Connect,
    Connected,
    Disconnect,
    Error,
    Log,
    OpenBrowser,
    Request,
    Result,
)
from snworker.policy import RetryPolicy

SAMPLES = [
    Connect(1, "https://x.service-now.com", "cid", "http://127.0.0.1:0/cb", ("a",), 300.0, 30.0,
            RetryPolicy().to_wire(), 20),
    Request(2, "GET", "/api/now/table/incident", (("sysparm_limit", "1"),), (), False, 30.0),
    Request(3, "POST", "/api/now/table/incident", (), (("X-A", "b"),), True, 5.0, b'{"a":1}'),
    Request(4, "POST", "/x", (), (), False, 5.0, b""),
    Cancel(5),
    Disconnect(6, 5.0),
    OpenBrowser(7, "https://x/oauth_auth.do?a=b"),
    Connected(8, "https://x", {"sys_id": "1", "user_name": "admin", "name": "A"}),
    Connected(9, "https://x", None),
    Result(10, 200, (("Content-Type", "application/json"),), b'{"result":[]}'),
    Result(11, 204, (), None),
    Error(12, "api", "boom", 503, "detail", (("Retry-After", "1"),)),
    Log(0, 10, "snworker.worker", "hello"),
]


@pytest.fixture
def pipe():
    a, b = multiprocess.Pipe()
    yield a, b
    a.close()
    b.close()


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(pipe, message):
    a, b = pipe
    messages.send(a, message)
    assert messages.receive(b) == message


@pytest.mark.parametrize("size", [0, 10, 70_000, 1 << 20, 8 << 20])
def test_bodies_of_every_size_cross_whole_and_raw(pipe, size):
    a, b = pipe
    body = os.urandom(size)
    message = Result(1, 200, (("A", "b"),), body)
    head, _ = messages.encode(message)
    assert len(head) < 100  # the body is never inside the pickle
    def send_both() -> None:
        messages.send(a, message)
        messages.send(a, Cancel(2))

    sender = threading.Thread(target=send_both)
    sender.start()
    reader = messages.Reader(b)
    assert reader.receive() == message
    assert reader.receive() == Cancel(2)
    sender.join(5)


def test_read_ahead_keeps_what_it_read_for_the_next_message(pipe):
    a, b = pipe
    for message in SAMPLES:
        messages.send(a, message)
    reader = messages.Reader(b)
    got = [reader.receive()]
    assert reader.buffered  # one read took several messages
    got += [reader.receive() for _ in SAMPLES[1:]]
    assert got == SAMPLES
    assert not reader.buffered


def test_a_frame_naming_a_global_is_refused(pipe):
    # A compromised parent could otherwise make the worker run code by sending a crafted pickle.
    a, b = pipe

    class Payload:
        def __reduce__(self):
            return (os.getcwd, ())

    send_raw(a, pickle.dumps((2, False, Payload())))
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        messages.receive(b)


def test_malformed_frames_raise_unpickling_errors(pipe):
    a, b = pipe
    for head in (pickle.dumps((99, False, 1)), pickle.dumps((2, False, 1)), pickle.dumps(7)):
        send_raw(a, head)
        with pytest.raises(pickle.UnpicklingError):
            messages.receive(b)
    send_raw(a, pickle.dumps((5, False, 1, "u")), body=b"unexpected")
    with pytest.raises(pickle.UnpicklingError):
        messages.receive(b)


def send_raw(conn, head: bytes, body: bytes = b"") -> None:
    import struct

    os.write(conn.fileno(), struct.pack("!IQ", len(head), len(body)) + head + body)


def test_a_closed_peer_is_eof(pipe):
    a, b = pipe
    a.close()
    with pytest.raises(EOFError):
        messages.receive(b)


def test_messages_are_frozen_and_slotted():
    for message in SAMPLES:
        assert not hasattr(message, "__dict__")
        with pytest.raises(AttributeError):
            message.id = 0  # type: ignore[misc]


def test_secrets_do_not_show_in_reprs():
    assert "SECRET" not in repr(Request(1, "POST", "/x", (), (), False, 1.0, b"SECRET"))
    assert "SECRET" not in repr(Result(1, 200, (), b"SECRET"))


def test_frames_stay_whole_when_the_pipe_is_full(pipe):
    # 60 KB frames are each written at once; against a reader that starts late, the socket
    # buffer fills and the writer waits mid-stream.
    a, b = pipe
    sent = [Result(i, 200, (), os.urandom(60_000)) for i in range(40)]

    def send_all() -> None:
        for message in sent:
            messages.send(a, message)

    sender = threading.Thread(target=send_all)
    sender.start()
    sender.join(0.3)
    reader = messages.Reader(b)
    assert [reader.receive() for _ in sent] == sent
    sender.join(5)
    assert not sender.is_alive()
