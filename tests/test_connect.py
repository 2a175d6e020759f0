"""connect() through a real worker process against the stub on a real socket."""

from __future__ import annotations

import socket
import time

import pytest

import snworker
from snworker.testing import StubServiceNow, approve, deny, ignore
from tests.conftest import (
    BrowserRecorder,
    api_requests,
    browser_command,
    connect,
    port_is_free,
)


def test_connect_and_get_records_through_the_worker(stub):
    with connect(stub) as conn:
        assert conn.instance_url == stub.url
        assert conn.client_id == stub.client_id
        resp = conn.execute_api_request(
            "/api/now/table/incident", "GET",
            params={"sysparm_limit": 5, "sysparm_query": "ORDERBYnumber"},
        )
        assert resp.status == 200
        expected = sorted(stub.records("incident"), key=lambda r: r["number"])[:5]
        assert [r["sys_id"] for r in resp.data] == [r["sys_id"] for r in expected]
        assert [r["short_description"] for r in resp.data] == [
            r["short_description"] for r in expected]
        assert int(resp.headers["x-total-count"]) == len(stub.records("incident"))


def test_the_consent_url_carries_pkce_and_state(stub):
    browser = BrowserRecorder()
    with connect(stub, open_browser=browser):
        query = browser.query
    assert query["response_type"] == "code"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43 and "=" not in query["code_challenge"]
    assert len(query["state"]) >= 32
    assert query["client_id"] == stub.client_id


def test_each_attempt_has_a_fresh_verifier_and_state(stub):
    first, second = BrowserRecorder(), BrowserRecorder()
    with connect(stub, open_browser=first), connect(stub, open_browser=second):
        pass
    assert first.query["state"] != second.query["state"]
    assert first.query["code_challenge"] != second.query["code_challenge"]


def test_current_user_is_read_at_connect(stub):
    with connect(stub) as conn:
        user = conn.current_user
    assert user is not None
    assert user["user_name"] == "admin"
    users = {u["sys_id"]: u for u in stub.records("sys_user")}
    assert users[user["sys_id"]]["name"] == user["name"]


def test_deny_gives_authorization_error_and_frees_the_port(stub):
    browser = BrowserRecorder(deny)
    with pytest.raises(snworker.AuthorizationError) as caught:
        connect(stub, open_browser=browser)
    assert caught.value.reason == "denied"
    assert port_is_free(browser.listener_port)
    assert stub.grant_counts["authorization_code"] == 0


def test_no_answer_times_out_and_frees_the_port(stub):
    browser = BrowserRecorder(ignore)
    started = time.monotonic()
    with pytest.raises(snworker.AuthorizationError) as caught:
        connect(stub, open_browser=browser, authorization_timeout=1.0)
    assert caught.value.reason == "timeout"
    assert time.monotonic() - started < 6
    assert "redirect" in str(caught.value)  # names the likely cause
    assert port_is_free(browser.listener_port)


def test_a_fixed_redirect_port_is_used_and_freed(stub):
    import socket

    from tests.conftest import port_is_free as free

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"http://127.0.0.1:{port}/callback"
    browser = BrowserRecorder()
    with snworker.connect(stub.url, stub.client_id, redirect_uri=uri, open_browser=browser,
                          authorization_timeout=10):
        assert browser.listener_port == port
    assert free(port)


def test_a_busy_redirect_port_is_a_clear_error(stub):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(snworker.AuthorizationError, match="cannot listen") as caught:
            snworker.connect(stub.url, stub.client_id,
                             redirect_uri=f"http://127.0.0.1:{port}/callback",
                             authorization_timeout=5)
        assert caught.value.reason == "redirect_busy"


def test_the_first_free_redirect_port_of_a_list_is_used(stub):
    import socket

    with socket.socket() as busy, socket.socket() as free:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        free.bind(("127.0.0.1", 0))
        taken, spare = busy.getsockname()[1], free.getsockname()[1]
        free.close()
        recorder = BrowserRecorder()
        uris = [f"http://127.0.0.1:{taken}/callback", f"http://127.0.0.1:{spare}/callback"]
        with connect(stub, redirect_uri=uris, open_browser=recorder):
            assert recorder.listener_port == spare
        with pytest.raises(snworker.AuthorizationError) as caught:
            connect(stub, redirect_uri=uris[:1] * 2)
        assert caught.value.reason == "redirect_busy"
        assert str(caught.value).count(str(taken)) == 2  # it says what it tried


def test_two_connections_on_one_machine_share_a_list_of_redirect_ports(stub):
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    uris = [f"http://127.0.0.1:{p}/callback" for p in ports]
    held = []

    def slow(url: str) -> bool:  # keep the first listener open while the second starts
        held.append(url)
        time.sleep(0.5)
        return approve(url)

    import threading

    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(
        connect(stub, redirect_uri=uris, open_browser=slow))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(results) == 2 and all(isinstance(r, snworker.ServiceNowConnection) for r in results)
    for conn in results:
        conn.disconnect()  # type: ignore[attr-defined]


def test_strict_redirect_instance_times_out_with_the_cause_named():
    # A real instance sends the browser to its first registered URL when redirect_uri does not
    # match; the listener never hears back.
    with StubServiceNow(strict_redirect=True,
                        redirect_uri="http://127.0.0.1:9/registered") as sn:
        browser = BrowserRecorder(lambda url: _approve_quietly(url))
        with pytest.raises(snworker.AuthorizationError) as caught:
            snworker.connect(sn.url, sn.client_id, redirect_uri="http://127.0.0.1:0/callback",
                             open_browser=browser, authorization_timeout=1.5)
    assert caught.value.reason == "timeout"
    assert "first registered redirect URL" in str(caught.value)


def _approve_quietly(url: str) -> bool:
    from snworker.testing import approve

    try:
        approve(url)
    except Exception:  # the fallback target (port 9) is not listening: that is the point
        pass
    return True


def test_a_stray_callback_is_ignored_and_the_real_one_wins(stub):
    import requests

    from snworker.testing import approve

    answers: list[int] = []

    def browser(url: str) -> bool:
        recorder.urls.append(url)
        redirect = recorder.query["redirect_uri"]
        base = redirect.rsplit("/", 1)[0]
        answers.append(requests.get(base + "/other?code=x&state=y", timeout=5).status_code)
        answers.append(requests.get(redirect + "?code=forged&state=wrong", timeout=5).status_code)
        return approve(url)

    recorder = BrowserRecorder()
    with connect(stub, open_browser=browser) as conn:
        assert conn.execute_api_request("/api/now/table/incident",
                                        params={"sysparm_limit": 1}).status == 200
    assert answers == [404, 400]


def test_wrong_state_only_ends_as_state_mismatch(stub):
    import requests

    def browser(url: str) -> bool:
        recorder.urls.append(url)
        requests.get(recorder.query["redirect_uri"] + "?code=forged&state=wrong", timeout=5)
        return True

    recorder = BrowserRecorder()
    with pytest.raises(snworker.AuthorizationError) as caught:
        connect(stub, open_browser=browser, authorization_timeout=1.0)
    assert caught.value.reason == "state_mismatch"
    assert port_is_free(recorder.listener_port)


def test_a_refused_code_exchange_is_an_authorization_error(stub):
    # The instance hands out a code the token endpoint then refuses (a revoked grant between
    # the two steps): a clear error, not a crash.
    from snworker.testing import approve

    def browser(url: str) -> bool:
        stub.inject(status=401, times=1, path_prefix="/oauth_token.do")
        return approve(url)

    with pytest.raises(snworker.AuthorizationError) as caught:
        connect(stub, open_browser=browser)
    assert caught.value.reason == "exchange_failed"


def test_disconnect_twice_is_fine_and_later_calls_raise(stub):
    conn = connect(stub)
    conn.disconnect()
    conn.disconnect()
    assert conn.closed
    with pytest.raises(snworker.ConnectionClosedError):
        conn.execute_api_request("/api/now/table/incident")
    assert stub.revocation_count == 1


def test_the_context_manager_disconnects(stub):
    with connect(stub) as conn:
        pid = conn.worker_pid
    assert conn.closed
    assert pid is not None
    from tests.test_crash import process_gone

    assert process_gone(pid, 2.0)


def test_with_no_browser_the_url_is_printed(stub, capfd):
    with pytest.raises(snworker.AuthorizationError):
        connect(stub, open_browser=lambda url: False, authorization_timeout=0.5)
    err = capfd.readouterr().err
    assert "open this URL" in err
    assert f"{stub.url}/oauth_auth.do?" in err


def test_a_browser_that_raises_falls_back_to_printing(stub, capfd):
    def broken(url: str) -> bool:
        raise RuntimeError("no display")

    with pytest.raises(snworker.AuthorizationError):
        connect(stub, open_browser=broken, authorization_timeout=0.5)
    assert "open this URL" in capfd.readouterr().err


def test_the_browser_variable_command_works(stub, monkeypatch):
    import webbrowser

    monkeypatch.setenv("BROWSER", browser_command())
    monkeypatch.setattr(webbrowser, "_tryorder", None)
    with snworker.connect(stub.url, stub.client_id, redirect_uri=stub.redirect_uri,
                          authorization_timeout=20) as conn:
        assert conn.current_user is not None
    assert api_requests(stub)


def test_a_connection_dropped_without_disconnect_stops_its_worker(stub):
    import gc

    from tests.test_crash import process_gone

    conn = connect(stub)
    pid = conn.worker_pid
    del conn
    gc.collect()
    assert process_gone(pid, 5.0)
    assert stub.revocation_count == 1


# --- fail fast: a setup mistake ends connect() at once, with the cause named ---------------


def test_a_wrong_client_id_fails_fast_without_opening_the_browser(stub):
    recorder = BrowserRecorder()
    started = time.monotonic()
    with pytest.raises(snworker.AuthorizationError) as caught:
        snworker.connect(stub.url, "no-such-client", redirect_uri=stub.redirect_uri,
                         open_browser=recorder, authorization_timeout=300)
    assert time.monotonic() - started < 5
    assert caught.value.reason == "invalid_client"
    assert "no-such-client" in str(caught.value)
    assert recorder.urls == []


def test_an_unreachable_instance_fails_fast_without_opening_the_browser():
    recorder = BrowserRecorder()
    started = time.monotonic()
    with pytest.raises(snworker.AuthorizationError) as caught:
        snworker.connect("http://127.0.0.1:1", "cid", redirect_uri="http://127.0.0.1:0/cb",
                         open_browser=recorder, authorization_timeout=300)
    assert time.monotonic() - started < 5
    assert caught.value.reason == "unreachable"
    assert "does not answer" in str(caught.value)
    assert recorder.urls == []


def test_an_unregistered_redirect_path_fails_fast(stub):
    recorder = BrowserRecorder()
    with pytest.raises(snworker.AuthorizationError) as caught:
        snworker.connect(stub.url, stub.client_id, redirect_uri="http://127.0.0.1:0/elsewhere",
                         open_browser=recorder, authorization_timeout=300)
    assert caught.value.reason == "redirect_mismatch"
    assert recorder.urls == []


def test_a_user_who_may_not_read_sys_user_connects_with_no_current_user(stub, caplog):
    import logging

    snworker.enable_logging("INFO")
    caplog.set_level(logging.INFO, logger="snworker")
    try:
        stub.inject(status=403, times=1, path_prefix="/api/now/table/sys_user")
        with connect(stub) as conn:
            assert conn.current_user is None
            assert conn.execute_api_request("/api/now/table/incident",
                                            params={"sysparm_limit": 1}).status == 200
        lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert any("current_user is None" in line and "403" in line and "sys_user" in line
                   for line in lines), lines
    finally:
        root = logging.getLogger("snworker")
        root.setLevel(logging.NOTSET)
        for handler in [h for h in root.handlers if getattr(h, "_snworker", False)]:
            root.removeHandler(handler)


def test_https_to_a_server_that_does_not_speak_tls_names_tls(stub):
    # The stub answers a TLS handshake at once, as nginx does: the cause is named, no deadline.
    with pytest.raises(snworker.AuthorizationError) as caught:
        snworker.connect(stub.url.replace("http://", "https://"), stub.client_id,
                         redirect_uri=stub.redirect_uri, open_browser=BrowserRecorder(),
                         authorization_timeout=300)
    assert caught.value.reason == "unreachable"
    assert "TLS failed: the server does not speak TLS" in str(caught.value)


def test_https_to_a_server_that_never_answers_the_handshake_says_so():
    # A server that waits for a request line (as http.server does) never answers a
    # ClientHello: the probe's deadline ends it, and the message says what did not happen.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with pytest.raises(snworker.AuthorizationError) as caught:
            snworker.connect(f"https://127.0.0.1:{silent.getsockname()[1]}", "cid",
                             redirect_uri="http://127.0.0.1:0/cb", open_browser=BrowserRecorder(),
                             authorization_timeout=1)
    assert caught.value.reason == "unreachable"
    assert "did not complete a TLS handshake" in str(caught.value)
    assert "the request was sent" not in str(caught.value)
