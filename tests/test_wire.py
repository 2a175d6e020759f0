"""Rule 3, at the socket: the worker alone frames what goes on the wire, one request per call.

A recording TCP relay sits between the worker and the stub. Everything the worker writes is
parsed back into HTTP requests, strictly: a second request hidden in a first, or bytes left over,
would show. Callers try every way of smuggling a request through the public API.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import snworker
from snworker.testing import StubServiceNow, approve
from tests.relays import Relay

INCIDENTS = "/api/now/table/incident"
SMUGGLED = (b"0\r\n\r\nGET /api/now/table/sys_user HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"X-Swallow: ")


def parse_requests(stream: bytes) -> list[dict[str, Any]]:
    """Every HTTP/1.1 request in `stream`; AssertionError if any byte is not part of one."""
    found = []
    at = 0
    while at < len(stream):
        end = stream.find(b"\r\n\r\n", at)
        assert end >= 0, f"bytes that are no request: {stream[at:at + 80]!r}"
        lines = stream[at:end].decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
        assert version == "HTTP/1.1"
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            assert sep and name == name.strip() and name, f"not a header line: {line!r}"
            headers.append((name.lower(), value.strip()))
        names = [n for n, _ in headers]
        assert names.count("content-length") <= 1 and names.count("host") == 1
        if "transfer-encoding" in names:
            # Only a streamed upload of unknown length, chunked by the worker, and never with
            # a Content-Length beside it.
            assert dict(headers)["transfer-encoding"] == "chunked" and names.count(
                "transfer-encoding") == 1 and "content-length" not in names
            body, at = _chunked(stream, end + 4)
        else:
            length = int(dict(headers).get("content-length", "0"))
            body = stream[end + 4:end + 4 + length]
            assert len(body) == length, "a body cut short"
            at = end + 4 + length
        found.append({"method": method, "target": target, "headers": headers, "body": body})
    return found


def _chunked(stream: bytes, at: int) -> tuple[bytes, int]:
    """A chunked body from `at`, strictly: the body and where the next request starts."""
    body = bytearray()
    while True:
        line_end = stream.find(b"\r\n", at)
        assert line_end > at, "a chunk without its size line"
        size_text = stream[at:line_end]
        assert size_text.isalnum(), f"a chunk size that is not hex: {size_text[:20]!r}"
        size = int(size_text, 16)
        start = line_end + 2
        assert stream[start + size:start + size + 2] == b"\r\n", "a chunk of the wrong size"
        body += stream[start:start + size]
        at = start + size + 2
        if size == 0:
            return bytes(body), at


@pytest.fixture(scope="module")
def wired() -> Iterator[tuple[StubServiceNow, Relay, snworker.ServiceNowConnection]]:
    with StubServiceNow() as sn:
        port = int(sn.url.rsplit(":", 1)[1])
        relay = Relay(("127.0.0.1", port))
        url = f"http://127.0.0.1:{relay.port}"
        conn = snworker.connect(url, sn.client_id, redirect_uri=sn.redirect_uri,
                                open_browser=approve, authorization_timeout=15)
        try:
            yield sn, relay, conn
        finally:
            conn.disconnect()
            relay.close()


def worker_requests(relay: Relay) -> list[dict[str, Any]]:
    """Requests on the worker's connections (the browser stand-in's say python-requests)."""
    requests = []
    for stream in relay.recorded():
        parsed = parse_requests(stream)
        if parsed and dict(parsed[0]["headers"]).get("user-agent") == "snworker":
            requests += parsed
    return requests


SMUGGLING_HEADERS = [
    {"Transfer-Encoding": "chunked"},
    {"transfer-encoding": "identity"},
    {"Content-Length": "0"},
    {"content-length": "12"},
    {"Connection": "keep-alive, X-Trace"},
    {"Keep-Alive": "timeout=5"},
    {"TE": "trailers"},
    {"Trailer": "X-Trace"},
    {"Upgrade": "h2c"},
    {"Expect": "100-continue"},
    {"Proxy-Connection": "keep-alive"},
    {"Host": "127.0.0.1"},
    {"Accept-Encoding": "br"},
    {"X-Forwarded-Host": "evil.example"},
    {"X-A": "b\r\n\r\nGET / HTTP/1.1"},
    {"X-A": "b\nX-B: c"},
]


@pytest.mark.parametrize("headers", SMUGGLING_HEADERS, ids=lambda h: next(iter(h)))
def test_framing_headers_are_refused_and_nothing_reaches_the_wire(wired, headers):
    _, relay, conn = wired
    before = worker_requests(relay)
    with pytest.raises(snworker.InvalidRequestError):
        conn.execute_api_request(INCIDENTS, "POST", SMUGGLED, headers=headers)
    assert worker_requests(relay) == before


def test_every_call_is_exactly_one_request_framed_by_its_own_body(wired):
    _, relay, conn = wired
    before = len(worker_requests(relay))
    bodies = [
        b'{"short_description":"plain"}',
        b'{"short_description":"' + SMUGGLED.replace(b"\r\n", b" ") + b'"}',
        b"{}",
    ]
    conn.execute_api_request(INCIDENTS, "GET", params={"sysparm_limit": 1})
    for body in bodies:
        conn.execute_api_request(INCIDENTS, "POST", body,
                                 headers={"Content-Type": "application/json", "X-Trace": "1"})
    conn.execute_api_request(INCIDENTS, "GET", None, False, {"Accept": "application/json"},
                             params={"sysparm_query": "short_description=a\r\nb"})
    sent = worker_requests(relay)[before:]
    assert len(sent) == 2 + len(bodies)
    posts = [r for r in sent if r["method"] == "POST"]
    assert [r["body"] for r in posts] == bodies
    for request in sent:
        headers = dict(request["headers"])
        assert headers["user-agent"] == "snworker"
        assert headers["authorization"].startswith("Bearer ")
        assert [n for n, _ in request["headers"]].count("accept") == 1
        assert "\r" not in request["target"] and "\n" not in request["target"]


def test_the_oauth_exchange_and_api_calls_all_went_through_the_relay(wired):
    _, relay, _ = wired
    targets = [r["target"].split("?")[0] for r in worker_requests(relay)]
    assert targets[:2] == ["/oauth_auth.do", "/oauth_token.do"]  # the probe, the exchange
    assert "/api/now/table/sys_user" in targets  # the current user, read at connect


def test_a_streamed_upload_is_framed_by_the_worker(wired):
    import io

    _, relay, conn = wired
    before = len(worker_requests(relay))
    sized = b'{"short_description":"' + SMUGGLED.replace(b"\r\n", b" ") * 2000 + b'"}'
    conn.execute_api_request(INCIDENTS, "POST", io.BytesIO(sized))
    # Unknown length: chunked. Pieces that look like the end of a chunked body and a second
    # request stay inside their chunks, each prefixed with its length by the worker. (The
    # stub refuses the JSON with its raw CR/LF: what matters here is the wire.)
    pieces = [b'{"short_description":"', SMUGGLED, b"", b"0\r\n\r\n", SMUGGLED * 300, b'"}']
    with pytest.raises(snworker.ApiRequestError):
        conn.execute_api_request(INCIDENTS, "POST", iter(pieces))
    sent = worker_requests(relay)[before:]
    assert len(sent) == 2
    first, second = (dict(r["headers"]) for r in sent)
    assert first["content-length"] == str(len(sized)) and "transfer-encoding" not in first
    assert second["transfer-encoding"] == "chunked" and "content-length" not in second
    assert [r["body"] for r in sent] == [sized, b"".join(pieces)]


def _hostile_upload(conn, declared: int, pieces: list[bytes]):
    """Send an upload as a compromised parent may: any pieces at all, whatever it declared."""
    from snworker.messages import Chunk, Credit, Request

    channel = conn._channel
    call = channel.open(Request(channel.next_id(), "POST", INCIDENTS, (), (), False, 5.0,
                                upload=declared))
    credit = channel.next(call, None)
    assert isinstance(credit, Credit)
    for index, piece in enumerate(pieces):
        channel.send(Chunk(call.ident, index == len(pieces) - 1, piece))
    while True:
        answer = channel.next(call, None)
        if not isinstance(answer, Credit):
            return answer


@pytest.mark.parametrize("pieces", [
    [b"{}" + SMUGGLED],                      # longer than declared in one piece
    [b'{"a":', b'1}', SMUGGLED],             # exactly declared, then more
    [b'{"a"'],                               # shorter than declared
], ids=["long", "then_more", "short"])
def test_a_parent_cannot_frame_a_second_request_with_its_upload(wired, pieces):
    from snworker.messages import Error

    _, relay, conn = wired
    before = len(relay.recorded())
    answer = _hostile_upload(conn, 6, pieces)
    assert isinstance(answer, Error) and "declared" in answer.message
    streams = relay.recorded()
    # The worker closed that connection: what it wrote is one request whose body never
    # exceeded the declared length, and nothing after it.
    for stream in streams:
        declared = stream.find(b"\r\nContent-Length: 6\r\n")
        if declared >= 0:
            head_end = stream.find(b"\r\n\r\n", declared)
            assert len(stream) - head_end - 4 <= 6
            assert stream[:declared].count(b"HTTP/1.1\r\n") == stream.count(b"HTTP/1.1\r\n")
            break
    else:
        raise AssertionError("the upload never reached the wire")
    assert len(streams) >= before
    assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200


def test_a_parent_that_sends_past_its_credit_has_its_upload_stopped(wired):
    from snworker.messages import Error
    from snworker.worker.peer import UPLOAD_WINDOW

    _, _, conn = wired
    flood = [b"x" * (1 << 18)] * (UPLOAD_WINDOW // (1 << 18) + 8)
    answer = _hostile_upload(conn, -1, flood)
    assert isinstance(answer, Error)
    assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
