"""README's Python examples, and those of docs/, run as a reader would run them, against the stub.

Each ```python block runs in a process of its own. Blocks that define pytest tests run under
pytest with the stub's plugin; the others run as scripts. Examples written for a real instance
("dev12345", "CLIENT_ID") run against a stub instead: its URL, client id and redirect URI are
put in their place, the system browser is the approve() stand-in (through BROWSER), and a block
that uses a `conn` it does not make gets one. A block preceded by `<!-- README test: not run
(...) -->` is skipped, with its reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from snworker import agent as agents
from snworker.testing import StubServiceNow, approve
from tests.conftest import agent_address, browser_command
from tests.processes import NO_CRYPTOGRAPHY, UNDER_WINE

ROOT = Path(__file__).resolve().parent.parent
SKIP = re.compile(r"<!-- README test: not run \((.*)\) -->")


DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks() -> list[tuple[str, str, str | None]]:
    """(file:line, code, reason not to run) for every python block of README and docs/."""
    found = []
    for document in DOCUMENTS:
        lines = document.read_text().splitlines()
        name = document.relative_to(ROOT).as_posix()
        for index, line in enumerate(lines):
            if line.strip() != "```python":
                continue
            end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
            before = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
            skip = SKIP.search(before)
            found.append((f"{name}:{index + 1}", "\n".join(lines[index + 1:end]),
                          skip and skip.group(1)))
    return found


BLOCKS = blocks()


# What the unattended examples name: a client secret and a JWT signing key, in files of mode
# 600 beside the example, and on the stub the grants, the verifier map entry and the user.
CLIENT_SECRET = "readme-client-secret-0123456789"
SECRET_FILES: dict[str, bytes] = {"sn-client-secret": CLIENT_SECRET.encode()}


def _signing_key() -> dict[str, str]:
    """The verifier map for the examples' key.pem (none without cryptography)."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:
        return {}
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    SECRET_FILES["key.pem"] = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    return {"kid1": key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()}


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory):
    """A stub in its own process standing for "dev12345", and an agent authorized for it."""
    stub = StubServiceNow.start_process(auth=["code", "client_credentials", "jwt"],
                                        client_secret=CLIENT_SECRET,
                                        jwt_verifiers=_signing_key())
    stub.insert("sys_user", {"user_name": "svc.sync", "first_name": "Sync"})
    directory = tmp_path_factory.mktemp("agent")
    info, channel = agents.start(stub.url, stub.client_id, redirect_uri=stub.redirect_uri,
                                 open_browser=approve, idle=120,
                                 address=agent_address(directory))
    channel.release()
    try:
        yield stub, info
    finally:
        try:
            agents.control(info.address, "stop")
        except Exception:
            pass
        stub.close()


def for_the_stub(code: str, stub: object) -> str:
    """The example, pointed at the stub where it names a real instance."""
    url, client_id, redirect = (getattr(stub, name) for name in
                                ("url", "client_id", "redirect_uri"))
    for placeholder, value in (('"dev12345"', url), ('"YOUR_CLIENT_ID"', client_id),
                               ('"CLIENT_ID"', client_id),
                               ('"http://127.0.0.1:8765/callback"', redirect),
                               ('"http://127.0.0.1:8766/callback"', redirect)):
        code = code.replace(placeholder, repr(value))
    prelude = ["import snworker"]
    if "pysnc" in code:
        # pysnc takes only https:// URLs; the stub serves plain HTTP on loopback.
        prelude += ["import pysnc.client",
                    "pysnc.client.get_instance = lambda instance: instance.rstrip('/')"]
    if "pysnc.asyncio" in code:  # its client imported the check by name
        prelude += ["import pysnc.asyncio.client",
                    "pysnc.asyncio.client.get_instance = pysnc.client.get_instance"]
    if re.search(r"\bconn\b", code) and not re.search(r"\bconn\s*(=|:|\))|as conn\b", code):
        prelude.append(f"conn = snworker.connect({url!r}, {client_id!r}, "
                       f"redirect_uri={redirect!r})")
    return "\n".join(prelude) + "\n" + code + "\n"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("line", "code", "skip"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_a_readme_example_runs(line, code, skip, instance, tmp_path):
    if skip:
        pytest.skip(f"{line}: {skip}")
    if UNDER_WINE and ("key.pem" in code or "tls=True" in code):
        pytest.skip(f"Wine limit: {NO_CRYPTOGRAPHY} (the example's key or TLS authority)")
    stub, agent = instance
    for name, content in SECRET_FILES.items():
        (tmp_path / name).write_bytes(content)
        (tmp_path / name).chmod(0o600)
    env = dict(os.environ, BROWSER=browser_command(),
               SNWORKER_AGENT=agent.address)
    stem = re.sub(r"\W", "_", line.removesuffix(".md").replace(".md:", "_line"))
    if re.search(r"^def test_", code, re.MULTILINE):
        source = tmp_path / f"test_{stem}.py"
        source.write_text(textwrap.dedent(code))
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   str(source)]
    else:
        source = tmp_path / f"{stem}.py"
        source.write_text(for_the_stub(textwrap.dedent(code), stub))
        command = [sys.executable, str(source)]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=100)
    assert result.returncode == 0, f"{line}:\n{result.stdout[-3000:]}" \
                                   f"{result.stderr[-3000:]}"


def test_every_example_that_is_not_run_says_why():
    assert any(line.startswith("README.md:") for line, _, _ in BLOCKS), "none in README"
    skipped = [(line, reason) for line, _, reason in BLOCKS if reason]
    assert all(reason.strip() for _, reason in skipped)
    assert len(skipped) <= 2, skipped  # the rest run
