"""The `agent` command: start an agent and tell the shell where it is, show its status, stop it.

    eval "$(snworker agent start dev12345 CLIENT_ID --idle 8h)"   # SNWORKER_AGENT=...; export
    snworker agent status [--json]                               # instance, user, token, clients
    snworker agent stop                                          # revokes the grant; it exits

`start` asks for consent once and leaves the agent running (with `--foreground`, it stays to
show the agent's log until the agent exits, and the agent ends with it, however it ends).
`status` and `stop` talk to the agent SNWORKER_AGENT names, or the one `--agent` does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import snworker
from snworker import agent as agents
from snworker.channel import Channel
from snworker.cli_arguments import (
    ENV_AGENT,
    ENV_CLIENT_ID,
    ENV_INSTANCE,
    UsageError,
    add_redirect_uri_argument,
    duration,
    redirect_uris,
    seconds,
)
from snworker.cli_grant import GrantUsageError, add_grant_arguments, grant_from_arguments
from snworker.cli_request import stdout_kept_from_browsers
from snworker.messages import Cancel
from snworker.settings import normalize_instance_url

# An agent revokes its grant (5 s at most) before it exits.
STOP_TIMEOUT = 15.0


class NoAgentError(Exception):
    """No agent answers at the address named (or none is named)."""


def add_agent_commands(commands: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """`agent start|status|stop`, under `commands` (the subparsers of the top parser)."""
    agent = commands.add_parser(
        "agent", help="one consent for all of a user's processes, as ssh-agent",
        description="An agent is one long-lived worker that holds the grant; the user's "
        f"processes use it through a private socket that ${ENV_AGENT} names.")
    common(agent)
    actions = agent.add_subparsers(dest="action", required=True, metavar="ACTION")

    start = actions.add_parser(
        "start", help="start an agent: consent once, then print its address for the shell",
        description="Start an agent and ask for consent once. Prints, as ssh-agent does, "
        f"'{ENV_AGENT}=...; export {ENV_AGENT};' for eval \"$(snworker agent start ...)\".")
    start.add_argument("instance", metavar="INSTANCE", nargs="?",
                       help="https://<name>.service-now.com, <name>.service-now.com or <name> "
                       f"(default: ${ENV_INSTANCE})")
    start.add_argument("client_id", metavar="CLIENT_ID", nargs="?",
                       help=f"the OAuth client id (default: ${ENV_CLIENT_ID})")
    add_redirect_uri_argument(start)
    start.add_argument("--idle", type=duration, default=agents.DEFAULT_IDLE, metavar="DURATION",
                       help="stop and revoke after this long with no client: 8h, 30m, 90s or "
                       "seconds (default 8h)")
    start.add_argument("--foreground", action="store_true",
                       help="stay attached: show the agent's log until it exits; the agent "
                       "ends with this command, however it ends (Ctrl-C, a kill, a closed "
                       "terminal)")
    start.add_argument("--auth-timeout", type=seconds, default=300.0, metavar="SECONDS",
                       help="how long the user has to allow access (default 300)")
    start.add_argument("--address", metavar="PATH",
                       help="where the agent listens (default: one per instance and client id, "
                       "private to this user)")
    add_grant_arguments(start)
    service = start.add_argument_group(
        "as a service (an agent under its own user, for other users' processes)")
    service.add_argument("--allow-user", action="append", default=[], metavar="USER",
                         help="serve this user's processes too (repeatable)")
    service.add_argument("--allow-group", action="append", default=[], metavar="GROUP",
                         help="serve the processes of this group's members too (repeatable)")
    service.add_argument("--read-only", action="store_true",
                         help="policy: GET and HEAD only; the agent refuses every write")
    service.add_argument("--table", action="append", default=[], metavar="TABLE",
                         help="policy: only this table's data (repeatable)")
    service.add_argument("--api", action="append", default=[], metavar="PATH",
                         help="policy: only APIs under this path (repeatable)")
    common(start)
    start.set_defaults(run=_start)

    status = actions.add_parser("status", help="show what an agent serves and for how long")
    status.add_argument("--agent", metavar="ADDRESS", help=f"default: ${ENV_AGENT}")
    status.add_argument("--json", action="store_true", help="the agent's status as JSON")
    common(status)
    status.set_defaults(run=_status)

    stop = actions.add_parser("stop", help="stop an agent: it revokes its grant and exits")
    stop.add_argument("--agent", metavar="ADDRESS", help=f"default: ${ENV_AGENT}")
    common(stop)
    stop.set_defaults(run=_stop)


def _start(args: argparse.Namespace) -> int:
    instance = normalize_instance_url(_given(args.instance, ENV_INSTANCE, "instance"))
    args.client_id = _given(args.client_id, ENV_CLIENT_ID, "client id")
    address = args.address or agents.default_address(instance, args.client_id)
    uris = redirect_uris(args.redirect_uri, os.environ)
    if args.foreground:
        if not args.debug:
            snworker.enable_logging("INFO")  # before the start: the agent logs at this level
    elif (running := _serving(address, instance, args.client_id)) is not None:
        print(f"snworker: an agent for {instance} already runs (pid {running.pid}); "
              "no consent needed", file=sys.stderr, flush=True)
        print(running.shell(), flush=True)
        return 0
    try:
        grant = grant_from_arguments(args)
    except GrantUsageError as exc:
        raise UsageError(str(exc)) from None
    policy = None
    if args.read_only or args.table or args.api:
        policy = snworker.Policy(methods=("GET", "HEAD") if args.read_only else None,
                                 tables=tuple(args.table) or None, apis=tuple(args.api) or None)
    with stdout_kept_from_browsers():
        info, channel = agents.start(instance, args.client_id, redirect_uri=uris,
                                     authorization_timeout=args.auth_timeout, idle=args.idle,
                                     address=args.address, foreground=args.foreground, grant=grant,
                                     policy=policy, allow_users=args.allow_user,
                                     allow_groups=args.allow_group)
    print(info.shell(), flush=True)
    if not args.foreground:
        channel.release()
        return 0
    return _follow(info, channel)


def _given(value: str | None, variable: str, what: str) -> str:
    """A positional argument, else its environment variable."""
    value = value or os.environ.get(variable)
    if not value:
        raise UsageError(f"no {what}: give it as an argument or set {variable}")
    return value


def _serving(address: str, instance: str, client_id: str) -> agents.AgentInfo | None:
    """The agent at `address`, if one answers there for this instance and client id."""
    try:
        status = agents.control(address, "status")
    except (snworker.ServiceNowError, OSError, ValueError):
        return None
    if (status.get("instance"), status.get("client_id")) != (instance, client_id):
        return None
    return agents.AgentInfo(address, int(status["pid"]))


def _follow(info: agents.AgentInfo, channel: Channel) -> int:
    """Show the agent's log until it exits; Ctrl-C asks it to stop, and waits for it."""
    try:
        ended = _wait_for_exit(channel, None)
    except KeyboardInterrupt:
        print(f"snworker: stopping the agent (pid {info.pid})", file=sys.stderr, flush=True)
        try:
            agents.control(info.address, "stop")
        except (snworker.ServiceNowError, OSError, ValueError):
            pass  # it is on its way out already
        ended = _wait_for_exit(channel, STOP_TIMEOUT)
        if ended is None:
            channel.close(0.0)  # terminate, then kill
            raise snworker.WorkerError(f"the agent (pid {info.pid}) did not stop within "
                                       f"{STOP_TIMEOUT:g} s; it was terminated") from None
    channel.close(2.0)
    if isinstance(ended, snworker.WorkerCrashedError) and ended.exitcode:
        raise ended
    print(f"snworker: the agent (pid {info.pid}) stopped", file=sys.stderr, flush=True)
    return 0


def _wait_for_exit(channel: Channel, timeout: float | None) -> snworker.WorkerError | None:
    """Re-emit the agent's log records until it exits; the error its channel ended with.

    Nothing answers a Cancel of a call the agent never saw: waiting for that answer reads the
    starter channel, and so shows the agent's log, until the agent is gone. None when it still
    runs after `timeout` seconds.
    """
    try:
        channel.call(Cancel(channel.next_id()), timeout)
    except snworker.RequestTimeoutError:
        return None
    except snworker.WorkerError as ended:
        return ended
    raise snworker.WorkerError("the agent answered a message that has no answer")


def _status(args: argparse.Namespace) -> int:
    status = _control(args.agent, "status")
    if args.json:
        print(json.dumps(status, indent=2), flush=True)
    else:
        print(describe(status), flush=True)
    return 0


def _stop(args: argparse.Namespace) -> int:
    pid = int(_control(args.agent, "status")["pid"])
    _control(args.agent, "stop")
    if not agents.wait_gone(pid, STOP_TIMEOUT):
        raise snworker.WorkerError(f"the agent (pid {pid}) was asked to stop, and still runs "
                                   f"after {STOP_TIMEOUT:g} s")
    print(f"snworker agent pid {pid} stopped", flush=True)
    return 0


def _control(agent: str | None, command: str) -> dict[str, Any]:
    try:
        return agents.control(agent, command)
    except (snworker.ServiceNowError, OSError, ValueError) as exc:
        raise NoAgentError(str(exc)) from None


def describe(status: dict[str, Any]) -> str:
    """An agent's status, as `snworker agent status` shows it."""
    lines = [f"snworker agent pid {status.get('pid')} at {status.get('address')}"]
    if not status.get("instance"):
        lines.append("  not authorized yet: its first consent is under way")
        return "\n".join(lines)
    user = status.get("user") or {}
    expires_in = status.get("token_expires_in")
    if not status.get("granted"):
        token = "none: the grant ended; the next client to attach is asked to consent again"
    elif expires_in:
        token = f"access token valid for {_for_humans(expires_in)}, renewed as needed"
    else:
        token = "access token expired, renewed at the next request"
    clients = int(status.get("clients") or 0)
    idle = _for_humans(status.get("idle_timeout") or 0)
    if clients:
        attached = f"{clients} attached; stops {idle} after the last one leaves"
    else:
        attached = (f"none attached; stops after {idle} without one "
                    f"({_for_humans(status.get('idle_left') or 0)} left)")
    hardening = status.get("hardening") or {}
    applied = ", ".join(name for name, why in hardening.items() if not why) or "nothing"
    missing = "; ".join(f"not {name} ({why})" for name, why in hardening.items() if why)
    rows = [
        ("instance", f"{status['instance']} (client id {status.get('client_id')})"),
        ("user", f"{user.get('name')} ({user.get('user_name')})" if user else "unknown"),
        ("token", token),
        ("clients", attached),
        ("hardening", applied + (f"; {missing}" if missing else "")),
    ]
    lines += [f"  {name:<10} {text}" for name, text in rows]
    return "\n".join(lines)


def _for_humans(seconds: float) -> str:
    """8h, 7h 59m, 29m 59s, 45s."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"
