"""The pytest plugin, the lazy package, and the stub's commands (browser stand-in, foreground)."""

from __future__ import annotations

import inspect
import json
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

import pytest
import requests

import snworker
import snworker.testing
from snworker.testing import StubServiceNow, plugin
from snworker.testing.oauth import s256
from tests.conftest import port_is_free

READY_LINE = re.compile(
    r"snworker stub: url=(http://127\.0\.0\.1:\d+) client_id=(\S+) redirect_uri=(\S+)\n"
)


def run_python(code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def test_plugin_and_package_import_without_the_server_libraries() -> None:
    result = run_python("""
        import sys
        import snworker.testing.plugin
        import snworker.testing
        loaded = [name for name in ("werkzeug", "waitress") if name in sys.modules]
        print(loaded)
        from snworker.testing import approve, RemoteStub
        loaded = [name for name in ("werkzeug", "waitress") if name in sys.modules]
        print(loaded)
        from snworker.testing import StubServiceNow
        print(sorted(name for name in ("werkzeug", "waitress") if name in sys.modules))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "[]", "['waitress', 'werkzeug']"]


def test_public_names() -> None:
    assert snworker.testing.__all__ == sorted(snworker.testing.__all__)
    for name in snworker.testing.__all__:
        assert getattr(snworker.testing, name) is not None
    with pytest.raises(AttributeError):
        _ = snworker.testing.NoSuchThing


def test_servicenow_stub_fixture_gives_a_started_stub(servicenow_stub: StubServiceNow) -> None:
    answer = requests.get(f"{servicenow_stub.url}/api/now/table/incident", timeout=5)
    assert answer.status_code == 401
    assert servicenow_stub.client_id == "snworker-test"
    assert servicenow_stub.redirect_uri == "http://127.0.0.1:0/callback"


# A user's test suite, run once with the plugin; each test below checks what its part showed.
USER_SUITE = {
    "shared/test_shared.py": """
        import json
        import pathlib

        import pytest
        import requests

        seen = {}

        def test_one(servicenow_stub):
            seen["one"] = servicenow_stub.url
            servicenow_stub.insert("incident", {"short_description": "only here"})
            servicenow_stub.inject(status=503, times=5)
            servicenow_stub.define_table("u_widget", {"u_name": "string"})

        def test_two(servicenow_stub):
            seen["two"] = servicenow_stub.url
            assert len(servicenow_stub.records("incident")) == 30
            assert servicenow_stub.pending_faults == [] and servicenow_stub.requests == []
            assert servicenow_stub.records("u_widget") == []

        @pytest.mark.servicenow(access_lifespan=60, consent="deny", strict_redirect=True,
                                seed=False)
        def test_own(servicenow_stub):
            seen["own"] = servicenow_stub.url
            assert servicenow_stub.config.access_lifespan == 60
            assert servicenow_stub.records("incident") == []

        @pytest.mark.servicenow(seed=True)
        def test_default_settings_share(servicenow_stub):
            seen["defaults"] = servicenow_stub.url

        def test_last():
            pathlib.Path("seen.json").write_text(json.dumps(seen))
            assert seen["one"] == seen["two"] == seen["defaults"] != seen["own"]
            with pytest.raises(requests.ConnectionError):
                requests.get(seen["own"], timeout=2)
    """,
    "override/conftest.py": """
        import pytest

        @pytest.fixture
        def servicenow_settings():
            return {"seed": False, "auth": ("code", "basic")}
    """,
    "override/test_override.py": """
        import requests

        def test_empty_instance(servicenow_stub):
            assert servicenow_stub.records("incident") == []
            servicenow_stub.insert("sys_user", {"user_name": "svc", "user_password": "pw"})
            answer = requests.get(f"{servicenow_stub.url}/api/now/table/incident",
                                  auth=("svc", "pw"), timeout=5)
            assert answer.status_code == 200 and answer.json() == {"result": []}
    """,
    "unknown/test_unknown.py": """
        import pytest

        @pytest.mark.servicenow(no_such_setting=1)
        def test_unknown_setting(servicenow_stub):
            pass
    """,
    "factory/test_factory.py": """
        import pytest
        import snworker

        opened = []

        def test_connect(servicenow_stub, servicenow_connect, servicenow_connection):
            other = servicenow_connect(request_timeout=5)
            opened.extend([servicenow_connection, other])
            assert other is not servicenow_connection
            for conn in opened:
                assert conn.execute_api_request("/api/now/table/incident").status == 200
            assert servicenow_stub.grant_counts["authorization_code"] == 2

        def test_after(servicenow_connection):
            assert len(opened) == 2
            with pytest.raises(snworker.ConnectionClosedError):
                opened[1].execute_api_request("/api/now/table/incident")
            # The fixture's connection is the session's: kept, and working.
            assert servicenow_connection is opened[0]
            assert servicenow_connection.execute_api_request("/api/now/table/incident").status \
                == 200
    """,
    "fast/test_fast.py": """
        import pytest
        import snworker

        workers = []

        def get(conn):
            return conn.execute_api_request("/api/now/table/incident",
                                            params={"sysparm_limit": 1}).status

        def fresh(stub):
            # What a fresh stub and one consent would show: nothing of the tests before.
            assert stub.grant_counts == {"authorization_code": 1, "refresh_token": 0}
            assert stub.requests == [] and stub.pending_faults == []
            assert len(stub.records("incident")) == 30

        def test_first(servicenow_stub, servicenow_connection):
            workers.append(servicenow_connection.worker_pid)
            fresh(servicenow_stub)
            assert get(servicenow_connection) == 200
            assert [r["path"] for r in servicenow_stub.requests] == ["/api/now/table/incident"]
            servicenow_stub.insert("incident", {"short_description": "left behind"})
            servicenow_stub.inject(status=503, times=9)

        def test_revoked_and_met(servicenow_stub, servicenow_connection):
            workers.append(servicenow_connection.worker_pid)
            fresh(servicenow_stub)
            servicenow_stub.revoke_refresh_tokens()
            with pytest.raises(snworker.AuthTokenExpiredError):
                get(servicenow_connection)

        def test_after_revoked_and_met(servicenow_stub, servicenow_connection):
            workers.append(servicenow_connection.worker_pid)
            fresh(servicenow_stub)
            assert get(servicenow_connection) == 200

        def test_revoked_unseen_and_clock_moved(servicenow_stub, servicenow_connection):
            fresh(servicenow_stub)
            servicenow_stub.revoke_refresh_tokens()
            servicenow_stub.advance(10 ** 8)
            servicenow_stub.set_lifespans(access=1, refresh=1)

        def test_expired_and_renewed(servicenow_stub, servicenow_connection):
            fresh(servicenow_stub)
            servicenow_stub.expire_access_tokens()
            assert get(servicenow_connection) == 200
            assert servicenow_stub.grant_counts["refresh_token"] == 1

        def test_after_renewed(servicenow_stub, servicenow_connection):
            workers.append(servicenow_connection.worker_pid)
            fresh(servicenow_stub)
            assert get(servicenow_connection) == 200
            secrets = servicenow_stub.issued_secrets()
            assert len(secrets) >= 4  # the consent's code, verifier and tokens, and the renewal's

        def test_disconnected(servicenow_connection):
            servicenow_connection.disconnect()

        def test_after_disconnected(servicenow_stub, servicenow_connection):
            fresh(servicenow_stub)
            assert get(servicenow_connection) == 200

        def test_no_connection_no_grant(servicenow_stub):
            assert servicenow_stub.grant_counts["authorization_code"] == 0
            assert servicenow_stub.issued_secrets() == []

        def test_one_worker_until_a_test_disconnected_it():
            assert len(workers) == 4 and len(set(workers)) == 1, workers
    """,
}


@dataclass
class SuiteRun:
    folder: Path
    outcomes: dict[str, str]
    output: str


@pytest.fixture(scope="module")
def user_suite(tmp_path_factory: pytest.TempPathFactory) -> SuiteRun:
    folder = tmp_path_factory.mktemp("user_suite")
    for name, text in USER_SUITE.items():
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text))
    report = folder / "report.xml"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--strict-markers",
         f"--junitxml={report}", str(folder)],
        capture_output=True, text=True, timeout=120, cwd=folder / "shared", check=False,
    )
    outcomes = {}
    for case in ElementTree.parse(report).iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes[str(case.get("name"))] = "failed" if failed else "passed"
    return SuiteRun(folder, outcomes, result.stdout + result.stderr)


def outcomes_of(run: SuiteRun, *tests: str) -> dict[str, str]:
    return {name: run.outcomes.get(name, "not run") for name in tests}


def test_one_stub_is_shared_and_reset_and_other_settings_get_their_own(
    user_suite: SuiteRun,
) -> None:
    tests = ("test_one", "test_two", "test_own", "test_default_settings_share", "test_last")
    assert outcomes_of(user_suite, *tests) == dict.fromkeys(tests, "passed"), user_suite.output
    seen = json.loads((user_suite.folder / "shared" / "seen.json").read_text())
    port = urlsplit(seen["one"]).port
    assert port is not None and port_is_free(port)  # stopped when the session ended


def test_settings_for_a_whole_directory_by_overriding_the_fixture(user_suite: SuiteRun) -> None:
    assert outcomes_of(user_suite, "test_empty_instance") == {
        "test_empty_instance": "passed"}, user_suite.output


def test_an_unknown_setting_is_an_error(user_suite: SuiteRun) -> None:
    assert outcomes_of(user_suite, "test_unknown_setting") == {"test_unknown_setting": "failed"}
    assert "no_such_setting" in user_suite.output
    assert len(user_suite.outcomes) == 19


def test_connections_from_the_factory_are_disconnected_after_the_test(
    user_suite: SuiteRun,
) -> None:
    assert outcomes_of(user_suite, "test_connect", "test_after") == {
        "test_connect": "passed", "test_after": "passed"}, user_suite.output


def test_the_connection_survives_each_reset_and_each_test_starts_afresh(
    user_suite: SuiteRun,
) -> None:
    tests = ("test_first", "test_revoked_and_met", "test_after_revoked_and_met",
             "test_revoked_unseen_and_clock_moved", "test_expired_and_renewed",
             "test_after_renewed", "test_disconnected", "test_after_disconnected",
             "test_no_connection_no_grant", "test_one_worker_until_a_test_disconnected_it")
    assert outcomes_of(user_suite, *tests) == dict.fromkeys(tests, "passed"), user_suite.output


def test_after_a_reconnect_the_replaced_grants_revocation_lands_before_the_reset() -> None:
    # The worker revokes the grant a new consent replaced on a thread of its own. Held up at the
    # stub, that revocation must still come before the shared connection's reset, or the next
    # test finds in `stub.requests` a request it never made.
    with StubServiceNow() as stub:
        holder = plugin.SharedConnection()
        try:
            connection = holder.for_test(stub)
            stub.revoke_refresh_tokens()
            with pytest.raises(snworker.AuthTokenExpiredError):
                connection.execute_api_request("/api/now/table/incident")
            stub.inject(status=None, delay=0.3, path_prefix="/oauth_revoke_token.do")
            assert holder.for_test(stub) is connection
            time.sleep(0.6)  # past the hold-up
            assert stub.requests == [] and stub.grant_counts["authorization_code"] == 1
            assert connection.execute_api_request("/api/now/table/incident").status == 200
        finally:
            holder.close()


def test_the_connection_fixtures_are_typed() -> None:
    # The plugin imports these names for type checkers only; snworker loads them on first use.
    namespace = {**vars(plugin), "ServiceNowConnection": snworker.ServiceNowConnection,
                 "StubServiceNow": StubServiceNow}
    hints = typing.get_type_hints(plugin.servicenow_connection.__wrapped__, namespace)
    assert hints["return"] is snworker.ServiceNowConnection
    factory = typing.get_type_hints(plugin.ConnectionFactory.__call__, namespace)
    assert factory["return"] is snworker.ServiceNowConnection
    stub = typing.get_type_hints(plugin.servicenow_stub.__wrapped__,
                                 {**namespace, "StubServiceNow": StubServiceNow})
    assert stub["return"] == Iterator[StubServiceNow]


def test_the_factory_type_is_exported_and_start_process_takes_the_constructors_arguments(
) -> None:
    assert snworker.testing.ConnectionFactory is plugin.ConnectionFactory
    constructor = list(inspect.signature(StubServiceNow.__init__).parameters.values())[1:]
    started = list(inspect.signature(StubServiceNow.start_process).parameters.values())
    assert [(p.name, p.default, p.annotation) for p in started] == [
        (p.name, p.default, p.annotation) for p in constructor]
    assert {p.kind for p in started} == {inspect.Parameter.KEYWORD_ONLY}


def test_servicenow_connection_reaches_the_stub(
    servicenow_stub: StubServiceNow, servicenow_connection: snworker.ServiceNowConnection
) -> None:
    assert isinstance(servicenow_connection, snworker.ServiceNowConnection)
    assert servicenow_connection.instance_url == servicenow_stub.url
    assert servicenow_stub.grant_counts["authorization_code"] == 1


# --- the browser stand-in as a command -------------------------------------------------------


@pytest.fixture
def callbacks() -> Iterator[tuple[str, list[dict[str, str]]]]:
    received: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.append({k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/callback", received
    server.shutdown()
    server.server_close()


def consent_url(sn: StubServiceNow, redirect_uri: str) -> str:
    params = {"response_type": "code", "client_id": sn.client_id, "redirect_uri": redirect_uri,
              "state": "st", "code_challenge": s256("v" * 43), "code_challenge_method": "S256"}
    url = requests.Request("GET", f"{sn.url}/oauth_auth.do", params=params).prepare().url
    assert url is not None
    return url


def browser_command(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snworker.testing.browser", *arguments],
        capture_output=True, text=True, timeout=30, check=False,
    )


@pytest.mark.parametrize(("action", "expected"), [("approve", "code"), ("deny", "error")])
def test_browser_command(
    servicenow_stub: StubServiceNow,
    callbacks: tuple[str, list[dict[str, str]]],
    action: str,
    expected: str,
) -> None:
    redirect_uri, received = callbacks
    result = browser_command(action, consent_url(servicenow_stub, redirect_uri))
    assert result.returncode == 0, result.stderr
    [callback] = received
    assert callback["state"] == "st" and expected in callback


def test_browser_command_failures(servicenow_stub: StubServiceNow) -> None:
    assert browser_command("approve").returncode == 2
    assert browser_command("wave", "http://127.0.0.1:1/").returncode == 2
    assert browser_command("ignore", "http://127.0.0.1:1/").returncode == 0
    unreachable = browser_command("approve", "http://127.0.0.1:1/")
    assert unreachable.returncode == 1
    assert "could not load the consent page" in unreachable.stderr  # it says why
    page_without_form = f"{servicenow_stub.url}/oauth_auth.do?client_id=nobody"
    refused = browser_command("approve", page_without_form)
    assert refused.returncode == 1
    assert "answered 400" in refused.stderr and "Invalid client_id" in refused.stderr


# --- the foreground server ------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals (SIGINT, SIGTERM)")
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_run_foreground_announces_itself_and_stops_on_a_signal(stop_signal: int) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c",
         "from snworker.testing.server import run_foreground; "
         "run_foreground('127.0.0.1', 0, 'cli-client')"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        ready = READY_LINE.fullmatch(line)
        assert ready, line
        url, client_id, redirect_uri = ready.groups()
        assert (client_id, redirect_uri) == ("cli-client", "http://127.0.0.1:0/callback")
        assert requests.get(f"{url}/api/now/table/incident", timeout=5).status_code == 401
        process.send_signal(stop_signal)
        assert process.wait(10) == 0
    finally:
        process.kill()
        process.wait()
