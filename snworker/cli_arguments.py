"""The `request` command's arguments, checked into a `RequestPlan` before anything starts.

Every check that can fail runs here, before `connect()` opens a consent page or an agent is
asked anything: the path, method and headers against the allow-lists the worker enforces
(`snworker.checks`), the `-p` syntax, the JSON body, the instance URL and the output file. A typo
never costs a browser round trip.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from snworker import checks
from snworker.agent import ENVIRONMENT
from snworker.cli_grant import GrantUsageError, add_grant_arguments, grant_from_arguments
from snworker.errors import InvalidRequestError
from snworker.grants import Grant
from snworker.settings import DEFAULT_REDIRECT_URI, check_redirect_uri, normalize_instance_url

ENV_AGENT = ENVIRONMENT
ENV_INSTANCE = "SNWORKER_INSTANCE"
ENV_CLIENT_ID = "SNWORKER_CLIENT_ID"
ENV_REDIRECT_URI = "SNWORKER_REDIRECT_URI"
BINARY_TYPE = "application/octet-stream"


class UsageError(Exception):
    """The command line is wrong; nothing was started."""


@dataclass(frozen=True, slots=True)
class RequestPlan:
    """One request (or every page of a list), as the command line asks for it, checked."""

    instance: str | None  # None only with an agent: then it is the agent's
    client_id: str | None  # likewise
    agent: str | None  # the agent SNWORKER_AGENT names, used when it serves this instance
    redirect_uris: tuple[str, ...]
    method: str
    path: str
    params: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes | None
    every_page: bool
    json_lines: bool
    include: bool
    output: str | None  # a file, "-" for raw bytes on stdout, None for stdout as shown
    authorization_timeout: float
    request_timeout: float
    grant: Grant | None = None  # an unattended grant: a worker of its own, no browser


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    """The `request` command's arguments."""
    parser.add_argument("path", metavar="PATH",
                        help="path on the instance, e.g. /api/now/table/incident")
    # The old form `snworker request INSTANCE CLIENT_ID PATH`, kept as a deprecated alias.
    parser.add_argument("old_form", nargs="*", default=[], help=argparse.SUPPRESS)
    target = parser.add_argument_group("instance")
    target.add_argument("--instance", help=f"https://<name>.service-now.com or <name> "
                        f"(default: ${ENV_INSTANCE})")
    target.add_argument("--client-id", help=f"the OAuth client id (default: ${ENV_CLIENT_ID})")
    add_redirect_uri_argument(target)
    target.add_argument("--auth-timeout", type=seconds, default=300.0, metavar="SECONDS",
                        help="how long the user has to allow access (default 300)")
    target.add_argument("--timeout", type=seconds, default=30.0, metavar="SECONDS",
                        help="deadline of each request, retries included (default 30)")
    sent = parser.add_argument_group("request")
    sent.add_argument("-X", "--method", type=str.upper,
                      help="HTTP method (default GET, or POST with a body)")
    body = sent.add_mutually_exclusive_group()
    body.add_argument("-d", "--data", metavar="JSON|@FILE|-",
                      help="JSON body: the text, a file's content, or stdin's")
    body.add_argument("--data-binary", metavar="@FILE|-|TEXT",
                      help="body sent as it is (Content-Type application/octet-stream unless "
                      "-H gives one)")
    sent.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                      help="request header (repeatable)")
    sent.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                      help="query parameter (repeatable; a name given again repeats it)")
    add_grant_arguments(parser)
    shown = parser.add_argument_group("output")
    shown.add_argument("-i", "--include", action="store_true",
                       help="status line and response headers on stderr")
    shown.add_argument("--all", action="store_true",
                       help="follow the Link header's next pages; print one JSON array of "
                       "every record")
    shown.add_argument("--jsonl", action="store_true",
                       help="with --all: one record per line, written as pages arrive")
    shown.add_argument("-o", "--output", metavar="FILE",
                       help="write the body's bytes, as they came, to FILE ('-': stdout)")


def plan_request(args: argparse.Namespace, environ: Mapping[str, str]) -> RequestPlan:
    """Check the command line; raises UsageError or InvalidRequestError."""
    try:
        grant = grant_from_arguments(args)
    except GrantUsageError as exc:
        raise UsageError(str(exc)) from None
    if grant is not None:
        environ = {k: v for k, v in environ.items() if k != ENV_AGENT}  # never an agent's
    instance, client_id, path = _target(args, environ)
    binary = args.data_binary is not None
    has_body = binary or args.data is not None
    method = checks.check_method(args.method or ("POST" if has_body else "GET"))
    if args.all and (method != "GET" or has_body):
        raise UsageError("--all follows the pages of a GET: it takes no body and no other -X")
    if args.jsonl and not args.all:
        raise UsageError("--jsonl goes with --all")
    return RequestPlan(
        instance=normalize_instance_url(instance) if instance else None,
        client_id=client_id,
        agent=environ.get(ENV_AGENT) or None,
        redirect_uris=redirect_uris(args.redirect_uri, environ),
        method=method,
        path=checks.check_path(path),
        params=_params(args.param),
        headers=_headers(args.header, BINARY_TYPE if binary else None),
        output=_output(args.output),
        body=_body(args),  # last: it may read stdin
        every_page=args.all,
        json_lines=args.jsonl,
        include=args.include,
        authorization_timeout=args.auth_timeout,
        request_timeout=args.timeout,
        grant=grant,
    )


def add_redirect_uri_argument(parser: argparse._ActionsContainer) -> None:
    """`--redirect-uri URL`, repeatable."""
    parser.add_argument("--redirect-uri", action="append", metavar="URL",
                        help="a registered loopback redirect URL; repeat it to give several "
                        "(the first whose port is free is used); default: "
                        f"${ENV_REDIRECT_URI} (comma-separated), else {DEFAULT_REDIRECT_URI}")


def redirect_uris(flags: list[str] | None, environ: Mapping[str, str]) -> tuple[str, ...]:
    """The --redirect-uri flags, else SNWORKER_REDIRECT_URI, else the default; checked.

    The variable takes several URLs separated by commas, as the OAuth application's form on
    the instance lists them.
    """
    if flags:
        source, uris = "--redirect-uri", tuple(flags)
    else:
        source = ENV_REDIRECT_URI
        uris = tuple(u.strip() for u in environ.get(ENV_REDIRECT_URI, "").split(",") if u.strip())
    for uri in uris:
        try:
            check_redirect_uri(uri)
        except InvalidRequestError as exc:
            raise UsageError(f"{source}: {str(exc).replace('redirect_uri', 'each URL')}") \
                from None
    return uris or (DEFAULT_REDIRECT_URI,)


def _target(args: argparse.Namespace,
            environ: Mapping[str, str]) -> tuple[str | None, str | None, str]:
    """Instance, client id and path: flags, else the environment; an agent may stand for both."""
    instance = args.instance or environ.get(ENV_INSTANCE)
    client_id = args.client_id or environ.get(ENV_CLIENT_ID)
    path = args.path
    if args.old_form:
        if len(args.old_form) != 2 or args.instance or args.client_id:
            raise UsageError("expected one PATH; give the instance and client id with "
                             "--instance and --client-id")
        instance, (client_id, path) = args.path, args.old_form
        print("snworker: note: 'request INSTANCE CLIENT_ID PATH' is deprecated; use "
              f"'request PATH' with --instance/--client-id or ${ENV_INSTANCE}/${ENV_CLIENT_ID}",
              file=sys.stderr)
    if environ.get(ENV_AGENT):
        return instance or None, client_id or None, path
    if not instance:
        raise UsageError(f"no instance: give --instance or set {ENV_INSTANCE}")
    if not client_id:
        raise UsageError(f"no client id: give --client-id or set {ENV_CLIENT_ID}")
    return instance, client_id, path


def _body(args: argparse.Namespace) -> bytes | None:
    if args.data is not None:
        return _json(_read(args.data, "-d"), args.data)
    if args.data_binary is not None:
        return _read(args.data_binary, "--data-binary")
    return None


def _read(source: str, flag: str) -> bytes:
    """The bytes a body argument names: @FILE, - (stdin), or the text itself."""
    if source == "-":
        return sys.stdin.buffer.read()
    if source.startswith("@"):
        try:
            with open(source[1:], "rb") as file:
                return file.read()
        except OSError as exc:
            raise UsageError(f"{flag}: cannot read {source[1:]!r}: {exc.strerror or exc}") \
                from None
    return os.fsencode(source)


def _json(raw: bytes, source: str) -> bytes:
    """`raw` as it is, once it is known to be one JSON value in UTF-8."""
    where = "stdin" if source == "-" else source[1:] if source.startswith("@") else "the text"
    try:
        json.loads(raw.decode("utf-8"), parse_constant=_not_json)
    except UnicodeDecodeError:
        raise UsageError(f"-d: the body from {where} is not UTF-8; use --data-binary for bytes") \
            from None
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"-d: the body from {where} is not JSON ({exc}); use --data-binary "
                         "to send it as it is") from None
    return raw


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not a JSON value")


def _headers(items: list[str], content_type: str | None) -> dict[str, str]:
    pairs: list[tuple[object, object]] = []
    for item in items:
        name, colon, value = item.partition(":")
        if not colon or not name.strip():
            raise UsageError(f"-H wants 'Name: value', got {item!r}")
        pairs.append((name.strip(), value.strip()))
    headers = dict(checks.check_headers(pairs))
    if content_type and not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = content_type
    return headers


def _params(items: list[str]) -> dict[str, list[str]]:
    """`-p` values by name; a name given again adds a value (sent as a repeated parameter)."""
    params: dict[str, list[str]] = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise UsageError(f"-p wants NAME=VALUE, got {item!r}")
        params.setdefault(name, []).append(value)
    return params


def _output(name: str | None) -> str | None:
    if name in (None, "-"):
        return name
    folder = os.path.dirname(os.path.abspath(name))
    if not os.path.isdir(folder):
        raise UsageError(f"-o: no such folder: {folder}")
    return name


def seconds(text: str) -> float:
    """A positive number of seconds, as an argument type."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def duration(text: str) -> float:
    """`8h`, `30m`, `90s`, `1h30m` or plain seconds, as an argument type; in seconds."""
    compact = text.strip().lower()
    if compact and not _DURATION_PART.sub("", compact):
        value = sum(float(number) * _UNIT_SECONDS[unit]
                    for number, unit in _DURATION_PART.findall(compact))
    else:
        try:
            value = float(compact)
        except ValueError:
            value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"not a positive duration (such as 8h, 30m, 90s, or seconds): {text!r}")
    return value
