"""The snworker command: demo | stub | request."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import snworker


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="snworker", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="connect to an embedded stub instance and read from it")
    demo.add_argument("--limit", type=int, default=5, help="incidents to show (default 5)")

    stub = commands.add_parser("stub", help="run the stub instance in the foreground")
    stub.add_argument("--host", default="127.0.0.1")
    stub.add_argument("--port", type=int, default=0)
    stub.add_argument("--client-id", default="snworker-test")

    request = commands.add_parser("request", help="one request to a real instance")
    request.add_argument("instance", help="https://<name>.service-now.com or <name>")
    request.add_argument("client_id")
    request.add_argument("path", help="path on the instance, e.g. /api/now/table/incident")
    request.add_argument("-X", "--method", default="GET")
    request.add_argument("-d", "--data", help="JSON body")
    request.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    request.add_argument("--redirect-uri", default="http://127.0.0.1:8765/callback")
    request.add_argument("--timeout", type=float, default=30.0)
    request.add_argument("-v", "--verbose", action="store_true", help="log what both processes do")

    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args.limit)
        if args.command == "stub":
            from snworker.testing.server import run_foreground

            run_foreground(args.host, args.port, args.client_id)
            return 0
        return _request(args)
    except snworker.ServiceNowError as exc:
        print(f"snworker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _demo(limit: int) -> int:
    try:
        from snworker.testing import StubServiceNow, approve
    except ImportError as exc:
        print(f"snworker demo needs the testing extra: pip install 'snworker[testing]' ({exc})",
              file=sys.stderr)
        return 2
    with StubServiceNow() as sn:
        print(f"stub instance at {sn.url}; connecting through a worker process...")
        with snworker.connect(sn.url, sn.client_id, redirect_uri=sn.redirect_uri,
                              open_browser=approve, authorization_timeout=30) as conn:
            user = conn.current_user or {}
            print(f"authorized as {user.get('name')} ({user.get('user_name')}); "
                  f"the tokens live in worker process {conn.worker_pid} only")
            resp = conn.execute_api_request(
                "/api/now/table/incident", "GET",
                params={"sysparm_limit": limit, "sysparm_fields": "number,short_description,state",
                        "sysparm_query": "ORDERBYnumber"},
            )
            print(f"GET /api/now/table/incident -> {resp.status}, "
                  f"{resp.headers.get('X-Total-Count')} incidents in all; the first {limit}:")
            for record in resp.data:
                print(f"  {record['number']}  state {record['state']}  "
                      f"{record['short_description']}")
            created = conn.execute_api_request(
                "/api/now/table/incident", "POST",
                {"short_description": "Created by snworker demo"},
            )
            print(f"POST /api/now/table/incident -> {created.status}, "
                  f"{created.data['number']} ({created.headers.get('Location')})")
        print(f"disconnected; refresh token revoked at the stub ({sn.revocation_count} revocation)")
    return 0


def _request(args: argparse.Namespace) -> int:
    if args.verbose:
        snworker.enable_logging("DEBUG")
    params: dict[str, str] = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            print(f"snworker: --param wants NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        params[name] = value
    data = json.loads(args.data) if args.data else None
    with snworker.connect(args.instance, args.client_id, redirect_uri=args.redirect_uri,
                          request_timeout=args.timeout) as conn:
        resp = conn.execute_api_request(args.path, args.method, data, params=params)
        print(f"HTTP {resp.status}", file=sys.stderr)
        if resp.content:
            parsed = resp.json()
            print(json.dumps(parsed, indent=2) if parsed is not None else
                  resp.content.decode(errors="replace"))
    return 0
