"""`snworker agent` and `snworker demo` as a user runs them: subprocesses, real agents, a stub,
and the browser stand-in through the standard BROWSER variable."""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import snworker
from snworker import agent as agents
from snworker.cli_arguments import duration
from snworker.testing import StubServiceNow
from tests.processes import process_gone
from tests.test_cli import TIMEOUT, Run, environment, snworker_cli

if sys.platform == "win32":  # before the POSIX signals below are named
    pytest.skip("the CLI through a POSIX shell and socket; test_agent runs the Windows agent",
                allow_module_level=True)

INCIDENTS = "/api/now/table/incident"
SHELL_LINES = re.compile(r"SNWORKER_AGENT=(\S+); export SNWORKER_AGENT;\n"
                         r"echo snworker agent pid (\d+);\n")


@pytest.fixture
def sn() -> Iterator[StubServiceNow]:
    with StubServiceNow() as stub:
        yield stub


def agent_address(tmp_path: Path, name: str = "agent") -> str:
    folder = tmp_path / name
    folder.mkdir(mode=0o700, exist_ok=True)
    return str(folder / "agent.sock")


def start_agent(sn: StubServiceNow, address: str, *flags: str) -> tuple[Run, str, int]:
    """`snworker agent start` for `sn`; its run, and the address and pid it printed."""
    run = snworker_cli("agent", "start", sn.url, sn.client_id, "--redirect-uri", sn.redirect_uri,
                       "--idle", "60", "--auth-timeout", "15", "--address", address, *flags,
                       env=environment(sn.url, sn.client_id, sn.redirect_uri))
    assert run.status == 0, run.stderr
    printed = SHELL_LINES.fullmatch(run.stdout.decode())
    assert printed, run.stdout
    return run, printed[1], int(printed[2])


def stop_quietly(address: str, pid: int) -> None:
    """Stop an agent a test left running."""
    if process_gone(pid, 0):
        return
    try:
        agents.control(address, "stop")
    except snworker.ServiceNowError:
        os.kill(pid, signal.SIGTERM)
    assert process_gone(pid, 15)


def test_eval_style_start_then_requests_need_no_consent(sn, tmp_path):
    _, address, pid = start_agent(sn, agent_address(tmp_path))
    try:
        assert address == agent_address(tmp_path)
        with_agent = dict(environment(sn.url, sn.client_id, sn.redirect_uri),
                          SNWORKER_AGENT=address)
        # As README shows it: SNWORKER_AGENT alone names the instance too.
        only_agent = {k: v for k, v in with_agent.items()
                      if k not in ("SNWORKER_INSTANCE", "SNWORKER_CLIENT_ID")}
        for env in (with_agent, with_agent, only_agent):
            run = snworker_cli("request", INCIDENTS, "-p", "sysparm_limit=1", env=env)
            assert (run.status, run.stderr) == (0, "")
            assert len(run.json["result"]) == 1
        assert sn.grant_counts["authorization_code"] == 1  # the agent's consent, no other

        shown = snworker_cli("agent", "status", env=with_agent)
        assert shown.status == 0, shown.stderr
        lines = shown.stdout.decode().splitlines()
        assert lines[0] == f"snworker agent pid {pid} at {address}"
        assert f"instance   {sn.url} (client id {sn.client_id})" in lines[1]
        assert "System Administrator (admin)" in lines[2]
        assert lines[4].startswith("  clients    none attached; stops after 1m without one")
        with snworker.attach(address):  # a client attached: counted, and no idle time left
            as_json = snworker_cli("agent", "status", "--json", env=with_agent).json
        assert (as_json["instance"], as_json["pid"], as_json["granted"]) == (sn.url, pid, True)
        assert (as_json["clients"], as_json["idle_left"]) == (1, None)

        stopped = snworker_cli("agent", "stop", env=with_agent)
        assert (stopped.status, stopped.stdout) == (0, f"snworker agent pid {pid} stopped\n"
                                                    .encode())
        assert process_gone(pid, 1)
        assert sn.revocation_count == 1
        assert not Path(address).exists()
    finally:
        stop_quietly(address, pid)


def test_eval_in_a_shell_returns_while_the_browser_stays_open(sn, tmp_path):
    # A browser started for the consent may outlive `agent start`; were it to hold the
    # command's stdout, `$(...)` would wait for it. This one keeps a child for 30 s.
    lingering = tmp_path / "browser.pid"
    env = environment(sn.url, sn.client_id, sn.redirect_uri)
    env["BROWSER"] = (f"sh -c 'sleep 30 & echo $! > {lingering}; "
                      f"exec {sys.executable} -m snworker.testing.browser approve \"$0\"' %s")
    snworker_command = f"{sys.executable} -m snworker"
    script = textwrap.dedent(f"""
        eval "$({snworker_command} agent start {sn.url} {sn.client_id} \\
                --redirect-uri {sn.redirect_uri} --address {agent_address(tmp_path)})"
        {snworker_command} request {INCIDENTS} -p sysparm_limit=1 -p sysparm_fields=number
        {snworker_command} agent stop
    """)
    began = time.monotonic()
    with open(tmp_path / "stderr", "w+") as stderr:  # a file: the browser's child holds it
        try:
            done = subprocess.run(["sh", "-c", script], env=env, stdout=subprocess.PIPE,
                                  stderr=stderr, text=True, timeout=TIMEOUT + 30)
        finally:
            if lingering.exists():
                os.kill(int(lingering.read_text()), signal.SIGTERM)
        stderr.seek(0)
        errors = stderr.read()
    assert done.returncode == 0, errors
    assert time.monotonic() - began < 25
    assert '"number": "INC0010001"' in done.stdout
    assert re.search(r"snworker agent pid \d+ stopped", done.stdout)
    assert sn.grant_counts["authorization_code"] == 1


def test_a_second_start_reuses_the_running_agent(sn, tmp_path):
    first, address, pid = start_agent(sn, agent_address(tmp_path))
    try:
        again, address_again, pid_again = start_agent(sn, address)
        assert (address_again, pid_again) == (address, pid)
        assert again.stdout == first.stdout
        assert again.stderr == (f"snworker: an agent for {sn.url} already runs (pid {pid}); "
                                "no consent needed\n")
        assert sn.grant_counts["authorization_code"] == 1
    finally:
        stop_quietly(address, pid)


def test_start_takes_the_instance_and_client_id_from_the_environment(sn, tmp_path):
    address = agent_address(tmp_path)
    env = environment(sn.url, sn.client_id, sn.redirect_uri)  # SNWORKER_INSTANCE and _CLIENT_ID
    run = snworker_cli("agent", "start", "--address", address, "--idle", "60", env=env)
    assert run.status == 0, run.stderr
    printed = SHELL_LINES.fullmatch(run.stdout.decode())
    assert printed, run.stdout
    try:
        status = agents.control(address, "status")
        assert (status["instance"], status["client_id"]) == (sn.url, sn.client_id)
    finally:
        stop_quietly(address, int(printed[2]))
    bare = {k: v for k, v in env.items() if k != "SNWORKER_CLIENT_ID"}
    missing = snworker_cli("agent", "start", "--address", address, env=bare)
    assert (missing.status, missing.stderr) == (
        2, "snworker: no client id: give it as an argument or set SNWORKER_CLIENT_ID\n")


def test_a_request_through_an_agent_whose_grant_was_revoked_consents_once(sn, tmp_path):
    _, address, pid = start_agent(sn, agent_address(tmp_path))
    try:
        env = dict(environment(sn.url, sn.client_id, sn.redirect_uri), SNWORKER_AGENT=address)
        sn.revoke_refresh_tokens()
        run = snworker_cli("request", INCIDENTS, "-p", "sysparm_limit=1", env=env)
        assert run.status == 0, run.stderr
        assert len(run.json["result"]) == 1
        assert run.stderr.startswith("snworker: the grant has ended (")
        assert run.stderr.endswith("); asking for consent again\n")
        assert "reconnect" not in run.stderr  # advice for programs, not for this command
        assert sn.grant_counts["authorization_code"] == 2  # the agent's first, and this one
        again = snworker_cli("request", INCIDENTS, "-p", "sysparm_limit=1", env=env)
        assert (again.status, again.stderr) == (0, "")  # the agent holds the new grant
        assert sn.grant_counts["authorization_code"] == 2
    finally:
        stop_quietly(address, pid)


def test_request_with_an_agent_for_another_instance_consents_itself(sn, tmp_path):
    with StubServiceNow() as other:
        _, address, pid = start_agent(other, agent_address(tmp_path))
        try:
            env = dict(environment(sn.url, sn.client_id, sn.redirect_uri), SNWORKER_AGENT=address)
            run = snworker_cli("request", INCIDENTS, "-p", "sysparm_limit=1", "--debug", env=env)
            assert run.status == 0, run.stderr
            assert f"the agent at {address} serves {other.url}" in run.stderr
            assert sn.grant_counts["authorization_code"] == 1  # its own consent
            assert other.grant_counts["authorization_code"] == 1  # the agent's, no other
            quiet = snworker_cli("request", INCIDENTS, "-p", "sysparm_limit=1", env=env)
            assert (quiet.status, quiet.stderr) == (0, "")  # said under --debug only
        finally:
            stop_quietly(address, pid)


def test_request_with_an_agent_that_does_not_answer(sn, tmp_path):
    gone = agent_address(tmp_path, "gone")
    env = dict(environment(sn.url, sn.client_id, sn.redirect_uri), SNWORKER_AGENT=gone)
    run = snworker_cli("request", INCIDENTS, "-p", "sysparm_limit=1", env=env)
    assert run.status == 0, run.stderr
    assert run.stderr == (f"snworker: no snworker agent at {gone} (No such file or directory); "
                          "using a worker of its own\n")
    assert sn.grant_counts["authorization_code"] == 1
    # With no instance to fall back on, it is the agent's failure.
    alone = {k: v for k, v in env.items() if k not in ("SNWORKER_INSTANCE", "SNWORKER_CLIENT_ID")}
    failed = snworker_cli("request", INCIDENTS, env=alone)
    assert failed.status == 4
    assert failed.stderr.count("\n") == 1
    assert failed.stderr.startswith(f"snworker: worker failed: no snworker agent at {gone} ")
    assert failed.stderr.endswith("give --instance and --client-id to use a worker of its own\n")


@pytest.mark.parametrize("action", ["status", "stop"])
def test_status_and_stop_with_no_agent_exit_4_in_one_line(tmp_path, action):
    env = {k: v for k, v in os.environ.items() if k != "SNWORKER_AGENT"}
    unnamed = snworker_cli("agent", action, env=env)
    assert (unnamed.status, unnamed.stdout) == (4, b"")
    assert unnamed.stderr.startswith("snworker: no snworker agent named: ")
    assert unnamed.stderr.count("\n") == 1
    gone = agent_address(tmp_path)
    for env_or_flag in ([], ["--agent", gone]):
        run = snworker_cli("agent", action, *env_or_flag,
                           env=dict(env, SNWORKER_AGENT=gone) if not env_or_flag else env)
        assert (run.status, run.stdout) == (4, b"")
        assert run.stderr == f"snworker: no snworker agent at {gone} (No such file or directory)\n"


def test_foreground_shows_the_agents_log_and_ctrl_c_stops_it(sn, tmp_path):
    address = agent_address(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "snworker", "agent", "start", sn.url, sn.client_id,
         "--redirect-uri", sn.redirect_uri, "--address", address, "--foreground"],
        env=environment(sn.url, sn.client_id, sn.redirect_uri), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # printed once the consent is done
        second = process.stdout.readline()
        printed = SHELL_LINES.fullmatch(first + second)
        assert printed, first + second
        pid = int(printed[2])
        with snworker.attach(address) as conn:
            assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
        process.wait(5)
    assert process.returncode == 0, errors
    assert "INFO snworker.worker: snworker worker: authorized at " in errors  # the agent's log
    assert f"snworker: stopping the agent (pid {pid})" in errors
    assert "snworker agent: stopping (asked to)" in errors
    assert errors.endswith(f"snworker: the agent (pid {pid}) stopped\n")
    assert process_gone(pid, 1)
    assert sn.revocation_count == 1


def hang_up_as_a_terminal_would() -> None:
    """SIGHUP at its default, as in a terminal's command, even under a `nohup` above the tests."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def start_in_the_foreground(sn: StubServiceNow, address: str, prefix: Sequence[str] = (),
                            **popen: Any) -> tuple[subprocess.Popen[str], int]:
    """`snworker agent start --foreground`, once its consent is done; the agent's pid."""
    command = [*prefix, sys.executable, "-m", "snworker", "agent", "start", sn.url, sn.client_id,
               "--redirect-uri", sn.redirect_uri, "--address", address, "--foreground"]
    process = subprocess.Popen(command, env=environment(sn.url, sn.client_id, sn.redirect_uri),
                               stdout=subprocess.PIPE, text=True,
                               preexec_fn=hang_up_as_a_terminal_would, **popen)
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(TIMEOUT), "the agent did not start"
    printed = SHELL_LINES.fullmatch(process.stdout.readline() + process.stdout.readline())
    assert printed, "the agent printed no address"
    return process, int(printed[2])


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGHUP])
def test_a_foreground_agent_ends_with_its_command_however_it_ends(sn, tmp_path, signum):
    # Killed, or hung up on: no Ctrl-C reaches the agent, and no `agent stop` either.
    address = agent_address(tmp_path)
    process, pid = start_in_the_foreground(sn, address, stderr=subprocess.DEVNULL)
    try:
        with snworker.attach(address) as conn:
            assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
        process.send_signal(signum)
        ended = time.monotonic()
        assert process.wait(5) == -signum
        assert process_gone(pid, 2.0), "the agent outlived its foreground command"
        assert time.monotonic() - ended < 2.0
        assert sn.revocation_count == 1
        assert not Path(address).exists()
    finally:
        process.kill()
        process.wait(5)
        stop_quietly(address, pid)


@pytest.mark.skipif(shutil.which("setsid") is None, reason="needs setsid")
def test_a_foreground_agent_ends_when_its_terminal_is_closed(sn, tmp_path):
    # The command runs in a session of its own, whose controlling terminal is a pseudo-terminal;
    # closing the terminal's side (a closed window, a dropped SSH connection) hangs it up.
    address = agent_address(tmp_path)
    terminal, tty = os.openpty()
    try:
        process, pid = start_in_the_foreground(sn, address, stdin=tty, stderr=tty,
                                               prefix=["setsid", "--ctty"])
    finally:
        os.close(tty)
    try:
        os.close(terminal)
        terminal = -1
        assert process.wait(5) == -signal.SIGHUP
        assert process_gone(pid, 2.0), "the agent outlived its terminal"
        assert sn.revocation_count == 1
    finally:
        if terminal >= 0:
            os.close(terminal)
        process.kill()
        process.wait(5)
        stop_quietly(address, pid)


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0,
                    reason="makes a directory of user nobody (needs root)")
def test_a_squatted_default_directory_gets_a_fresh_private_one(sn, tmp_path):
    # With no XDG_RUNTIME_DIR, the default is <tmp>/snworker-<uid>: another user may make it
    # first. As ssh-agent does, the agent then listens in a fresh private directory, and says why.
    import pwd

    temp = Path(tempfile.mkdtemp(prefix="snw-"))  # short: a socket's path has a limit
    temp.chmod(0o1777)
    squatted = temp / f"snworker-{os.getuid()}"
    squatted.mkdir(mode=0o777)
    squatted.chmod(0o777)
    nobody = pwd.getpwnam("nobody")
    os.chown(squatted, nobody.pw_uid, nobody.pw_gid)
    env = {k: v for k, v in environment(sn.url, sn.client_id, sn.redirect_uri).items()
           if k != "XDG_RUNTIME_DIR"}
    env["TMPDIR"] = str(temp)
    run = snworker_cli("agent", "start", sn.url, sn.client_id, "--redirect-uri", sn.redirect_uri,
                       "--idle", "60", "--auth-timeout", "15", env=env)
    printed = SHELL_LINES.fullmatch(run.stdout.decode())
    assert run.status == 0 and printed, run.stderr
    address, pid = printed[1], int(printed[2])
    try:
        assert f"{squatted} belongs to user nobody" in run.stderr
        directory = Path(address).parent
        assert directory.parent == temp and directory != squatted
        info = directory.stat()
        assert (info.st_uid, info.st_mode & 0o777) == (os.getuid(), 0o700)
        assert list(squatted.iterdir()) == []  # nothing of the agent's in the squatter's
        with snworker.attach(address) as conn:
            assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
        stop_quietly(address, pid)
        assert not directory.exists()  # the agent removes the directory it made
    finally:
        stop_quietly(address, pid)
        shutil.rmtree(temp, ignore_errors=True)


def test_an_address_in_another_users_directory_names_the_owner_and_the_way_out(sn, tmp_path):
    import pwd

    if os.getuid() != 0:
        pytest.skip("makes a directory of user nobody (needs root)")
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, pwd.getpwnam("nobody").pw_uid, -1)
    run = snworker_cli("agent", "start", sn.url, sn.client_id, "--redirect-uri", sn.redirect_uri,
                       "--address", str(theirs / "agent.sock"),
                       env=environment(sn.url, sn.client_id, sn.redirect_uri))
    assert run.status == 4, run.stderr
    assert f"{theirs} belongs to user nobody" in run.stderr
    assert "--address" in run.stderr


def test_idle_takes_hours_minutes_seconds(sn, tmp_path):
    assert [duration(text) for text in ("8h", "30m", "90s", "1h30m", "45", "0.5")] == \
        [28800, 1800, 90, 5400, 45, 0.5]
    run = snworker_cli("agent", "start", sn.url, sn.client_id, "--idle", "8 hours",
                       "--address", agent_address(tmp_path),
                       env=environment(sn.url, sn.client_id, sn.redirect_uri))
    assert run.status == 2
    assert run.stderr == ("snworker: argument --idle: not a positive duration (such as 8h, 30m, "
                          "90s, or seconds): '8 hours' (see 'snworker agent start --help')\n")
    assert sn.requests == []  # no consent page was asked for


# --- the demo --------------------------------------------------------------------------------


def test_demo_tells_the_whole_story(capsys):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNWORKER_")}
    run = snworker_cli("demo", env=env)
    with capsys.disabled():
        print(f"\nsnworker demo: {run.seconds:.1f} s")
    assert run.status == 0, run.stderr
    shown = run.stdout.decode()
    for expected in (
        " 1 consent       snworker.connect(): a stand-in browser clicks Allow",
        " 2 current_user  System Administrator (admin)",
        " 3 query         GET /api/now/table/incident -> 200: 30 incidents; the first 3:",
        "renewed silently (the stub counted 1 refresh grant)",
        "the next call raises AuthTokenExpiredError",
        "conn.reconnect(): a second consent; GET -> 200 (2 consents in all)",
        " 7 disconnect    the worker revokes its grant and exits",
    ):
        assert expected in shown, shown
    if sys.platform == "linux":
        assert "none of them is there (a string planted in the app is" in shown, shown
    else:
        assert "it needs Linux; skipped" in shown
    assert run.seconds < 30


def test_demo_in_the_browser_shows_the_consent_page():
    env = {k: v for k, v in environment("", "", "").items() if not k.startswith("SNWORKER_")}
    run = snworker_cli("demo", "--browser", env=env)  # BROWSER is the stand-in
    assert run.status == 0, run.stderr
    assert "your browser shows the stub's consent page; click Allow" in run.stdout.decode()
    pages = re.findall(r"consent page: (http://127\.0\.0\.1:\d+/oauth_auth\.do\?\S+)", run.stderr)
    assert len(pages) == 2  # connect() and reconnect()
