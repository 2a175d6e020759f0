"""The snworker command: request | agent | stub | demo.

`snworker request PATH` sends one request through a worker or an agent (or, with --all, every
page of a list); `cli_arguments.py` checks its command line, `cli_request.py` carries it out.
`snworker agent start|status|stop` is `cli_agent.py`, `snworker demo` is `cli_demo.py`. Each
failure ends as one line on stderr and an exit status by the class of the error, never by its
text.
"""

from __future__ import annotations

import argparse
import enum
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

import snworker
from snworker.cli_agent import NoAgentError, add_agent_commands
from snworker.cli_arguments import (
    ENV_REDIRECT_URI,
    UsageError,
    add_request_arguments,
    plan_request,
)
from snworker.cli_demo import run_demo
from snworker.cli_request import PagingError, run_request

VERSION = f"snworker {snworker.__version__}"


class ExitStatus(enum.IntEnum):
    """The command's exit statuses, as README's "Command line" lists them."""

    OK = 0
    API = 1  # the instance answered with an error, or the network failed
    USAGE = 2  # the command line is wrong, or names a request snworker refuses
    AUTHORIZATION = 3  # no consent, or the grant ran out
    WORKER = 4  # the worker could not start, died, or answered nonsense
    INTERRUPTED = 130  # Ctrl-C
    BROKEN_PIPE = 141  # stdout was closed early (`| head`), as a shell reports SIGPIPE


# Checked in order: the first class an error is an instance of gives the status and the prefix
# of its line on stderr.
_STATUS_BY_ERROR: tuple[tuple[type[Exception], ExitStatus, str], ...] = (
    (UsageError, ExitStatus.USAGE, ""),
    (NoAgentError, ExitStatus.WORKER, ""),
    (snworker.InvalidRequestError, ExitStatus.USAGE, "refused: "),
    (snworker.ApiRequestError, ExitStatus.API, ""),
    (PagingError, ExitStatus.API, ""),
    (snworker.AuthorizationError, ExitStatus.AUTHORIZATION, "authorization failed: "),
    (snworker.AuthTokenExpiredError, ExitStatus.AUTHORIZATION, "authorization expired: "),
    (snworker.WorkerError, ExitStatus.WORKER, "worker failed: "),
    (snworker.ServiceNowError, ExitStatus.WORKER, "worker failed: "),
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, with exit status 2."""

    def error(self, message: str) -> NoReturn:
        if message.endswith(("required: COMMAND", "required: ACTION")):
            self.print_help(sys.stderr)  # a bare `snworker` (or `snworker agent`): what there is
        raise UsageError(f"{message} (see '{self.prog} --help')")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    debug = False
    try:
        args = _parser().parse_args(argv)
        debug = args.debug
        if debug:
            snworker.enable_logging("DEBUG")
        return int(args.run(args))
    except KeyboardInterrupt:
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        # Nothing more can reach the reader; keep the interpreter's final flush quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitStatus.BROKEN_PIPE
    except (UsageError, NoAgentError, PagingError, snworker.ServiceNowError) as exc:
        return _fail(exc, debug)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="snworker", description="Use a ServiceNow instance through a worker "
                     "process that holds the OAuth tokens.")
    _add_common(parser)
    parser.set_defaults(debug=False)  # on the top parser only: a subparser's would override
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    request = commands.add_parser(
        "request", help="send a request to an instance and print the answer",
        description="Send one request to the instance (or, with --all, fetch every page of a "
        "list) and print the answer. Exit status: 0 ok, 1 API error, 2 usage, "
        "3 authorization, 4 worker.")
    add_request_arguments(request)
    _add_common(request)
    request.set_defaults(run=lambda args: run_request(plan_request(args, os.environ)))

    add_agent_commands(commands, _add_common)

    stub = commands.add_parser("stub", help="run the stub instance in the foreground")
    stub.add_argument("--host", default="127.0.0.1")
    stub.add_argument("--port", type=int, default=0)
    stub.add_argument("--client-id", default="snworker-test")
    stub.add_argument("--auth", default="code", metavar="METHODS",
                      help="how clients may sign in, comma-separated: code, basic, password, "
                           "client-credentials, jwt, as StubServiceNow's auth= (default: code)")
    stub.add_argument("--client-secret", default=None, metavar="SECRET",
                      help="the client's secret (for the password and client-credentials grants)")
    stub.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD",
                      help="a user who signs in with this password (repeatable)")
    stub.add_argument("--access-lifespan", type=float, default=1800, metavar="SECONDS")
    stub.add_argument("--consent", choices=("ask", "allow", "deny"), default="ask")
    stub.add_argument("--no-seed", dest="seed", action="store_false",
                      help="start without the seed records")
    stub.add_argument("--application-user", default="admin", metavar="USER_NAME",
                      help="the OAuth Application User client-credentials tokens act as "
                           "(default: admin; 'none': none named, and the grant is refused)")
    stub.add_argument("--jwt-verifier", action="append", default=[], metavar="KID=FILE",
                      help="a JWT verifier map entry: its key id, and a file with its PEM "
                           "certificate or public key, or its shared key (repeatable)")
    stub.add_argument("--jwt-user-field", choices=("user_name", "email", "sys_id"),
                      default="user_name", help="the user field a JWT's subject names")
    stub.add_argument("--tls", action="store_true",
                      help="serve https with a certificate from a local authority; the ready "
                           "line gives the authority's PEM file as ca_file=")
    _add_common(stub)
    stub.set_defaults(run=_stub)

    demo = commands.add_parser(
        "demo", help="the whole story against a stub instance, in a few seconds",
        description="Against a stub instance in its own process, an app in another connects "
        "(consent), reads, has its access token renewed, its grant revoked and renewed by "
        "reconnect(); then its memory is searched for every secret the stub issued.")
    demo.add_argument("--limit", type=int, default=3, help="incidents to show (default 3)")
    demo.add_argument("--browser", action="store_true",
                      help="show the consent page in your browser instead of a stand-in")
    _add_common(demo)
    demo.set_defaults(run=lambda args: run_demo(args.limit, args.browser))
    return parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=VERSION)
    parser.add_argument("--debug", "-v", "--verbose", action="store_true",
                        default=argparse.SUPPRESS,
                        help="log what both processes do; show tracebacks")


def _fail(exc: Exception, debug: bool) -> int:
    """Report `exc` in one line (with its traceback first under --debug); its exit status."""
    status, prefix = next((status, prefix) for kind, status, prefix in _STATUS_BY_ERROR
                          if isinstance(exc, kind))
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"snworker: {prefix}{_one_line(exc)}", file=sys.stderr, flush=True)
    return status


# Advice written for a program, and what a command-line user does instead.
_COMMAND_LINE_WORDS = (
    ("pass them all as redirect_uri=[...]",
     f"give each with --redirect-uri (repeated), or all in ${ENV_REDIRECT_URI}, comma-separated"),
    ("; call conn.reconnect()", "; run the command again to sign in again"),
)


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    for python, command_line in _COMMAND_LINE_WORDS:
        text = text.replace(python, command_line)
    if isinstance(exc, snworker.ApiRequestError) and exc.detail:
        text += f" ({' '.join(exc.detail.split())})"
    if isinstance(exc, snworker.AuthorizationError):
        text += f" [{exc.reason}]"
    return text


def _stub(args: argparse.Namespace) -> int:
    try:
        from snworker.testing.server import run_foreground
    except ImportError as exc:
        raise UsageError("snworker stub needs the testing extra: "
                         f"pip install 'snworker[testing]' ({exc})") from None
    users = []
    for entry in args.user:
        name, colon, password = entry.partition(":")
        if not (name and colon and password):
            raise UsageError(f"--user takes NAME:PASSWORD, not {entry!r}")
        users.append((name, password))
    verifiers = {}
    for entry in args.jwt_verifier:
        kid, equals, path = entry.partition("=")
        if not (kid and equals and path):
            raise UsageError(f"--jwt-verifier takes KID=FILE, not {entry!r}")
        try:
            with open(path, encoding="utf-8") as key:
                verifiers[kid] = key.read().strip()
        except (OSError, ValueError) as exc:
            raise UsageError(f"--jwt-verifier {kid}: cannot read {path} ({exc})") from None
    settings = {
        "host": args.host, "port": args.port, "client_id": args.client_id,
        "auth": tuple(m.strip().replace("-", "_") for m in args.auth.split(",") if m.strip()),
        "client_secret": args.client_secret, "users": tuple(users),
        "access_lifespan": args.access_lifespan, "consent": args.consent, "seed": args.seed,
        "tls": args.tls,
        "application_user": None if args.application_user == "none" else args.application_user,
        "jwt_verifiers": verifiers, "jwt_user_field": args.jwt_user_field,
    }
    try:
        run_foreground(**settings)
    except ValueError as exc:
        raise UsageError(f"snworker stub: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot serve the stub on {args.host}:{args.port}: "
                         f"{exc.strerror or exc}") from None
    return ExitStatus.OK
