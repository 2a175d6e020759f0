"""DESIGN.md's security rules, one or more tests each; every test fails if its rule breaks."""

from __future__ import annotations

import base64
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
import requests

import snworker
from snworker import messages
from snworker.channel import Channel
from snworker.messages import Connect, Error, Request
from snworker.pipes.conn import ConnPipe
from snworker.policy import RetryPolicy
from snworker.testing import StubServiceNow, approve, deny
from tests.conftest import BrowserRecorder, browser_command, connect, port_is_free
from tests.processes import linux_only, process_gone

if sys.platform == "win32":
    FRAMINGS: tuple[Any, ...] = (ConnPipe,)
else:
    from snworker.pipes.fd import FdPipe

    FRAMINGS = (FdPipe, ConnPipe)

INCIDENTS = "/api/now/table/incident"


def access_and_refresh_tokens(sn: StubServiceNow) -> tuple[list[str], list[str]]:
    """Split the stub's issued secrets into working access tokens and refresh tokens."""
    access, refresh = [], []
    for secret in sn.issued_secrets():
        r = requests.get(f"{sn.url}{INCIDENTS}", params={"sysparm_limit": 1},
                         headers={"Authorization": f"Bearer {secret}"}, timeout=5)
        if r.status_code == 200:
            access.append(secret)
        elif len(secret) >= 20 and not _is_code_or_verifier(sn, secret):
            refresh.append(secret)
    return access, refresh


def _is_code_or_verifier(sn: StubServiceNow, secret: str) -> bool:
    r = requests.post(f"{sn.url}/oauth_token.do", data={
        "grant_type": "refresh_token", "refresh_token": secret, "client_id": sn.client_id},
        timeout=5)
    return r.status_code != 200


# --- rule 1: no secret reaches the parent: messages, exception texts, log lines -----------


def test_no_secret_in_any_message_exception_or_log_line(stub, monkeypatch, caplog):
    received: list[Any] = []
    for framing in FRAMINGS:  # whichever this run uses (SNWORKER_IO)
        def spy(pipe: Any, real: Any = framing.receive) -> Any:
            message = real(pipe)
            received.append(message)
            return message

        monkeypatch.setattr(framing, "receive", spy)
    snworker.enable_logging("DEBUG")
    caplog.set_level(logging.DEBUG, logger="snworker")
    texts: list[str] = []
    try:
        with connect(stub) as conn:
            conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 3})
            conn.execute_api_request(INCIDENTS, "POST", {"short_description": "x"})
            stub.expire_access_tokens()
            conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1})  # 401, refresh
            for bad in ("//evil.example/x", f"{INCIDENTS}/nope"):
                try:
                    conn.execute_api_request(bad)
                except snworker.ServiceNowError as exc:
                    texts.append(repr(exc) + str(exc))
            stub.revoke_refresh_tokens()
            with pytest.raises(snworker.AuthTokenExpiredError) as caught:
                conn.execute_api_request(INCIDENTS)
            texts.append(str(caught.value))
        with pytest.raises(snworker.AuthorizationError) as denied:
            connect(stub, open_browser=deny)
        texts.append(str(denied.value))
    finally:
        root = logging.getLogger("snworker")
        root.setLevel(logging.NOTSET)
        for handler in [h for h in root.handlers if getattr(h, "_snworker", False)]:
            root.removeHandler(handler)
    issued = stub.issued_secrets()
    assert len(issued) >= 5  # code, verifier, refresh token and two access tokens
    assert received, "the spy saw no message"
    haystack = [repr(m) for m in received]
    haystack += [str(getattr(m, f, "")) for m in received for f in m.__slots__]
    haystack += texts + [r.getMessage() for r in caplog.records]
    assert any("worker" in r.name for r in caplog.records), "no worker log line arrived"
    for secret in issued:
        assert not any(secret in text for text in haystack), "a secret reached the parent"


APP = textwrap.dedent("""
    import sys
    import snworker
    from snworker.testing import RemoteStub
    url, client_id, redirect = sys.argv[1:4]
    canary = sys.stdin.readline().strip()   # proves the scan can find what is there
    conn = snworker.connect(url, client_id, redirect_uri=redirect, authorization_timeout=30)
    conn.execute_api_request("/api/now/table/incident", params={"sysparm_limit": 5})
    conn.execute_api_request("/api/now/table/incident", "POST", {"short_description": "scan"})
    RemoteStub(url).expire_access_tokens()
    conn.execute_api_request("/api/now/table/incident", params={"sysparm_limit": 1})
    print(conn.worker_pid, flush=True)
    sys.stdin.readline()
    conn.disconnect()
""")


def scan_memory(pid: int, needles: list[bytes]) -> set[bytes]:
    """The needles found anywhere in the readable memory of process `pid`."""
    found: set[bytes] = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            found.update(n for n in needles if n in chunk)
    return found


@linux_only
@pytest.mark.timeout(90)
def test_the_parent_process_memory_never_holds_a_secret():
    # The stub runs in its own process and the consent page is answered by a browser process
    # (the BROWSER variable), so the only copies of the secrets are at the stub and in the
    # worker. The test process scans the application's memory after a whole session.
    canary = "canary-" + secrets.token_hex(16)
    stub = StubServiceNow.start_process()
    try:
        env = dict(os.environ, BROWSER=browser_command())
        app = subprocess.Popen(
            [sys.executable, "-c", APP, stub.url, stub.client_id, stub.redirect_uri],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        try:
            app.stdin.write(canary + "\n")
            app.stdin.flush()
            worker_pid = int(app.stdout.readline())
            issued = stub.issued_secrets()
            assert len(issued) >= 5
            needles = [s.encode() for s in issued]
            found_in_app = scan_memory(app.pid, [*needles, canary.encode()])
            found_in_worker = scan_memory(worker_pid, needles)
            app.stdin.write("\n")
            app.stdin.flush()
            assert app.wait(20) == 0
        finally:
            app.kill()
    finally:
        stub.close()
    assert canary.encode() in found_in_app, "the scan cannot see the application's memory"
    assert found_in_worker, "the scan cannot see the tokens where they are"
    assert found_in_app == {canary.encode()}, "a secret is in the application's memory"


# --- rule 2: requests go to the instance origin only -------------------------------------


def test_the_worker_itself_refuses_requests_that_leave_the_origin(conn, stub):
    # A compromised parent can skip every parent-side check and write raw messages.
    channel: Channel = conn._channel
    before = len(stub.requests)
    for path in ("https://evil.example/x", "//evil.example/x", "/a\r\nb", "/x/../../y", "@evil"):
        answer = channel.call(Request(channel.next_id(), "GET", path, (), (), False, 5.0), 5.0)
        assert isinstance(answer, Error) and answer.kind == "invalid_request", path
    for headers in ((("Authorization", "Bearer x"),), (("Host", "evil.example"),)):
        answer = channel.call(Request(channel.next_id(), "GET", INCIDENTS, (), headers, False,
                                      5.0), 5.0)
        assert isinstance(answer, Error) and answer.kind == "invalid_request"
    assert len(stub.requests) == before
    assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200


def test_a_second_connect_on_a_worker_is_refused(conn):
    channel: Channel = conn._channel
    answer = channel.call(Connect(channel.next_id(), "https://evil.example", "c",
                                  ("http://127.0.0.1:0/cb",), (), 5.0, 5.0, RetryPolicy().to_wire(),
                                  30), 5.0)
    assert isinstance(answer, Error) and answer.kind == "invalid_request"


# --- rule 3: redirects are not followed with the token attached ---------------------------


def test_a_redirect_comes_back_as_a_result_and_is_not_followed(conn, stub):
    with StubServiceNow() as elsewhere:
        target = f"{elsewhere.url}{INCIDENTS}"
        stub.inject(status=302, times=1, path_prefix=INCIDENTS, headers={"Location": target})
        resp = conn.execute_api_request(INCIDENTS)
        assert resp.status == 302
        assert resp.headers["Location"] == target
        assert elsewhere.requests == []


# --- rule 4: a reflected token is redacted before it leaves the worker --------------------


def test_a_response_that_reflects_a_token_is_redacted(conn, stub):
    access, refresh = access_and_refresh_tokens(stub)
    assert access and refresh
    record = stub.insert("incident", {"short_description": " ".join(access + refresh)})
    stub.inject(status=None, times=1, path_prefix=INCIDENTS,
                headers={"X-Echo": access[0], "Link": f"<x?t={refresh[0]}>"})
    resp = conn.execute_api_request(f"{INCIDENTS}/{record['sys_id']}")
    text = resp.content.decode() + repr(dict(resp.headers))
    assert "[redacted by snworker]" in resp.data["short_description"]
    assert "[redacted by snworker]" in resp.headers["X-Echo"]
    for token in access + refresh:
        assert token not in text


def test_truncated_and_encoded_reflections_are_redacted(conn, stub):
    access, refresh = access_and_refresh_tokens(stub)
    token = access[0]
    header = f"Bearer {token}".encode()
    echoes = {
        "cut": token[:-1],
        "cut_front": token[2:],
        "middle": token[10:40],
        "b64": base64.b64encode(token.encode()).decode(),
        "b64_header": base64.b64encode(header).decode(),
        "b64url_header": base64.urlsafe_b64encode(b"Authorization: " + header).decode(),
        "refresh": refresh[0],
    }
    for name, echo in echoes.items():
        record = stub.insert("incident", {"short_description": echo})
        resp = conn.execute_api_request(f"{INCIDENTS}/{record['sys_id']}")
        assert "[redacted by snworker]" in resp.data["short_description"], name
        assert echo.encode() not in resp.content, name


def test_a_response_in_flight_when_the_grant_is_refused_is_redacted_and_revoked(conn, stub):
    access, refresh = access_and_refresh_tokens(stub)
    record = stub.insert("incident", {"short_description": f"echo {access[0]}"})
    path = f"{INCIDENTS}/{record['sys_id']}"
    stub.inject(status=None, delay=1.5, times=1, path_prefix=path)
    answer: dict[str, Any] = {}
    in_flight = threading.Thread(
        target=lambda: answer.update(resp=conn.execute_api_request(path)), daemon=True)
    in_flight.start()
    time.sleep(0.3)  # the request now waits at the stub
    # Another call meets a 401, and the instance refuses the refresh: the worker wipes its
    # grant while the first answer is still on its way. The access token itself stays valid.
    stub.inject(status=401, times=1, path_prefix="/api/now/table/sys_user")
    stub.inject(status=401, times=1, path_prefix="/oauth_token.do")
    with pytest.raises(snworker.AuthTokenExpiredError):
        conn.execute_api_request("/api/now/table/sys_user", params={"sysparm_limit": 1})
    in_flight.join(10)
    resp = answer["resp"]
    assert access[0].encode() not in resp.content
    assert "[redacted by snworker]" in resp.data["short_description"]
    assert stub.revocation_count == 0
    conn.disconnect()
    # The last refresh token the worker held is revoked, though its grant had been wiped.
    assert stub.revocation_count == 1
    assert not _refresh_works(stub, refresh[0])


def _refresh_works(sn: StubServiceNow, refresh_token: str) -> bool:
    r = requests.post(f"{sn.url}/oauth_token.do", data={
        "grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": sn.client_id},
        timeout=5)
    return r.status_code == 200


def test_session_cookies_do_not_reach_the_parent(conn, stub):
    stub.inject(status=None, times=1, path_prefix=INCIDENTS,
                headers={"Set-Cookie": "JSESSIONID=abc; Path=/"})
    resp = conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1})
    assert "set-cookie" not in {k.lower() for k in resp.headers}


# --- rule 5: the worker cannot be attached to or dumped ------------------------------------

HOLD = textwrap.dedent("""
    import sys, snworker
    from snworker.testing import approve
    conn = snworker.connect(sys.argv[1], sys.argv[2], redirect_uri=sys.argv[3],
                            open_browser=approve, authorization_timeout=20)
    print(conn.worker_pid, flush=True)
    sys.stdin.readline()
    conn.disconnect()
""")


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("setpriv") is None,
                    reason="needs Linux and setpriv")
def test_a_same_user_process_cannot_read_the_worker_memory(stub):
    # Both sides run as the same user without CAP_SYS_PTRACE, as an ordinary user would. The
    # same check succeeds on the (dumpable) application process, so it can fail.
    drop = ["setpriv", "--bounding-set", "-sys_ptrace", "--inh-caps", "-sys_ptrace", "--"]
    app = subprocess.Popen([*drop, sys.executable, "-c", HOLD, stub.url, stub.client_id,
                            stub.redirect_uri], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           text=True)
    try:
        worker_pid = int(app.stdout.readline())
        probe = "import sys; open(f'/proc/{sys.argv[1]}/mem', 'rb')"
        on_app = subprocess.run([*drop, sys.executable, "-c", probe, str(app.pid)],
                                capture_output=True, text=True, timeout=10)
        on_worker = subprocess.run([*drop, sys.executable, "-c", probe, str(worker_pid)],
                                   capture_output=True, text=True, timeout=10)
        with open(f"/proc/{worker_pid}/limits") as limits:
            core = next(line for line in limits if line.startswith("Max core file size"))
        app.stdin.write("\n")
        app.stdin.flush()
        app.wait(15)
    finally:
        app.kill()
    assert on_app.returncode == 0, on_app.stderr
    assert on_worker.returncode != 0 and "Permission denied" in on_worker.stderr
    assert core.split()[4:6] == ["0", "0"]


# --- rule 6: the loopback listener --------------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.rsplit(":", 1)
                if int(hex_port, 16) == port and state == "0A":
                    found.add(address)
    return found


@linux_only
def test_the_listener_binds_loopback_only_and_accepts_one_callback(stub):
    seen: dict[str, Any] = {}

    def browser(url: str) -> bool:
        recorder.urls.append(url)
        seen["addresses"] = listening_addresses(recorder.listener_port)
        return approve(url)

    recorder = BrowserRecorder()
    with connect(stub, open_browser=browser):
        assert seen["addresses"] == {"0100007F"}  # 127.0.0.1, and nothing else
        port = recorder.listener_port
        assert port_is_free(port)  # one callback, then the port is released
        with pytest.raises(requests.ConnectionError):
            requests.get(recorder.query["redirect_uri"] + "?code=x&state=y", timeout=2)


def test_a_localhost_redirect_uri_is_refused_so_no_other_socket_can_take_the_code(
        monkeypatch):
    # RFC 8252 8.3. The listener binds 127.0.0.1; another user binds [::1] on the same port, and
    # a browser that resolves localhost to ::1 delivers the code to it. Refused, with a hint.
    squatter = socket.socket(socket.AF_INET6)
    squatter.bind(("::1", 0))
    squatter.listen(1)
    squatter.settimeout(8)
    port = squatter.getsockname()[1]
    redirect = f"http://localhost:{port}/callback"
    received: list[bytes] = []

    def squat() -> None:
        try:
            taken, _ = squatter.accept()
        except OSError:
            return
        with taken:
            taken.settimeout(5)
            received.append(taken.recv(4096))

    real = socket.getaddrinfo

    def browser_resolver(host: Any, *args: Any, **kwargs: Any) -> Any:
        # This process's lookups stand for the browser's, which prefers ::1 for localhost.
        return real("::1" if host == "localhost" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", browser_resolver)
    thief = threading.Thread(target=squat, daemon=True)
    thief.start()
    try:
        with StubServiceNow(redirect_uri=redirect) as sn:
            with pytest.raises(snworker.InvalidRequestError,
                               match=r"not localhost.*http://127\.0\.0\.1:" + str(port)):
                snworker.connect(sn.url, sn.client_id, redirect_uri=redirect,
                                 open_browser=approve, authorization_timeout=5)
            assert sn.requests == []  # refused before any consent page was asked for
    finally:
        try:  # wakes the thief's accept(), which close() alone does not
            squatter.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        squatter.close()
        thief.join(10)
    assert not thief.is_alive()
    assert not any(b"code=" in data for data in received)


def test_the_worker_itself_refuses_a_localhost_redirect_uri():
    channel = Channel.start(lambda url: None)
    try:
        answer = channel.call(Connect(channel.next_id(), "https://dev12345.service-now.com", "c",
                                      ("http://localhost:8765/callback",), (), 5.0, 5.0,
                                      RetryPolicy().to_wire(), 30), 10.0)
    finally:
        channel.send(messages.Disconnect(channel.next_id(), 0.1))
        channel.close(2.0)
    assert isinstance(answer, Error) and answer.kind == "invalid_request"
    assert "127.0.0.1" in answer.message


@linux_only
def test_the_listener_port_is_freed_when_the_worker_crashes_during_consent(stub):
    worker: dict[str, int] = {}

    def browser(url: str) -> bool:
        recorder.urls.append(url)
        pid = _child_listening_on(recorder.listener_port)
        worker["pid"] = pid
        os.kill(pid, 9)
        return True

    recorder = BrowserRecorder()
    started = time.monotonic()
    with pytest.raises(snworker.WorkerCrashedError):
        connect(stub, open_browser=browser, authorization_timeout=30)
    assert time.monotonic() - started < 5
    assert process_gone(worker["pid"], 2)
    assert port_is_free(recorder.listener_port)


def _child_listening_on(port: int) -> int:
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f:
            parts = line.split()
            if parts[1].endswith(f":{port:04X}") and parts[3] == "0A":
                inode = parts[9]
    assert inode is not None
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
        except OSError:
            continue
    raise AssertionError("no process listens on the port")


CANCEL = textwrap.dedent("""
    import sys, snworker
    from snworker.testing import ignore
    def browser(url):
        print(url, flush=True)
        return True
    try:
        snworker.connect(sys.argv[1], sys.argv[2], redirect_uri=sys.argv[3],
                         open_browser=browser, authorization_timeout=60)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
""")


@linux_only  # SIGINT, and /proc to find the listener
def test_interrupting_connect_frees_the_port_and_stops_the_worker(stub):
    import signal
    from urllib.parse import parse_qs, urlsplit

    app = subprocess.Popen([sys.executable, "-c", CANCEL, stub.url, stub.client_id,
                            stub.redirect_uri], stdout=subprocess.PIPE, text=True)
    try:
        url = app.stdout.readline()
        redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]
        port = urlsplit(redirect).port
        worker_pid = _child_listening_on(port)
        app.send_signal(signal.SIGINT)
        assert app.stdout.readline().strip() == "interrupted"
        assert app.wait(10) == 0
    finally:
        app.kill()
    assert process_gone(worker_pid, 2)
    assert port_is_free(port)


# --- rule 8: https only, except loopback ---------------------------------------------------


def test_the_worker_refuses_a_plain_http_instance(stub):
    channel = Channel.start(lambda url: None)
    try:
        answer = channel.call(Connect(channel.next_id(), "http://example.com", "c",
                                      ("http://127.0.0.1:0/cb",), (), 5.0, 5.0,
                                      RetryPolicy().to_wire(), 30), 10.0)
    finally:
        channel.send(messages.Disconnect(channel.next_id(), 0.1))
        channel.close(2.0)
    assert isinstance(answer, Error) and answer.kind == "invalid_request"


def test_the_public_api_refuses_a_plain_http_instance():
    with pytest.raises(snworker.InvalidRequestError, match="https"):
        snworker.connect("http://dev12345.service-now.com", "cid")


def test_a_streamed_answer_that_reflects_a_token_across_a_piece_border_is_redacted(conn, stub):
    from snworker.worker.main import STREAM_PIECE

    access, refresh = access_and_refresh_tokens(stub)
    token = access[0].encode()
    b64 = base64.b64encode(b"Bearer " + token)
    incident = stub.records("incident")[0]
    for echo in (token, b64, refresh[0].encode()):
        for before_border in (1, len(echo) // 2, len(echo) - 1):
            body = b"a" * (STREAM_PIECE - before_border) + echo + b"b" * 1000
            record = conn.execute_api_request(
                "/api/now/attachment/file", "POST", iter([body]),
                headers={"Content-Type": "text/plain"},
                params={"table_name": "incident", "table_sys_id": incident["sys_id"],
                        "file_name": "echo.txt"}).data
            with conn.stream_api_request(
                    f"/api/now/attachment/{record['sys_id']}/file") as resp:
                pieces = list(resp.iter_bytes())
            received = b"".join(pieces)
            assert len(pieces) >= 2  # the border was there
            assert echo not in received and b"[redacted by snworker]" in received
            assert received.startswith(b"a" * 1000) and received.endswith(b"b" * 1000)
