"""requests_session() and httpx_transport(): code written for requests or httpx, through a worker.

A recording relay sits between the worker and the stub, so the tests see the bytes the instance
received: what the client set that must never leave (its own credentials, the HTTP library's
headers) is looked for there, not only in what the API returns.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

import snworker
from snworker.testing import StubServiceNow, approve
from snworker.testing.platform import SEED_PASSWORD
from tests.relays import Relay
from tests.test_wire import parse_requests

INCIDENTS = "/api/now/table/incident"
APP_SECRET = "app-own-secret-3f9a1c"


class Wired:
    """A stub that also takes Basic auth, a relay in front of it, a connection through both."""

    def __init__(self, sn: StubServiceNow, relay: Relay, conn: snworker.ServiceNowConnection):
        self.sn, self.relay, self.conn = sn, relay, conn

    @property
    def url(self) -> str:
        return self.conn.instance_url

    def sent(self) -> list[dict[str, Any]]:
        """Every request the worker wrote to the instance, parsed from the relay's bytes."""
        found = []
        for stream in self.relay.recorded():
            parsed = parse_requests(stream)
            if parsed and dict(parsed[0]["headers"]).get("user-agent") == "snworker":
                found += parsed
        return found

    def raw(self) -> bytes:
        """Every byte that reached the relay (the browser stand-in's too)."""
        return b"".join(self.relay.recorded())

    def worker_raw(self) -> bytes:
        """The bytes the worker wrote."""
        return b"".join(s for s in self.relay.recorded() if b"User-Agent: snworker" in s)


@pytest.fixture(scope="module")
def wired() -> Iterator[Wired]:
    with StubServiceNow(auth=("code", "basic")) as sn:
        port = int(sn.url.rsplit(":", 1)[1])
        relay = Relay(("127.0.0.1", port))
        conn = snworker.connect(f"http://127.0.0.1:{relay.port}", sn.client_id,
                                redirect_uri=sn.redirect_uri, open_browser=approve,
                                authorization_timeout=15, request_timeout=10)
        try:
            yield Wired(sn, relay, conn)
        finally:
            conn.disconnect()
            relay.close()


@pytest.fixture
def session(wired: Wired) -> requests.Session:
    return snworker.requests_session(wired.conn)


@pytest.fixture
def client(wired: Wired) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=wired.url, transport=snworker.httpx_transport(wired.conn)) as c:
        yield c


@pytest.fixture
def elsewhere() -> Iterator[StubServiceNow]:
    with StubServiceNow() as other:
        yield other


# --- the response is the library's own ------------------------------------------------------


def test_a_session_answers_with_real_requests_responses(wired, session):
    resp = session.get(f"{wired.url}{INCIDENTS}", params={"sysparm_limit": 2,
                                                          "sysparm_fields": "number"})
    assert isinstance(resp, requests.Response) and resp.ok and resp.status_code == 200
    assert resp.reason == "OK" and resp.url.startswith(f"{wired.url}{INCIDENTS}?")
    assert "application/json" in resp.headers["content-type"]
    assert len(resp.json()["result"]) == 2
    assert b"".join(resp.iter_content(7)) == resp.content
    assert resp.text == resp.content.decode()
    resp.raise_for_status()
    streamed = session.get(f"{wired.url}{INCIDENTS}", params={"sysparm_limit": 1}, stream=True)
    assert b"".join(streamed.iter_content(5)) == streamed.content
    assert streamed.json()["result"]
    streamed.close()


def test_an_error_status_is_a_response_with_the_instance_s_body(wired, session):
    resp = session.get(f"{wired.url}{INCIDENTS}/{'0' * 32}")
    assert resp.status_code == 404 and resp.reason == "Not Found"
    assert resp.json()["error"]["message"] == "No Record found"
    with pytest.raises(requests.HTTPError) as caught:
        resp.raise_for_status()
    assert caught.value.response is resp
    created = session.post(f"{wired.url}{INCIDENTS}", json={"short_description": "via session"})
    assert created.status_code == 201 and created.json()["result"]["short_description"] \
        == "via session"
    sys_id = created.json()["result"]["sys_id"]
    assert session.patch(f"{wired.url}{INCIDENTS}/{sys_id}", data=b'{"state":"2"}',
                         headers={"Content-Type": "application/json"}).json()["result"][
        "state"] == "2"
    assert session.delete(f"{wired.url}{INCIDENTS}/{sys_id}").status_code == 204


def test_an_httpx_client_answers_with_real_httpx_responses(wired, client):
    resp = client.get(INCIDENTS, params={"sysparm_limit": 2})
    assert isinstance(resp, httpx.Response) and resp.status_code == 200
    assert resp.reason_phrase == "OK" and len(resp.json()["result"]) == 2
    missing = client.get(f"{INCIDENTS}/{'0' * 32}")
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "No Record found"
    with pytest.raises(httpx.HTTPStatusError):
        missing.raise_for_status()
    created = client.post(INCIDENTS, json={"short_description": "via httpx"})
    assert created.status_code == 201
    with client.stream("GET", INCIDENTS, params={"sysparm_limit": 1}) as streamed:
        body = b"".join(streamed.iter_bytes())
    assert b'"result"' in body


# --- only the instance --------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "https://evil.example/api/now/table/incident",
    "http://127.0.0.2:{port}/api/now/table/incident",
    "http://127.0.0.1:{other}/api/now/table/incident",
    "https://127.0.0.1:{port}/api/now/table/incident",
])
def test_another_origin_is_refused_by_name_and_nothing_is_sent(wired, session, client, url):
    port = wired.url.rsplit(":", 1)[1]
    url = url.format(port=port, other=int(port) + 1)
    before = len(wired.sent())
    shown = url.split("/api/")[0]
    with pytest.raises(snworker.InvalidRequestError, match=shown.replace(".", r"\.")):
        session.get(url)
    with pytest.raises(snworker.InvalidRequestError, match=shown.replace(".", r"\.")):
        client.get(url)
    assert len(wired.sent()) == before
    assert session.get(f"{wired.url}{INCIDENTS}", params={"sysparm_limit": 1}).ok


def test_paths_the_worker_refuses_are_refused_through_the_session_too(wired, session, client):
    before = len(wired.sent())
    for path in ("/api/now/table/%2e%2e/%2e%2e/x", "/api/now/%0d%0aX-Injected:%201"):
        with pytest.raises(snworker.InvalidRequestError):
            session.get(f"{wired.url}{path}")
        with pytest.raises(snworker.InvalidRequestError):
            client.get(path)
    with pytest.raises(snworker.InvalidRequestError, match="X-Forwarded-Host"):
        session.get(f"{wired.url}{INCIDENTS}", headers={"X-Forwarded-Host": "evil.example"})
    with pytest.raises(snworker.InvalidRequestError, match="OPTIONS"):
        session.options(f"{wired.url}{INCIDENTS}")
    assert len(wired.sent()) == before


def test_a_redirect_to_another_origin_is_not_followed(wired, session, client, elsewhere):
    target = f"{elsewhere.url}{INCIDENTS}"
    wired.sn.inject(status=302, times=1, path_prefix=INCIDENTS, headers={"Location": target})
    resp = session.get(f"{wired.url}{INCIDENTS}")  # requests follows redirects by default
    assert resp.status_code == 302 and resp.headers["Location"] == target
    assert resp.history == [] and resp.next is None
    wired.sn.inject(status=302, times=1, path_prefix=INCIDENTS, headers={"Location": target})
    with pytest.raises(snworker.InvalidRequestError, match=elsewhere.url.replace(".", r"\.")):
        client.get(INCIDENTS, follow_redirects=True)
    wired.sn.inject(status=302, times=1, path_prefix=INCIDENTS, headers={"Location": target})
    assert client.get(INCIDENTS).status_code == 302
    assert elsewhere.requests == []


def test_a_redirect_on_the_instance_is_followed_through_the_worker(wired, session, client):
    target = f"{wired.url}{INCIDENTS}?sysparm_limit=1"
    wired.sn.inject(status=302, times=1, path_prefix="/api/now/table/problem",
                    headers={"Location": target})
    resp = session.get(f"{wired.url}/api/now/table/problem")
    assert resp.status_code == 200 and [r.status_code for r in resp.history] == [302]
    assert len(resp.json()["result"]) == 1
    wired.sn.inject(status=302, times=1, path_prefix="/api/now/table/problem",
                    headers={"Location": target})
    followed = client.get("/api/now/table/problem", follow_redirects=True)
    assert followed.status_code == 200 and len(followed.history) == 1
    assert all(dict(r["headers"])["authorization"].startswith("Bearer ")
               for r in wired.sent()[-2:])


# --- headers: the library's are left out, the client's own credentials never leave ----------


def test_the_library_s_own_headers_are_left_out(wired, session, client):
    session.get(f"{wired.url}{INCIDENTS}", params={"sysparm_limit": 1},
                headers={"X-Trace": "s-1"})
    client.get(INCIDENTS, params={"sysparm_limit": 1}, headers={"X-Trace": "h-1"})
    sent = wired.sent()[-2:]
    for request, trace in zip(sent, ("s-1", "h-1"), strict=True):
        headers = dict(request["headers"])
        assert headers["x-trace"] == trace
        assert headers["user-agent"] == "snworker"  # not python-requests/python-httpx
        assert headers["connection"] == "keep-alive"
        names = [n for n, _ in request["headers"]]
        assert len(names) == len(set(names))
    raw = wired.worker_raw()
    assert raw and b"python-requests" not in raw and b"python-httpx" not in raw
    session.get(f"{wired.url}{INCIDENTS}", params={"sysparm_limit": 1},
                headers={"User-Agent": "my-sync-tool/2.0"})
    assert dict(wired.sent()[-1]["headers"])["user-agent"] == "my-sync-tool/2.0"


class TinyClient:
    """A requests-based ServiceNow client as published servers write one: Basic auth of its own."""

    def __init__(self, instance: str, session: requests.Session) -> None:
        self.instance = instance
        self.session = session
        token = base64.b64encode(f"admin:{SEED_PASSWORD}".encode()).decode()
        self.session.headers["Authorization"] = f"Basic {token}"

    def incidents(self, limit: int) -> list[dict[str, str]]:
        resp = self.session.get(f"{self.instance}{INCIDENTS}",
                                params={"sysparm_limit": limit}, timeout=10)
        resp.raise_for_status()
        return resp.json()["result"]  # type: ignore[no-any-return]


def test_a_client_s_own_authorization_never_leaves(wired, caplog):
    basic = base64.b64encode(f"admin:{SEED_PASSWORD}".encode())
    # Sent straight to the stub, the client's credential works: it is a real one.
    direct = TinyClient(wired.sn.url, requests.Session())
    assert len(direct.incidents(1)) == 1
    before = len(wired.sent())
    with caplog.at_level(logging.WARNING, logger="snworker"):
        tiny = TinyClient(wired.url, snworker.requests_session(wired.conn))
        assert len(tiny.incidents(2)) == 2 and len(tiny.incidents(1)) == 1
    sent = wired.sent()[before:]
    assert len(sent) == 2
    for request in sent:
        authorization = [v for n, v in request["headers"] if n == "authorization"]
        assert len(authorization) == 1 and authorization[0].startswith("Bearer ")
    assert basic not in wired.raw() and SEED_PASSWORD.encode() not in wired.raw()
    warnings = [r for r in caplog.records if "Authorization" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING  # said once


@pytest.mark.parametrize("how", ["session.auth", "header", "cookie", "url", "proxy"])
def test_every_kind_of_client_credential_is_dropped(wired, session, how, caplog):
    url = f"{wired.url}{INCIDENTS}?sysparm_limit=1"
    kwargs: dict[str, Any] = {}
    if how == "session.auth":
        session.auth = ("admin", APP_SECRET)
    elif how == "header":
        kwargs["headers"] = {"Authorization": f"Bearer {APP_SECRET}"}
    elif how == "cookie":
        session.cookies.set("glide_session_store", APP_SECRET)
    elif how == "url":
        url = url.replace("http://", f"http://admin:{APP_SECRET}@")
    else:
        kwargs["headers"] = {"Proxy-Authorization": f"Basic {APP_SECRET}",
                             "X-UserToken": APP_SECRET}
    before = len(wired.sent())
    with caplog.at_level(logging.WARNING, logger="snworker"):
        assert session.get(url, **kwargs).status_code == 200
    assert APP_SECRET.encode() not in wired.raw()
    [request] = wired.sent()[before:]
    assert dict(request["headers"])["authorization"].startswith("Bearer ")
    assert "cookie" not in dict(request["headers"])
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert APP_SECRET not in caplog.text


def test_httpx_credentials_are_dropped_too(wired, caplog):
    transport = snworker.httpx_transport(wired.conn)
    with caplog.at_level(logging.WARNING, logger="snworker"), \
            httpx.Client(base_url=wired.url, transport=transport, auth=("admin", APP_SECRET),
                         cookies={"JSESSIONID": APP_SECRET}) as client:
        assert client.get(INCIDENTS, params={"sysparm_limit": 1}).status_code == 200
        assert client.get(INCIDENTS, params={"sysparm_limit": 1}).status_code == 200
    assert APP_SECRET.encode() not in wired.raw()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert "Authorization" in caplog.text and "cookie" in caplog.text.lower()


# --- retries are the client's ---------------------------------------------------------------


def test_without_a_retry_policy_a_transient_status_comes_back_after_one_attempt(wired, session):
    before = len(wired.sent())
    wired.sn.inject(status=503, times=1, path_prefix=INCIDENTS, retry_after=0)
    assert session.get(f"{wired.url}{INCIDENTS}").status_code == 503
    assert len(wired.sent()) == before + 1
    wired.sn.inject(status=503, times=1, path_prefix=INCIDENTS, retry_after=0)
    assert httpx.Client(transport=snworker.httpx_transport(wired.conn)).get(
        f"{wired.url}{INCIDENTS}").status_code == 503
    assert len(wired.sent()) == before + 2


def test_a_mounted_retry_policy_is_applied_as_urllib3_would(wired, session):
    session.mount(wired.url, HTTPAdapter(max_retries=Retry(total=2, status_forcelist=[503],
                                                          backoff_factor=0)))
    before = len(wired.sent())
    wired.sn.inject(status=503, times=2, path_prefix=INCIDENTS, retry_after=0)
    assert session.get(f"{wired.url}{INCIDENTS}", params={"sysparm_limit": 1}).ok
    assert len(wired.sent()) == before + 3
    wired.sn.inject(status=503, times=3, path_prefix=INCIDENTS, retry_after=0)
    with pytest.raises(requests.exceptions.RetryError):
        session.get(f"{wired.url}{INCIDENTS}")
    assert len(wired.sent()) == before + 6
    wired.sn.inject(status=None, times=3, path_prefix=INCIDENTS, drop=True)
    with pytest.raises(requests.ConnectionError):
        session.get(f"{wired.url}{INCIDENTS}")
    assert len(wired.sent()) == before + 9  # the first try and two retries, no more


def test_a_network_failure_is_the_library_s_own_error(wired, session, client):
    wired.sn.inject(status=None, times=1, path_prefix=INCIDENTS, drop=True)
    with pytest.raises(requests.ConnectionError) as failed:
        session.get(f"{wired.url}{INCIDENTS}")
    assert isinstance(failed.value.__cause__, snworker.ApiRequestError)
    wired.sn.inject(status=None, times=1, path_prefix=INCIDENTS, drop=True)
    with pytest.raises(httpx.ConnectError):
        client.get(INCIDENTS)
    wired.sn.inject(status=None, times=1, path_prefix=INCIDENTS, delay=1.5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.get(f"{wired.url}{INCIDENTS}", timeout=0.5)
    wired.sn.inject(status=None, times=1, path_prefix=INCIDENTS, delay=1.5)
    with pytest.raises(httpx.ReadTimeout):
        client.get(INCIDENTS, timeout=httpx.Timeout(0.25))
    assert session.get(f"{wired.url}{INCIDENTS}", params={"sysparm_limit": 1}).ok


# --- a connection attached to an agent ------------------------------------------------------


def test_a_session_over_an_agent(tmp_path):
    from snworker import agent as agents

    with StubServiceNow() as sn:
        info, channel = agents.start(sn.url, sn.client_id, redirect_uri=sn.redirect_uri,
                                     open_browser=approve, idle=60,
                                     address=str(tmp_path / "agent.sock"))
        channel.release()
        try:
            conn = snworker.attach(info.address)
            try:
                session = snworker.requests_session(conn)
                resp = session.get(f"{sn.url}{INCIDENTS}", params={"sysparm_limit": 3})
                assert resp.status_code == 200 and len(resp.json()["result"]) == 3
                with pytest.raises(snworker.InvalidRequestError):
                    session.get("https://evil.example/x")
                with httpx.Client(base_url=sn.url, transport=snworker.httpx_transport(conn)) as c:
                    assert c.get(f"{INCIDENTS}/{'0' * 32}").status_code == 404
            finally:
                conn.disconnect()
        finally:
            agents.control(info.address, "stop")


# --- the translation alone (no I/O) ---------------------------------------------------------


def test_the_translation_finds_the_instance_however_its_url_is_spelled(caplog):
    from snworker.adapters import Translator

    translator = Translator("https://dev12345.service-now.com")
    for url in ("https://dev12345.service-now.com/api/x?a=1&b=%20#frag",
                "https://DEV12345.service-now.com:443/api/x?a=1&b=%20",
                "HTTPS://dev12345.Service-Now.com/api/x?a=1&b=%20"):
        assert translator.call("get", url, (), None, None).path == "/api/x?a=1&b=%20", url
    assert translator.call("GET", "https://dev12345.service-now.com", (), None, None).path == "/"
    for url in ("http://dev12345.service-now.com/api/x",
                "https://dev12345.service-now.com:8443/api/x",
                "https://dev12345.service-now.com.evil.example/api/x",
                "https://dev12345.service-now.com@evil.example/api/x",
                "https://evil.example#@dev12345.service-now.com/api/x",
                "https://dev12345.service-now.com:notaport/api/x"):
        with pytest.raises(snworker.InvalidRequestError, match="is not the instance"):
            translator.call("GET", url, (), None, None)
    with caplog.at_level(logging.WARNING, logger="snworker"):
        call = translator.call(
            "POST", "https://u:pw@dev12345.service-now.com/x",
            [("Accept", "a"), ("accept", "b"), ("Content-Length", "3"), ("X-UserToken", "t"),
             ("User-Agent", "mine")], b"abc", 2.0)
    assert call.headers == {"Accept": "a, b", "User-Agent": "mine"}
    assert (call.method, call.body, call.timeout) == ("POST", b"abc", 2.0)
    assert "URL user and password, X-UserToken" in caplog.text and "pw" not in caplog.text
    keywords = call.keywords()
    assert keywords["raise_for_status"] is False and keywords["retry"] is False


def test_response_headers_describe_the_decoded_body():
    from snworker.adapters import deadline, response_headers

    pairs = (("Content-Encoding", "gzip"), ("Content-Length", "20"), ("Link", "<a>"),
             ("link", "<b>"), ("Transfer-Encoding", "chunked"), ("Connection", "close"))
    assert response_headers(pairs, "GET", 55) == [("Link", "<a>"), ("link", "<b>"),
                                                  ("Content-Length", "55")]
    assert response_headers(pairs, "HEAD", 0) == [("Link", "<a>"), ("link", "<b>")]
    assert response_headers((("Content-Length", "5"),), "GET", 5) == [("Content-Length", "5")]
    assert deadline(None, None) is None and deadline(3, None) == 3.0 and deadline(1, 2.5) == 3.5


def test_a_body_in_chunks_reaches_each_library_and_is_released_once(wired):
    from snworker.adapters import Fetched
    from snworker.adapters.for_httpx import httpx_response
    from snworker.adapters.for_requests import WorkerAdapter

    closed: list[str] = []

    def answer(name: str) -> Fetched:
        return Fetched(200, [("Content-Type", "text/plain; charset=utf-8")],
                       chunks=iter([b"first ", b"", b"second ", b"third"]),
                       close=lambda: closed.append(name))

    adapter = WorkerAdapter(wired.conn)
    prepared = requests.Request("GET", f"{wired.url}/x").prepare()
    streamed = adapter._response(answer("requests"), prepared, prepared.url)
    assert b"".join(streamed.iter_content(4)) == b"first second third"
    assert streamed.encoding == "utf-8"
    streamed.close()
    streamed.close()
    read = httpx_response(answer("httpx"), httpx.Request("GET", f"{wired.url}/x"))
    assert read.read() == b"first second third" and read.text == "first second third"
    read.close()
    assert closed == ["requests", "httpx"]
    left = adapter._response(answer("left unread"), prepared, prepared.url)
    assert left.raw.read(3) == b"fir"
    left.close()
    assert closed == ["requests", "httpx", "left unread"]


# --- streaming through the adapters ---------------------------------------------------------

def _attachment(wired: Wired, data: Any) -> str:
    incident = wired.sn.records("incident")[0]["sys_id"]
    resp = wired.conn.execute_api_request(
        "/api/now/attachment/file", "POST", data,
        headers={"Content-Type": "application/octet-stream"},
        params={"table_name": "incident", "table_sys_id": incident, "file_name": "a.bin"})
    return f"/api/now/attachment/{resp.data['sys_id']}/file"


def test_requests_stream_true_and_httpx_streaming_read_in_pieces(wired, session, client):
    import hashlib

    data = bytes(range(256)) * 12_000  # 3 MB: several of the worker's pieces
    path = _attachment(wired, iter([data]))
    with session.get(wired.url + path, stream=True) as resp:
        assert resp.status_code == 200 and resp.raw is not None
        pieces = list(resp.iter_content(chunk_size=100_000))
    assert b"".join(pieces) == data and max(map(len, pieces)) <= 100_000 < len(data) / 2
    with client.stream("GET", path) as resp:
        digest = hashlib.sha256()
        for piece in resp.iter_bytes():
            digest.update(piece)
    assert digest.digest() == hashlib.sha256(data).digest()
    # A small answer is whole at once, streamed or not.
    with session.get(wired.url + INCIDENTS, params={"sysparm_limit": 1}, stream=True) as resp:
        assert resp.json()["result"]
    # Closed after one piece: released, and the connection goes on.
    with session.get(wired.url + path, stream=True) as resp:
        assert len(next(resp.iter_content(chunk_size=1000))) == 1000
    assert len(wired.conn._channel._calls) == 0
    assert session.get(wired.url + INCIDENTS, params={"sysparm_limit": 1}).status_code == 200


def test_files_and_iterators_stream_up_through_the_adapters(wired, session, client, tmp_path):
    data = bytes(range(256)) * 4_000 + b"end"
    path = tmp_path / "up.bin"
    path.write_bytes(data)
    incident = wired.sn.records("incident")[0]["sys_id"]
    url = wired.url + "/api/now/attachment/file"
    query = {"table_name": "incident", "table_sys_id": incident, "file_name": "u.bin"}
    headers = {"Content-Type": "application/octet-stream"}
    with open(path, "rb") as file:
        by_file = session.post(url, params=query, data=file, headers=headers)
    by_iterator = session.post(url, params=query, headers=headers,
                               data=(data[i:i + 70_000] for i in range(0, len(data), 70_000)))
    by_httpx = client.post("/api/now/attachment/file", params=query, headers=headers,
                           content=iter([data[:10], data[10:]]))
    for resp in (by_file, by_iterator, by_httpx):
        assert resp.status_code == 201, resp.text
        assert resp.json()["result"]["size_bytes"] == str(len(data))
    # On the wire: the file with its length, the iterators chunked, framed by the worker.
    uploads = [r for r in wired.sent() if r["target"].startswith("/api/now/attachment/file")]
    framing = [dict(r["headers"]).get("transfer-encoding", "length") for r in uploads[-3:]]
    assert framing == ["length", "chunked", "chunked"]
    assert all(r["body"] == data for r in uploads[-3:])
