"""An agent run as a service: under a user of its own, serving the users and groups it allows.

Three real users, no systemd: the agent runs as `daemon` (with the client secret only that user
can read), a client runs as `nobody` (allowed: served, within the agent's policy) and another
as `bin` (not allowed: refused before anything it sends is read). snworker and its
dependencies are copied where every user can read them and only root can write, as a service
install is; the system's Python 3 runs them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from snworker import agent as agents
from snworker.spawn import WORKER_PACKAGES
from snworker.testing import StubServiceNow

SYSTEM_PYTHON = "/usr/bin/python3"
SECRET = "service-secret-0123456789abcdef"
pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="users and peer credentials of Linux"),
    pytest.mark.skipif(sys.platform == "linux" and os.geteuid() != 0,
                       reason="runs processes as other users: needs root"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv runs them"),
    pytest.mark.skipif(sys.platform != "linux" or not os.path.exists(SYSTEM_PYTHON)
                       or subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; sys.exit(sys.version_info[:2] != "
         f"{sys.version_info[:2]})"], check=False).returncode != 0,
        reason="a system Python of this version runs the copy"),
]


def _users_exist() -> bool:
    import grp
    import pwd

    try:
        for user in ("daemon", "nobody", "bin"):
            pwd.getpwnam(user)
        grp.getgrnam("nogroup")
    except KeyError:
        return False
    return True


if sys.platform == "linux":
    pytestmark.append(pytest.mark.skipif(not _users_exist(),
                                         reason="the users daemon, nobody, bin, nogroup"))
# Packages the CLI, the agent and its client import, beyond the worker's own.
_PACKAGES = (*WORKER_PACKAGES, "multiprocess", "_multiprocess", "dill")


def as_user(user: str, group: str, *groups: str) -> list[str]:
    extra = ["--groups=" + ",".join(groups)] if groups else ["--clear-groups"]
    return ["setpriv", f"--reuid={user}", f"--regid={group}", *extra]


@pytest.fixture(scope="module")
def site() -> Iterator[Path]:
    """snworker and its dependencies, readable by every user, writable by root only."""
    import importlib.util

    root = Path(tempfile.mkdtemp(prefix="snworker-site-"))
    root.chmod(0o755)
    for name in _PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        if spec.submodule_search_locations:
            source = Path(next(iter(spec.submodule_search_locations)))
            shutil.copytree(source, root / source.name,
                            ignore=shutil.ignore_patterns("__pycache__", "tests"))
        elif spec.origin:
            shutil.copy2(spec.origin, root)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def home() -> Iterator[Path]:
    """The service's own directory: the agent's user's, open for others to pass through."""
    home = Path(tempfile.mkdtemp(prefix="snworker-service-"))
    home.chmod(0o755)
    os.chown(home, 1, 1)  # daemon
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def sn() -> Iterator[StubServiceNow]:
    with StubServiceNow(auth=("client_credentials",), client_secret=SECRET) as stub:
        yield stub


def environment(site: Path, home: Path, **extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(site), **extra}


def start_agent(sn: StubServiceNow, site: Path, home: Path, *allow: str,
                groups: tuple[str, ...] = ()) -> tuple[str, int]:
    secret = home / "client-secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    os.chown(secret, 1, 1)
    address = str(home / "run" / "agent.sock")
    started = subprocess.run(
        [*as_user("daemon", "daemon", *groups), SYSTEM_PYTHON, "-m", "snworker", "agent",
         "start", sn.url, sn.client_id, "--grant", "client-credentials",
         "--client-secret-file", str(secret), *allow, "--address", address, "--read-only",
         "--table", "incident", "--idle", "60"],
        env=environment(site, home), capture_output=True, text=True, timeout=60, cwd="/")
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.split("snworker agent pid ")[1].split(";")[0])
    return address, pid


CLIENT = textwrap.dedent("""
    import json, os, sys, snworker
    out = {}
    try:
        open(sys.argv[1]).read()
        out["secret"] = "readable"
    except PermissionError:
        out["secret"] = "unreadable"
    try:
        conn = snworker.attach()
        out["get"] = conn.execute_api_request("/api/now/table/incident",
                                              params={"sysparm_limit": 1}).status
        for name, call in (("post", lambda: conn.execute_api_request(
                               "/api/now/table/incident", "POST", {"short_description": "x"})),
                           ("other_table", lambda: conn.execute_api_request(
                               "/api/now/table/sys_user")),
                           ("stop", lambda: snworker.agent.control(None, "stop"))):
            try:
                call()
                out[name] = "done"
            except snworker.ServiceNowError as exc:
                out[name] = type(exc).__name__
        conn.disconnect()
    except snworker.ServiceNowError as exc:
        out["attach"] = type(exc).__name__
    print(json.dumps(out))
""")


def run_client(site: Path, home: Path, address: str, user: str, group: str) -> dict[str, str]:
    result = subprocess.run(
        [*as_user(user, group), SYSTEM_PYTHON, "-c", CLIENT, str(home / "client-secret")],
        env=environment(site, Path("/"), SNWORKER_AGENT=address, SNWORKER_AGENT_USER="daemon"),
        capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
    out: dict[str, str] = json.loads(result.stdout)
    return out


def stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    assert agents.wait_gone(pid, 15)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("allow", "groups"), [
    (("--allow-user", "nobody"), ()),
    (("--allow-group", "nogroup"), ("nogroup",)),  # the agent's user is in the group it serves
])
def test_a_service_agent_serves_allowed_users_and_refuses_others(allow, groups, sn, site,
                                                                  home):
    address, pid = start_agent(sn, site, home, *allow, groups=groups)
    try:
        directory = Path(address).parent
        mode = directory.stat().st_mode & 0o777
        assert mode == (0o750 if groups else 0o711)  # no more open than the allowed need
        served = run_client(site, home, address, "nobody", "nogroup")
        assert served == {"secret": "unreadable", "get": 200,
                          "post": "InvalidRequestError", "other_table": "InvalidRequestError",
                          "stop": "WorkerError"}
        refused = run_client(site, home, address, "bin", "bin")
        assert refused["secret"] == "unreadable"
        assert refused.get("attach") in ("WorkerCrashedError", "WorkerError",
                                         "WorkerStartError"), refused
        assert "get" not in refused
        assert sn.grant_counts["client_credentials"] == 1
        assert sn.grant_counts["authorization_code"] == 0
        assert agents.wait_gone(pid, 0.1) is False, "a client stopped the service agent"
    finally:
        stop(pid)


@pytest.mark.timeout(60)
def test_a_client_refuses_another_users_agent_unless_it_names_that_user(sn, site, home):
    address, pid = start_agent(sn, site, home, "--allow-user", "nobody")
    try:
        code = textwrap.dedent("""
            import snworker
            try:
                snworker.attach()
            except snworker.WorkerStartError as exc:
                print(exc)
        """)
        result = subprocess.run(
            [*as_user("nobody", "nogroup"), SYSTEM_PYTHON, "-c", code],
            env=environment(site, Path("/"), SNWORKER_AGENT=address), capture_output=True,
            text=True, timeout=60, cwd="/")
        assert "refusing the snworker agent" in result.stdout, result.stdout + result.stderr
    finally:
        stop(pid)
