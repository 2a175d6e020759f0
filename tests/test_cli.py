"""`snworker request` as a user runs it: a subprocess, a worker, `snworker stub`, and a browser
stand-in through the standard BROWSER variable.

One stub serves the whole module; each test looks only at the requests it caused.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

import snworker
from snworker.testing import RemoteStub
from snworker.testing.server import _read_ready_line
from tests.conftest import browser_command
from tests.processes import kill

TIMEOUT = 30.0
AUTH_TIMEOUT = 5
# Every byte value, and sequences that are not UTF-8: what an attachment may hold.
BINARY = bytes(range(256)) * 3 + b"\xff\xfe\x00\x80\xc3\x28PNG\r\n\x1a\n"


@dataclass
class Run:
    """A finished command: exit status, output, and how long it took."""

    status: int
    stdout: bytes
    stderr: str
    seconds: float

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def last_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


@dataclass
class Stub:
    """The module's `snworker stub` process, under control through its URL."""

    remote: RemoteStub
    url: str
    client_id: str
    redirect_uri: str

    def mark(self) -> int:
        return len(self.remote.requests)

    def seen_since(self, mark: int) -> list[dict[str, Any]]:
        return self.remote.requests[mark:]


def started(*args: str, env: dict[str, str], stdout: int = subprocess.PIPE,
            stdin: int | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "snworker", *args], env=env, stdin=stdin,
                            stdout=stdout, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen[bytes], began: float, data: bytes | None = None) -> Run:
    try:
        out, err = process.communicate(data, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    # stderr is text: Windows ends its lines with \r\n.
    return Run(process.returncode, out or b"", err.decode().replace("\r\n", "\n"),
               time.monotonic() - began)


def snworker_cli(*args: str, env: dict[str, str], data: bytes | None = None) -> Run:
    began = time.monotonic()
    stdin = subprocess.PIPE if data is not None else subprocess.DEVNULL
    return finish(started(*args, env=env, stdin=stdin), began, data)


def environment(url: str, client_id: str, redirect_uri: str,
                browser: str = "approve") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SNWORKER_") and k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(SNWORKER_INSTANCE=url, SNWORKER_CLIENT_ID=client_id,
               SNWORKER_REDIRECT_URI=redirect_uri,
               BROWSER=browser_command(browser))
    return env


def read_ready_line(process: subprocess.Popen[bytes]) -> dict[str, str]:
    return _read_ready_line(process, 20)  # a thread reads it: select() takes no pipe on Windows


@pytest.fixture(scope="module")
def stub() -> Iterator[Stub]:
    process = subprocess.Popen([sys.executable, "-m", "snworker", "stub", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready = read_ready_line(process)
        remote = RemoteStub(ready["url"])
        yield Stub(remote, ready["url"], ready["client_id"], ready["redirect_uri"])
        remote.close()
    finally:
        process.terminate()
        process.communicate(timeout=10)


@pytest.fixture(scope="module")
def env(stub: Stub) -> dict[str, str]:
    return environment(stub.url, stub.client_id, stub.redirect_uri)


def api_calls(seen: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    return [r for r in seen if r["path"] == path]


def new_table(stub: Stub, records: int) -> str:
    table = f"u_cli_{uuid.uuid4().hex[:8]}"
    for n in range(records):
        stub.remote.insert(table, {"number": f"REC{n:04d}"})
    return table


# --- requests that succeed -------------------------------------------------------------------


def test_get_with_params_headers_and_include(stub: Stub, env: dict[str, str]) -> None:
    mark = stub.mark()
    run = snworker_cli("request", "/api/now/table/incident", "-p", "sysparm_limit=2",
                       "-p", "sysparm_fields=number", "-p", "sysparm_query=ORDERBYnumber",
                       "-H", "X-Trace: cli-test", "-i", env=env)
    assert run.status == 0, run.stderr
    assert [r["number"] for r in run.json["result"]] == ["INC0010001", "INC0010002"]
    assert run.stderr.startswith("HTTP 200 OK\n")
    total = len(stub.remote.records("incident"))
    assert f"X-Total-Count: {total}" in run.stderr.splitlines()
    assert 'rel="next"' in next(line for line in run.stderr.splitlines()
                                if line.startswith("Link: "))
    sent = api_calls(stub.seen_since(mark), "/api/now/table/incident")[-1]
    assert sent["query"]["sysparm_limit"] == "2"
    assert {k.lower(): v for k, v in sent["headers"].items()}["x-trace"] == "cli-test"


def test_a_repeated_param_is_sent_repeated(stub: Stub, env: dict[str, str]) -> None:
    run = snworker_cli("request", "/api/now/table/incident", "-p", "sysparm_limit=1",
                       "-p", "sysparm_fields=number", "-p", "sysparm_fields=state", "-i", env=env)
    assert run.status == 0, run.stderr
    # The stub's Link header repeats the query it received, every value of every name.
    link = next(line for line in run.stderr.splitlines() if line.startswith("Link: "))
    assert "sysparm_fields=number&sysparm_fields=state" in link


@pytest.mark.parametrize("source", ["text", "file", "stdin"])
def test_post_with_a_json_body(stub: Stub, env: dict[str, str], tmp_path: Path,
                               source: str) -> None:
    body = json.dumps({"short_description": f"from -d {source} ✓"}).encode()
    (tmp_path / "body.json").write_bytes(body)
    argument = {"text": body.decode(), "file": f"@{tmp_path / 'body.json'}", "stdin": "-"}[source]
    run = snworker_cli("request", "/api/now/table/incident", "-d", argument, env=env,
                       data=body if source == "stdin" else None)
    assert run.status == 0, run.stderr
    created = run.json["result"]
    assert created["short_description"] == f"from -d {source} ✓"
    stored = [r for r in stub.remote.records("incident") if r["sys_id"] == created["sys_id"]]
    assert stored[0]["short_description"] == f"from -d {source} ✓"


def test_all_follows_next_links_to_the_last_page(stub: Stub, env: dict[str, str]) -> None:
    table = new_table(stub, 21)
    mark = stub.mark()
    run = snworker_cli("request", f"/api/now/table/{table}", "--all", "-p", "sysparm_limit=7",
                       "-p", "sysparm_query=ORDERBYnumber", env=env)
    assert run.status == 0, run.stderr
    assert [r["number"] for r in run.json] == [f"REC{n:04d}" for n in range(21)]
    pages = api_calls(stub.seen_since(mark), f"/api/now/table/{table}")
    assert [p["query"]["sysparm_offset"] for p in pages[1:]] == ["7", "14"]
    assert len(pages) == 3  # 21 records, 7 a page: no empty fourth page
    assert run.stderr.splitlines() == [f"snworker: page {n}: {7 * n} of 21 records"
                                       for n in (1, 2, 3)]


def test_all_jsonl_writes_one_record_a_line(stub: Stub, env: dict[str, str]) -> None:
    table = new_table(stub, 5)
    run = snworker_cli("request", f"/api/now/table/{table}", "--all", "--jsonl",
                       "-p", "sysparm_limit=2", "-p", "sysparm_fields=number",
                       "-p", "sysparm_query=ORDERBYnumber", env=env)
    assert run.status == 0, run.stderr
    lines = run.stdout.decode().splitlines()
    assert [json.loads(line) for line in lines] == [{"number": f"REC{n:04d}"} for n in range(5)]


def test_all_refuses_a_next_link_to_another_origin(stub: Stub, env: dict[str, str]) -> None:
    table = new_table(stub, 3)
    stub.remote.inject(status=None, times=1, path_prefix=f"/api/now/table/{table}", headers={
        "Link": '<https://elsewhere.example/api/now/table/x?sysparm_offset=1>;rel="next"'})
    mark = stub.mark()
    run = snworker_cli("request", f"/api/now/table/{table}", "--all", "-p", "sysparm_limit=1",
                       env=env)
    assert run.status == 1
    assert run.last_line == ("snworker: the next page's link leaves the instance: "
                             "https://elsewhere.example/api/now/table/x?sysparm_offset=1")
    assert run.stdout == b""
    assert len(api_calls(stub.seen_since(mark), f"/api/now/table/{table}")) == 1


def test_old_positional_form_still_works(stub: Stub, env: dict[str, str]) -> None:
    bare = {k: v for k, v in env.items() if not k.startswith("SNWORKER_")}
    bare["SNWORKER_REDIRECT_URI"] = stub.redirect_uri
    run = snworker_cli("request", stub.url, stub.client_id, "/api/now/table/incident",
                       "-p", "sysparm_limit=1", env=bare)
    assert run.status == 0, run.stderr
    assert len(run.json["result"]) == 1
    assert "deprecated" in run.stderr


# A browser that leaves a child running for 30 s, which inherits what the browser was given.
LINGERING_BROWSER = """
import runpy, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], close_fds=False)
with open(sys.argv[1], "w") as f:
    f.write(str(child.pid))
sys.argv = ["browser", "approve", sys.argv[2]]
runpy.run_module("snworker.testing.browser", run_name="__main__")
"""


def test_a_browser_left_open_does_not_hold_stdout(stub: Stub, tmp_path: Path) -> None:
    # The browser started for the consent (here, one that leaves a child for 30 s) must not
    # pass stdout on: `snworker request ... | jq` would wait for it to close.
    lingering = tmp_path / "browser.pid"
    script = tmp_path / "browser.py"
    script.write_text(LINGERING_BROWSER)
    env = environment(stub.url, stub.client_id, stub.redirect_uri)
    python = browser_command().split(" -m ")[0]  # as BROWSER takes it, on any OS
    env["BROWSER"] = f"{python} {script.as_posix()} {lingering.as_posix()} %s"
    began = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "snworker", "request",
                               "/api/now/table/incident", "-p", "sysparm_limit=1"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL, timeout=TIMEOUT + 30)
    finally:
        if lingering.exists():
            kill(int(lingering.read_text()))
    assert done.returncode == 0
    assert time.monotonic() - began < 25
    assert len(json.loads(done.stdout)["result"]) == 1


def test_version(env: dict[str, str]) -> None:
    for args in (["--version"], ["request", "--version"]):
        run = snworker_cli(*args, env=env)
        printed = run.stdout.decode().replace("\r\n", "\n")  # a text line, on any OS
        assert (run.status, printed) == (0, f"snworker {snworker.__version__}\n")


# --- failures: one line on stderr and the documented exit status ----------------------------


def test_an_api_error_prints_the_envelope_and_exits_1(stub: Stub, env: dict[str, str]) -> None:
    run = snworker_cli("request", "/api/now/table/incident/" + "0" * 32, env=env)
    assert run.status == 1
    detail = "Record doesn't exist or ACL restricts the record retrieval"
    assert run.json == {"error": {"message": "No Record found", "detail": detail},
                        "status": "failure"}
    assert run.stderr == f"snworker: HTTP 404: No Record found ({detail})\n"


@pytest.mark.parametrize(("args", "message"), [
    (["-d", '{"short_description": '], "snworker: -d: the body from the text is not JSON ("),
    (["--frobnicate"], "snworker: unrecognized arguments: --frobnicate"),
    (["-H", "Authorization: Bearer stolen"], "snworker: refused: the Authorization header "),
    (["-H", "X-Forwarded-Host: elsewhere.example"], "snworker: refused: the X-Forwarded-Host "),
    (["-H", "no colon"], "snworker: -H wants 'Name: value'"),
    (["-X", "TRACE"], "snworker: refused: unsupported HTTP method 'TRACE'"),
    (["-p", "sysparm_limit"], "snworker: -p wants NAME=VALUE"),
    (["--all", "-X", "DELETE"], "snworker: --all follows the pages of a GET"),
    (["--timeout", "0"], "snworker: argument --timeout: not a positive number of seconds"),
])
def test_usage_errors_exit_2_before_consent(stub: Stub, env: dict[str, str], args: list[str],
                                            message: str) -> None:
    mark = stub.mark()
    run = snworker_cli("request", "/api/now/table/incident", *args, env=env)
    assert run.status == 2
    assert run.stderr.startswith(message) and run.stderr.count("\n") == 1, run.stderr
    assert run.stdout == b""
    assert stub.seen_since(mark) == []  # no consent page: the browser was never opened


@pytest.mark.parametrize("path", ["//elsewhere.example/api", "/api/now/../../oauth_token.do",
                                  "https://elsewhere.example/api", "/api/now/table/x\r\nHost: y"])
def test_a_path_off_the_instance_exits_2_before_consent(stub: Stub, env: dict[str, str],
                                                         path: str) -> None:
    mark = stub.mark()
    run = snworker_cli("request", path, env=env)
    assert (run.status, run.stderr.count("\n")) == (2, 1), run.stderr
    assert run.stderr.startswith("snworker: refused: ")
    assert stub.seen_since(mark) == []


def test_missing_instance_exits_2(env: dict[str, str]) -> None:
    bare = {k: v for k, v in env.items() if k != "SNWORKER_INSTANCE"}
    run = snworker_cli("request", "/api/now/table/incident", env=bare)
    assert (run.status, run.stderr) == (
        2, "snworker: no instance: give --instance or set SNWORKER_INSTANCE\n")


def test_denied_consent_exits_3(stub: Stub) -> None:
    denying = environment(stub.url, stub.client_id, stub.redirect_uri, browser="deny")
    run = snworker_cli("request", "/api/now/table/incident", env=denying)
    assert run.status == 3
    assert run.stderr == "snworker: authorization failed: the user denied access [denied]\n"
    assert run.stdout == b""


@pytest.fixture(scope="module")
def unanswered_consents(stub: Stub, env: dict[str, str]) -> dict[str, Run]:
    """An unreachable instance and an unknown client id, run side by side (each waits)."""
    cases = {"unreachable": ["--instance", "http://127.0.0.1:1"], "wrong client": [
        "--client-id", "nope"]}
    began = time.monotonic()
    running = {name: started("request", "/api/now/table/incident", "--auth-timeout",
                             str(AUTH_TIMEOUT), *args, env=env, stdin=subprocess.DEVNULL)
               for name, args in cases.items()}
    return {name: finish(process, began) for name, process in running.items()}


@pytest.mark.parametrize("case", ["unreachable", "wrong client"])
def test_no_consent_in_time_exits_3_within_the_bound(unanswered_consents: dict[str, Run],
                                                     case: str) -> None:
    run = unanswered_consents[case]
    assert run.status == 3, run.stderr
    assert run.last_line.startswith("snworker: authorization failed: ")
    assert "Traceback" not in run.stderr
    assert run.seconds < AUTH_TIMEOUT + 10


def test_stub_on_a_busy_port_exits_2_in_one_line(stub: Stub, env: dict[str, str]) -> None:
    port = stub.url.rsplit(":", 1)[1]
    run = snworker_cli("stub", "--port", port, env=env)
    assert run.status == 2
    assert run.stderr.startswith(f"snworker: cannot serve the stub on 127.0.0.1:{port}: ")
    assert run.stderr.count("\n") == 1


def test_all_jsonl_writes_an_error_page_as_one_line(stub: Stub, env: dict[str, str]) -> None:
    table = new_table(stub, 3)
    stub.remote.inject(status=400, times=1, path_prefix=f"/api/now/table/{table}")
    run = snworker_cli("request", f"/api/now/table/{table}", "--all", "--jsonl", env=env)
    assert run.status == 1, run.stderr
    lines = run.stdout.decode().splitlines(keepends=True)
    assert len(lines) == 1 and lines[0].endswith("\n"), lines
    envelope = json.loads(lines[0])
    assert envelope["status"] == "failure" and envelope["error"]["message"]
    # Without --jsonl the envelope stays as a person reads it.
    stub.remote.inject(status=400, times=1, path_prefix=f"/api/now/table/{table}")
    shown = snworker_cli("request", f"/api/now/table/{table}", "--all", env=env)
    assert json.loads(shown.stdout) == envelope and shown.stdout.count(b"\n") > 1


def busy_port() -> tuple[socket.socket, int]:
    """A loopback port that is taken, and the socket that takes it."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    return taken, taken.getsockname()[1]


def test_redirect_uri_repeats_and_the_variable_takes_a_comma_separated_list(
        stub: Stub, env: dict[str, str]) -> None:
    taken, port = busy_port()
    busy = f"http://127.0.0.1:{port}/callback"
    with taken:
        flags = snworker_cli("request", "/api/now/table/incident", "-p", "sysparm_limit=1",
                             "--redirect-uri", busy, "--redirect-uri", stub.redirect_uri,
                             env=env)
        assert flags.status == 0, flags.stderr
        listed = dict(env, SNWORKER_REDIRECT_URI=f"{busy}, {stub.redirect_uri}")
        variable = snworker_cli("request", "/api/now/table/incident", "-p", "sysparm_limit=1",
                                env=listed)
        assert variable.status == 0, variable.stderr
        only_busy = snworker_cli("request", "/api/now/table/incident", "--redirect-uri", busy,
                                 env=env)
    assert only_busy.status == 3
    assert only_busy.stderr.count("\n") == 1 and only_busy.stderr.endswith("[redirect_busy]\n")
    assert "--redirect-uri (repeated), or all in $SNWORKER_REDIRECT_URI, comma-separated" \
        in only_busy.stderr
    assert "redirect_uri=" not in only_busy.stderr
    helped = snworker_cli("request", "--help", env=env)
    assert "repeat it to give several" in " ".join(helped.stdout.decode().split())


@pytest.mark.parametrize(("flag", "named"), [
    (["--redirect-uri", "https://example.com/cb"], "--redirect-uri"),
    ([], "SNWORKER_REDIRECT_URI"),
])
def test_a_bad_redirect_uri_exits_2_before_consent(stub: Stub, env: dict[str, str],
                                                   flag: list[str], named: str) -> None:
    mark = stub.mark()
    bad = dict(env, SNWORKER_REDIRECT_URI=f"{stub.redirect_uri},http://127.0.0.1/no-port")
    run = snworker_cli("request", "/api/now/table/incident", *flag, env=bad)
    assert run.status == 2
    assert run.stderr.startswith(f"snworker: {named}: each URL must be a loopback URL with a "
                                 "port"), run.stderr
    assert run.stderr.count("\n") == 1
    assert stub.seen_since(mark) == []


def test_https_to_the_plain_http_stub_names_tls(stub: Stub, env: dict[str, str]) -> None:
    run = snworker_cli("request", "/api/now/table/incident", "--instance",
                       stub.url.replace("http://", "https://"), env=env)
    assert run.status == 3
    assert run.stderr.count("\n") == 1, run.stderr
    assert "TLS failed: the server does not speak TLS" in run.stderr
    assert "deadline" not in run.stderr  # not mistaken for an instance that does not answer


def test_a_bad_snworker_io_is_one_line(stub: Stub, env: dict[str, str]) -> None:
    run = snworker_cli("request", "/api/now/table/incident", env=dict(env, SNWORKER_IO="bogus"))
    assert (run.status, run.stdout) == (4, b"")
    assert run.stderr == ("snworker: worker failed: SNWORKER_IO must be one of fd, conn (or "
                          "unset), not 'bogus'\n")


def test_a_bare_snworker_lists_its_commands(env: dict[str, str]) -> None:
    run = snworker_cli(env=env)
    assert (run.status, run.stdout) == (2, b"")
    assert run.stderr.startswith("usage: snworker ")
    for command in ("request", "agent", "stub", "demo"):
        assert f"\n    {command} " in run.stderr
    assert run.last_line == ("snworker: the following arguments are required: COMMAND "
                             "(see 'snworker --help')")


# --- bodies as bytes -------------------------------------------------------------------------


class AttachmentFront(ThreadingHTTPServer):
    """An instance in front of the stub: its OAuth and Table API, plus attachments as bytes.

    The stub has no Attachment API; this server keeps uploaded files in memory and serves
    them back byte for byte, to tokens the stub accepts. Everything else goes to the stub.
    """

    def __init__(self, stub_url: str) -> None:
        super().__init__(("127.0.0.1", 0), _FrontHandler)
        self.stub_url = stub_url
        self.files: dict[str, tuple[str, bytes]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FrontHandler(BaseHTTPRequestHandler):
    server: AttachmentFront

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.path.startswith("/api/now/attachment/"):
            return self._forward(body)
        if not self._authorized():
            return self._send(401, "application/json", b'{"status":"failure"}')
        if self.command == "POST":
            sys_id = uuid.uuid4().hex
            self.server.files[sys_id] = (self.headers.get("Content-Type", ""), body)
            answer = {"result": {"sys_id": sys_id, "size_bytes": str(len(body))}}
            return self._send(201, "application/json", json.dumps(answer).encode())
        content_type, content = self.server.files[self.path.split("/")[4]]
        self._send(200, content_type, content)

    def _authorized(self) -> bool:
        check = requests.get(f"{self.server.stub_url}/api/now/table/sys_user", timeout=10,
                             params={"sysparm_limit": 1},
                             headers={"Authorization": self.headers.get("Authorization", "")})
        return check.status_code == 200

    def _forward(self, body: bytes) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        answer = requests.request(self.command, self.server.stub_url + self.path, data=body,
                                  headers=headers, allow_redirects=False, timeout=10)
        self.send_response(answer.status_code)
        for name, value in answer.headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection",
                                    "content-encoding", "date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def _send(self, status: int, content_type: str, content: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def front(stub: Stub) -> Iterator[AttachmentFront]:
    server = AttachmentFront(stub.url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def front_env(front: AttachmentFront, stub: Stub) -> dict[str, str]:
    return environment(front.url, stub.client_id, stub.redirect_uri)


def upload(front: AttachmentFront, content: bytes) -> str:
    sys_id = uuid.uuid4().hex
    front.files[sys_id] = ("image/png", content)
    return sys_id


def test_data_binary_uploads_bytes_as_they_are(front: AttachmentFront,
                                               front_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "photo.png").write_bytes(BINARY)
    run = snworker_cli("request", "/api/now/attachment/file?table_name=incident",
                       "--data-binary", f"@{tmp_path / 'photo.png'}", env=front_env)
    assert run.status == 0, run.stderr
    sys_id = run.json["result"]["sys_id"]
    assert front.files[sys_id] == ("application/octet-stream", BINARY)

    typed = snworker_cli("request", "/api/now/attachment/file", "--data-binary", "-",
                         "-H", "Content-Type: image/png", env=front_env, data=BINARY)
    assert typed.status == 0, typed.stderr
    assert front.files[typed.json["result"]["sys_id"]] == ("image/png", BINARY)


def test_output_file_gets_the_exact_bytes(front: AttachmentFront, front_env: dict[str, str],
                                          tmp_path: Path) -> None:
    sys_id = upload(front, BINARY)
    target = tmp_path / "download.png"
    run = snworker_cli("request", f"/api/now/attachment/{sys_id}/file", "-H", "Accept: */*",
                       "-o", str(target), env=front_env)
    assert run.status == 0, run.stderr
    assert (run.stdout, target.read_bytes()) == (b"", BINARY)


def test_a_binary_body_goes_to_a_pipe_as_bytes(front: AttachmentFront,
                                               front_env: dict[str, str]) -> None:
    sys_id = upload(front, BINARY)
    run = snworker_cli("request", f"/api/now/attachment/{sys_id}/file", env=front_env)
    assert run.status == 0, run.stderr
    assert run.stdout == BINARY


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal (pty) is POSIX-only")
def test_a_binary_body_is_kept_off_a_terminal(front: AttachmentFront,
                                              front_env: dict[str, str]) -> None:
    import pty

    sys_id = upload(front, BINARY)
    leader, terminal = pty.openpty()
    began = time.monotonic()
    process = started("request", f"/api/now/attachment/{sys_id}/file", env=front_env,
                      stdout=terminal, stdin=subprocess.DEVNULL)
    os.close(terminal)
    run = finish(process, began)
    os.set_blocking(leader, False)
    shown = b""
    try:
        while chunk := os.read(leader, 4096):
            shown += chunk
    except OSError:  # nothing more to read (EAGAIN), or the other side is gone (EIO)
        pass
    os.close(leader)
    assert run.status == 0, run.stderr
    assert shown == b""
    assert run.stderr == (f"snworker: the body is {len(BINARY)} bytes of binary data, not "
                          "written to the terminal; use -o FILE (or -o - to write it anyway)\n")
