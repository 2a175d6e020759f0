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


def test_a_body_travels_as_its_own_raw_frame(pipe):
    a, b = pipe
    body = os.urandom(1 << 20)
    sender = threading.Thread(target=messages.send, args=(a, Result(1, 200, (), body)))
    sender.start()
    head = b.recv_bytes()
    assert len(head) < 200  # the megabyte is not inside the pickle
    assert b.recv_bytes() == body
    sender.join(5)


def test_a_frame_naming_a_global_is_refused(pipe):
    # A compromised parent could otherwise make the worker run code by sending a crafted pickle.
    a, b = pipe
    ran = threading.Event()

    class Payload:
        def __reduce__(self):
            return (os.getcwd, ())

    a.send_bytes(pickle.dumps((2, False, Payload())))
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        messages.receive(b)
    assert not ran.is_set()


def test_malformed_frames_raise_unpickling_errors(pipe):
    a, b = pipe
    a.send_bytes(pickle.dumps((99, False, 1)))
    with pytest.raises(pickle.UnpicklingError):
        messages.receive(b)
    a.send_bytes(pickle.dumps((2, False, 1)))  # a Request with one field
    with pytest.raises(pickle.UnpicklingError):
        messages.receive(b)


def test_messages_are_frozen_and_slotted():
    for message in SAMPLES:
        assert not hasattr(message, "__dict__")
        with pytest.raises(AttributeError):
            message.id = 0  # type: ignore[misc]


def test_secrets_do_not_show_in_reprs():
    assert "SECRET" not in repr(Request(1, "POST", "/x", (), (), False, 1.0, b"SECRET"))
    assert "SECRET" not in repr(Result(1, 200, (), b"SECRET"))
