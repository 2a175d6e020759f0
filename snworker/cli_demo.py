"""`snworker demo`: the whole story against a stub instance, in a few seconds, on one screen.

    the demo (this process)  --starts-->  the stub instance: issues and checks the tokens
                             --starts-->  the app: `python -m snworker.cli_demo app URL`
                                             --starts-->  its worker: holds the tokens

The app connects, reads, meets an expired access token and then a revoked grant, prints what
happens, and waits. The demo, which never held a token, then asks the stub for every secret it
issued and looks for each one in the app's memory; then it lets the app disconnect.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
import webbrowser
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING

from snworker.cli_request import stdout_kept_from_browsers

if TYPE_CHECKING:
    from snworker.testing import RemoteStub

# The app's line that says it waits for the memory check, with its worker's pid.
_READY = "@ready"
_APP_TIMEOUT = 30.0  # the app's own waits are bounded; this bounds the demo's wait for it
_CLOCK_STEP = 31 * 60  # past the stub's access token lifespan
_LIFESPAN = 30 * 60


def run_demo(limit: int, browser: bool) -> int:
    """Run the demo; its exit status."""
    try:
        from snworker.testing import StubServiceNow
    except ImportError as exc:
        print(f"snworker demo needs the testing extra: pip install 'snworker[testing]' ({exc})",
              file=sys.stderr)
        return 2
    began = time.monotonic()
    try:
        with StubServiceNow.start_process(access_lifespan=_LIFESPAN) as stub:
            status = _tell(stub, limit, browser)
    except (RuntimeError, OSError) as exc:  # the stub did not start, or stopped answering
        print(f"snworker: the demo's stub instance failed: {exc}", file=sys.stderr, flush=True)
        return 1
    if status == 0:
        print(f"done in {time.monotonic() - began:.1f} s", flush=True)
    return status


def _tell(stub: RemoteStub, limit: int, browser: bool) -> int:
    """Run the app against `stub`, show what it says, and look through its memory."""
    canary = f"planted-{secrets.token_hex(16)}"  # found in the app: the scan sees its memory
    command = [sys.executable, "-m", "snworker.cli_demo", "app", stub.url, str(limit)]
    app = subprocess.Popen([*command, *(["--browser"] if browser else [])],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert app.stdin is not None and app.stdout is not None
    try:
        print(f"snworker demo: stub instance {stub.url} (its own process), app process "
              f"{app.pid}", flush=True)
        app.stdin.write(canary + "\n")
        app.stdin.flush()
        if _echo(app.stdout) is None:
            return _app_status(app) or 1
        clean = _memory_check(app.pid, canary, stub.issued_secrets())
        app.stdin.write("\n")  # the app may disconnect now
        app.stdin.flush()
        _echo(app.stdout)
        return _app_status(app) or (1 if clean is False else 0)
    except BrokenPipeError:  # the app ended early
        return _app_status(app) or 1
    finally:
        _stop(app)


def _echo(lines: IO[str]) -> str | None:
    """Show the app's lines up to its ready line (returned), or to its end (None)."""
    for line in lines:
        if line.startswith(_READY):
            return line
        sys.stdout.write(line)
        sys.stdout.flush()
    return None


def _app_status(app: subprocess.Popen[str]) -> int:
    """0 once the app has exited well; else 1, said in one line."""
    try:
        code = app.wait(_APP_TIMEOUT)
    except subprocess.TimeoutExpired:
        code = None
    if code == 0:
        return 0
    print(f"snworker: the demo's app failed (exit status {code})", file=sys.stderr, flush=True)
    return 1


def _stop(app: subprocess.Popen[str]) -> None:
    """Ask (its stdin closes), then terminate, then kill."""
    for close in (app.stdin, app.stdout):
        try:
            if close is not None:
                close.close()
        except OSError:
            pass
    try:
        app.wait(5)
    except subprocess.TimeoutExpired:
        app.terminate()
        try:
            app.wait(2)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait()


def _memory_check(pid: int, canary: str, issued: list[str]) -> bool | None:
    """Look for every issued secret in the app's memory; False if one is there, None if the
    memory could not be read."""
    if not os.path.exists(f"/proc/{pid}/mem"):
        _say(6, "memory", "the proof reads the app's memory through /proc/<pid>/mem: it needs "
             "Linux; skipped")
        return None
    try:
        found, size = scan_memory(pid, [canary.encode(), *(s.encode() for s in issued)])
    except OSError as exc:
        _say(6, "memory", f"the app's memory cannot be read here ({exc.strerror or exc}); "
             "skipped")
        return None
    if canary.encode() not in found:
        _say(6, "memory", "the app's memory could not be read whole (a string planted in it "
             "was not found); skipped")
        return None
    leaked = len(found) - 1
    _say(6, "memory", f"the stub issued {len(issued)} secrets (codes, verifiers, tokens); "
         f"{size / 2**20:.0f} MB of the app read:")
    if leaked:
        _more(f"{leaked} of them ARE in the app's memory")
        return False
    _more("none of them is there (a string planted in the app is: the scan sees its memory)")
    return True


def scan_memory(pid: int, needles: Iterable[bytes]) -> tuple[set[bytes], int]:
    """The needles found in the readable memory of process `pid` (Linux), and the bytes read."""
    wanted = list(needles)
    found: set[bytes] = set()
    size = 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            size += len(chunk)
            found.update(n for n in wanted if n in chunk)
    return found, size


def _say(step: int, title: str, text: str) -> None:
    print(f"{step:>2} {title:<13} {text}", flush=True)


def _more(text: str) -> None:
    print(f"{'':>16} {text}", flush=True)


# --- the app: an ordinary program that uses snworker -------------------------------------------


def app(url: str, limit: int, browser: bool) -> int:
    """Connect, read, live through a renewal and a revocation, wait, disconnect."""
    import snworker
    from snworker.testing import RemoteStub

    stub = RemoteStub(url)  # the instance's controls: its clock, its grants
    planted = sys.stdin.readline().strip()
    if browser:
        _say(1, "consent", "snworker.connect(): your browser shows the stub's consent page; "
             "click Allow")
    else:
        _say(1, "consent", "snworker.connect(): a stand-in browser clicks Allow on the consent "
             "page")
    # A browser started during a consent must not hold the demo's pipe (our stdout) open.
    consenting = stdout_kept_from_browsers if browser else contextlib.nullcontext
    with consenting():
        conn = snworker.connect(url, stub.client_id, redirect_uri=stub.redirect_uri,
                                open_browser=_your_browser if browser else _stand_in,
                                authorization_timeout=600 if browser else 30)
    _more(f"connected; the tokens are in worker process {conn.worker_pid}, not in the app")
    user = conn.current_user
    _say(2, "current_user", f"{user['name']} ({user['user_name']})" if user else
         "None: this user may not read sys_user")

    resp = conn.execute_api_request("/api/now/table/incident", params={
        "sysparm_limit": limit, "sysparm_fields": "number,short_description",
        "sysparm_query": "ORDERBYnumber"})
    _say(3, "query", f"GET /api/now/table/incident -> {resp.status}: "
         f"{resp.headers.get('X-Total-Count')} incidents; the first {len(resp.data)}:")
    for record in resp.data:
        _more(f"  {record['number']}  {record['short_description']}")

    stub.advance(_CLOCK_STEP)
    _say(4, "renewal", f"the instance's clock moves {_CLOCK_STEP // 60} min on: the "
         f"{_LIFESPAN // 60} min access token has expired")
    resp = conn.execute_api_request("/api/now/table/incident", params={"sysparm_limit": 1})
    _more(f"GET -> {resp.status} all the same: renewed silently (the stub counted "
          f"{stub.grant_counts.get('refresh_token', 0)} refresh grant)")

    stub.revoke_refresh_tokens()
    try:
        conn.execute_api_request("/api/now/table/incident", params={"sysparm_limit": 1})
        _say(5, "revocation", "the grant was revoked at the instance, yet the call worked")
        return 1
    except snworker.AuthTokenExpiredError as exc:
        _say(5, "revocation", f"the grant is revoked at the instance: the next call raises "
             f"{type(exc).__name__}")
    if browser:
        _more("conn.reconnect(): your browser shows the consent page again; click Allow")
    with consenting():
        conn.reconnect()
    resp = conn.execute_api_request("/api/now/table/incident", params={"sysparm_limit": 1})
    _more(f"conn.reconnect(): a second consent; GET -> {resp.status} "
          f"({stub.grant_counts.get('authorization_code', 0)} consents in all)")

    print(f"{_READY} {conn.worker_pid}", flush=True)
    sys.stdin.readline()  # while the demo looks through this process's memory
    del planted  # kept until then
    conn.disconnect()
    _say(7, "disconnect", f"the worker revokes its grant and exits; the stub counted "
         f"{stub.revocation_count} revocations in all")
    return 0


def _stand_in(url: str) -> bool:
    """The browser stand-in, in a process of its own, as the BROWSER variable would run it."""
    result = subprocess.run([sys.executable, "-m", "snworker.testing.browser", "approve", url],
                            stdout=subprocess.DEVNULL, timeout=30, check=False)
    return result.returncode == 0


def _your_browser(url: str) -> bool:
    print(f"{'':>16} consent page: {url}", file=sys.stderr, flush=True)
    return webbrowser.open(url, new=1)


def _main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "app":
        print("usage: python -m snworker.cli_demo app URL LIMIT [--browser]", file=sys.stderr)
        return 2
    try:
        return app(argv[1], int(argv[2]), "--browser" in argv[3:])
    except Exception as exc:  # one line for the demo to show, as the CLI would
        print(f"snworker demo app: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

