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
        assert "transfer-encoding" not in names
        assert names.count("content-length") <= 1 and names.count("host") == 1
        length = int(dict(headers).get("content-length", "0"))
        body = stream[end + 4:end + 4 + length]
        assert len(body) == length, "a body cut short"
        found.append({"method": method, "target": target, "headers": headers, "body": body})
        at = end + 4 + length
    return found


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
