"""The pytest plugin, the lazy package, and the stub's commands (browser stand-in, foreground)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

import snworker.testing
from snworker.testing import StubServiceNow
from snworker.testing.oauth import s256

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


def test_fixtures_are_fresh_per_test_and_stopped_after(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(textwrap.dedent("""
        import requests

        urls = []

        def test_one(servicenow_stub):
            urls.append(servicenow_stub.url)
            servicenow_stub.insert("incident", {"short_description": "only here"})

        def test_two(servicenow_stub):
            urls.append(servicenow_stub.url)
            assert len(servicenow_stub.records("incident")) == 30

        def test_after():
            for url in urls:
                try:
                    requests.get(url, timeout=2)
                except requests.ConnectionError:
                    continue
                raise AssertionError(f"{url} still serving")
            assert len(urls) == 2
    """))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


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
    assert browser_command("approve", "http://127.0.0.1:1/").returncode == 1
    page_without_form = f"{servicenow_stub.url}/oauth_auth.do?client_id=nobody"
    assert browser_command("approve", page_without_form).returncode == 1


# --- the foreground server ------------------------------------------------------------------


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
