"""Agents, from the side of the processes that use them: start, attach, status, stop.

    snworker agent start INSTANCE CLIENT_ID      ->  SNWORKER_AGENT=<address>; export ...
    snworker.attach()                            ->  a ServiceNowConnection served by it
    snworker.connect(..., agent=True)            ->  the same, when one runs for that instance

An agent's address is a Unix socket in a directory only its user can open ($XDG_RUNTIME_DIR,
else the temp directory), or a named pipe on Windows; by default one per instance and client id.
Before a client sends anything, it checks that the address is private to its user and that the
process at the other end runs as that user too, so it never talks to somebody else's agent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from snworker.channel import Channel
from snworker.connection import (
    ServiceNowConnection,
    _browser_runner,
    _open_system_browser,
    authorize_new,
    open_connection,
)
from snworker.errors import InvalidRequestError, ServiceNowError, WorkerError, WorkerStartError
from snworker.grants import Grant
from snworker.messages import Connect, Control, Result
from snworker.pipes import IoMode, Pipe
from snworker.policy import AgentLimits, Policy, RetryPolicy
from snworker.settings import DEFAULT_REDIRECT_URI, connect_settings, seconds

logger = logging.getLogger("snworker")

ENVIRONMENT = "SNWORKER_AGENT"
# The user a service agent runs as: set it to use an agent of another user.
ENVIRONMENT_USER = "SNWORKER_AGENT_USER"
DEFAULT_IDLE = 8 * 3600.0
# The framing agents and their clients speak: sockets are file descriptors on POSIX.
AGENT_IO: IoMode = "conn" if sys.platform == "win32" else "fd"
_CONTROL_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """A running agent: where it listens, and the process that holds its tokens."""

    address: str
    pid: int

    def shell(self) -> str:
        """What `snworker agent start` prints, as ssh-agent does, for the shell to eval."""
        return (f"{ENVIRONMENT}={_quote(self.address)}; export {ENVIRONMENT};\n"
                f"echo snworker agent pid {self.pid};")


def start(
    instance: str,
    client_id: str,
    *,
    redirect_uri: str | Sequence[str] = DEFAULT_REDIRECT_URI,
    scopes: Iterable[str] = (),
    open_browser: Callable[[str], Any] | None = None,
    authorization_timeout: float = 300.0,
    request_timeout: float = 30.0,
    retry: RetryPolicy | None = None,
    ca_bundle: str | os.PathLike[str] | None = None,
    proxy: str | None = None,
    idle: float = DEFAULT_IDLE,
    address: str | None = None,
    foreground: bool = False,
    limits: AgentLimits | None = None,
    grant: Grant | None = None,
    policy: Policy | None = None,
    allow_users: Sequence[str | int] = (),
    allow_groups: Sequence[str | int] = (),
) -> tuple[AgentInfo, Channel]:
    """Start an agent and have the user authorize it once; it then outlives this process.

    The arguments are connect()'s, with `idle`, the seconds without a client after which the
    agent revokes its grant and stops, `address`, where it listens (default: one per
    instance and client id), and `limits`, what its clients may hold (`AgentLimits`' defaults:
    64 clients, a 1 GiB frame each, 2 GiB in all, a 30 s read deadline). Returns the agent,
    and the channel it was started through: let go of it (`channel.release()`), or keep it to
    see the agent's log (`foreground`).

    As a service: `grant` (no browser), `policy` (what every client may send), and the
    `allow_users` and `allow_groups` (names or ids) whose processes it serves besides its own
    user's (POSIX; checked on each client's peer credentials).

    Raises:
        AuthorizationError: the user did not allow access (the agent is stopped).
        WorkerStartError: the agent could not start (for example, one already listens there).
    """
    settings = connect_settings(instance, client_id, redirect_uri=redirect_uri, scopes=scopes,
                                authorization_timeout=authorization_timeout,
                                request_timeout=request_timeout, retry=retry,
                                ca_bundle=ca_bundle, proxy=proxy, grant=grant, policy=policy)
    where = address or default_address(settings.instance_url, settings.client_id)
    fresh = False
    shared = bool(allow_users or allow_groups)  # a service agent opens its directory to them
    if address is None and sys.platform != "win32" and _not_private(where, shared) is not None:
        # Another user made the default directory first: as ssh-agent does, take a fresh
        # private one (clients find it through SNWORKER_AGENT), and say why.
        directory = tempfile.mkdtemp(prefix=f"{os.path.basename(os.path.dirname(where))}-")
        logger.warning("snworker: %s; this agent listens in a fresh private directory, %s, "
                       "instead", _not_private(where, shared), directory)
        where = os.path.join(directory, os.path.basename(where))
        fresh = True
    idle_seconds = seconds(idle, "idle")
    opener = open_browser if open_browser is not None else _open_system_browser
    agent_settings: dict[str, object] = {"address": where, "idle": idle_seconds,
                                         "foreground": foreground,
                                         "limits": (limits or AgentLimits()).to_wire(),
                                         "own_directory": fresh}
    if allow_users or allow_groups:
        agent_settings["allow"] = _allowed_ids(allow_users, allow_groups)
    channel = Channel.start(_browser_runner(opener), AGENT_IO, agent_settings,
                            fds=grant.fds() if grant else ())
    answer = authorize_new(channel, replace(settings, id=channel.next_id()))
    return AgentInfo(where, answer.pid), channel


def attach(
    agent: str | None = None,
    *,
    open_browser: Callable[[str], Any] | None = None,
    authorization_timeout: float = 300.0,
    request_timeout: float = 30.0,
) -> ServiceNowConnection:
    """A connection served by a running agent: `agent`'s address, else SNWORKER_AGENT's.

    The same API, messages and errors as a connection with a worker of its own. Its
    `disconnect()` detaches it and leaves the agent running; its `reconnect()` runs one consent
    for every client of the agent (here, with `open_browser`).

    Raises:
        WorkerStartError: no agent is named, it does not answer, or its address is not private
            to this user.
    """
    address = resolve(agent)
    opener = open_browser if open_browser is not None else _open_system_browser
    channel = Channel.over(open_agent(address), _browser_runner(opener), AGENT_IO)
    return open_connection(channel, attach_message(channel.next_id(), authorization_timeout,
                                                   request_timeout))


def attach_message(ident: int, authorization_timeout: float, request_timeout: float) -> Connect:
    """The Connect of an attach: it names no instance, so the agent's own settings apply to
    any consent it runs."""
    return Connect(ident, "", "", (), (), seconds(authorization_timeout, "authorization_timeout"),
                   seconds(request_timeout, "request_timeout"), RetryPolicy().to_wire(), 0)


def _allowed_ids(users: Sequence[str | int], groups: Sequence[str | int]) -> dict[str, list[int]]:
    """User and group names, or ids, as ids: the agent compares peer credentials with them."""
    if sys.platform == "win32":
        raise InvalidRequestError("serving other users is for Linux and macOS agents")
    import grp
    import pwd

    def ids(names: Sequence[str | int], lookup: Callable[[str], int], what: str) -> list[int]:
        found = []
        for name in names:
            if isinstance(name, int) and not isinstance(name, bool):
                found.append(name)
                continue
            try:
                found.append(int(name) if str(name).isdigit() else lookup(str(name)))
            except KeyError:
                raise InvalidRequestError(f"no such {what}: {name!r}") from None
        return found

    return {"users": ids(users, lambda n: pwd.getpwnam(n).pw_uid, "user"),
            "groups": ids(groups, lambda n: grp.getgrnam(n).gr_gid, "group")}


def default_address(instance_url: str, client_id: str) -> str:
    """The address of the agent for `instance_url` and `client_id`."""
    digest = hashlib.sha256(f"{instance_url}\n{client_id}".encode()).hexdigest()[:16]
    if sys.platform == "win32":
        user = hashlib.sha256(os.environ.get("USERNAME", "").encode()).hexdigest()[:8]
        return rf"\\.\pipe\snworker-agent-{user}-{digest}"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        directory = os.path.join(runtime, "snworker")
    else:
        directory = os.path.join(tempfile.gettempdir(), f"snworker-{os.getuid()}")
    return os.path.join(directory, f"agent-{digest}.sock")


def _not_private(address: str, shared: bool = False) -> str | None:
    """Why the directory of `address` cannot be an agent's, if it cannot (`shared`: a service
    agent's, which others may pass through)."""
    if sys.platform == "win32":
        return None  # a named pipe has no directory
    directory = os.path.dirname(address)
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return None  # the agent makes it, private
    except OSError as exc:
        return f"{directory} cannot be used ({exc.strerror})"
    if not stat.S_ISDIR(info.st_mode):
        return f"{directory} is not a directory"
    if info.st_uid != os.getuid():
        import pwd

        try:
            owner = pwd.getpwuid(info.st_uid).pw_name
        except KeyError:
            owner = str(info.st_uid)
        return f"{directory} belongs to user {owner}"
    if info.st_mode & (0o022 if shared else 0o077):
        return f"{directory} is open to other users (mode {stat.filemode(info.st_mode)})"
    return None


def open_agent(address: str) -> Pipe:
    """A pipe to the agent at `address`, once it is checked to be this user's own (or, with
    SNWORKER_AGENT_USER, to run as that user: a service agent)."""
    if sys.platform == "win32":
        from snworker.agent._win32 import open_agent as open_win32

        return open_win32(address)
    else:
        from snworker.agent._posix import open_agent as open_posix

        return open_posix(address, service_user())


def service_user() -> int | None:
    """The user a service agent runs as, by SNWORKER_AGENT_USER (a name or an id), or None."""
    name = os.environ.get(ENVIRONMENT_USER, "")
    if not name or sys.platform == "win32":
        return None
    import pwd

    try:
        return int(name) if name.isdigit() else pwd.getpwnam(name).pw_uid
    except KeyError:
        raise WorkerStartError(f"{ENVIRONMENT_USER} names no user: {name!r}") from None


def resolve(agent: str | None) -> str:
    """The address named by `agent`, else by SNWORKER_AGENT."""
    address = agent or os.environ.get(ENVIRONMENT, "")
    if not address:
        raise WorkerStartError(
            f"no snworker agent named: pass its address, or set {ENVIRONMENT} (as "
            f"`eval \"$(snworker agent start INSTANCE CLIENT_ID)\"` does)")
    return address


def control(agent: str | None, command: str) -> dict[str, Any]:
    """Send `command` ("status" or "stop") to an agent; its answer, as JSON."""
    channel = Channel.over(open_agent(resolve(agent)), lambda url: None, AGENT_IO)
    try:
        answer = channel.call(Control(channel.next_id(), command), _CONTROL_TIMEOUT)
    finally:
        channel.release()
    if type(answer) is not Result:
        raise WorkerError(f"the agent refused {command!r}: "
                          f"{getattr(answer, 'message', type(answer).__name__)}")
    parsed: dict[str, Any] = json.loads(answer.body) if answer.body else {}
    return parsed


def find(instance_url: str, client_id: str) -> str | None:
    """The address of a running agent for this instance and client id, if there is one."""
    candidates = [os.environ.get(ENVIRONMENT, ""), default_address(instance_url, client_id)]
    for address in dict.fromkeys(c for c in candidates if c):
        try:
            status = control(address, "status")
        except (ServiceNowError, OSError, ValueError):
            continue
        if (status.get("instance"), status.get("client_id")) == (instance_url, client_id):
            return address
    return None


def wait_gone(pid: int, timeout: float) -> bool:
    """True once process `pid` has exited, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


def _alive(pid: int) -> bool:
    if sys.platform == "win32":
        import _winapi

        try:
            handle = _winapi.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        except OSError:
            return False
        try:
            return _winapi.GetExitCodeProcess(handle) == 259  # STILL_ACTIVE
        finally:
            _winapi.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
