"""Unattended grants: client credentials and JWT bearer, secrets by reference, named mistakes.

Real worker processes against the stub on a real socket; the cron-like runs are subprocesses
with no browser at all (no BROWSER, no DISPLAY, no terminal).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

import snworker
from snworker.testing import StubServiceNow, platform
from tests.processes import NO_CRYPTOGRAPHY, UNDER_WINE, linux_only

pytest.importorskip("cryptography")
if UNDER_WINE:
    pytest.skip(f"Wine limit: {NO_CRYPTOGRAPHY}", allow_module_level=True)

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

INCIDENTS = "/api/now/table/incident"
CLIENT_SECRET = "cs-" + secrets.token_urlsafe(24)
KID = "snworker-kid-1"
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="file modes and descriptors")


def private_pem(key: Any) -> bytes:
    return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


def public_pem(key: Any) -> str:
    return str(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())


@pytest.fixture(scope="module")
def rsa_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_secret(path: Path, data: bytes | str, mode: int = 0o600) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)
    return path


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    return write_secret(tmp_path / "client-secret", CLIENT_SECRET + "\n")


@pytest.fixture
def key_file(tmp_path: Path, rsa_key: Any) -> Path:
    return write_secret(tmp_path / "key.pem", private_pem(rsa_key))


@pytest.fixture
def cc_stub() -> Iterator[StubServiceNow]:
    with StubServiceNow(auth=("client_credentials",), client_secret=CLIENT_SECRET) as sn:
        yield sn


@pytest.fixture
def jwt_stub(rsa_key: Any) -> Iterator[StubServiceNow]:
    with StubServiceNow(auth=("jwt",), client_secret=CLIENT_SECRET,
                        jwt_verifiers={KID: public_pem(rsa_key)}) as sn:
        yield sn


def client_credentials(path: Path) -> snworker.ClientCredentials:
    return snworker.ClientCredentials(secret=snworker.Secret.file(path))


def jwt_bearer(key: Path, secret: Path | None, **kwargs: Any) -> snworker.JwtBearer:
    kwargs.setdefault("key_id", KID)
    kwargs.setdefault("subject", "admin")
    return snworker.JwtBearer(key=snworker.Secret.file(key),
                              client_secret=snworker.Secret.file(secret) if secret else None,
                              **kwargs)


def connect(sn: StubServiceNow, grant: Any, **kwargs: Any) -> snworker.ServiceNowConnection:
    # A browser that fails the test if it is ever asked; a long authorization timeout, so
    # that a mistake that is not named at once makes the test time out.
    def no_browser(url: str) -> None:
        raise AssertionError(f"an unattended grant opened a browser: {url}")

    kwargs.setdefault("authorization_timeout", 300)
    return snworker.connect(sn.url, sn.client_id, grant=grant, open_browser=no_browser,
                            **kwargs)


def no_browser_environment() -> dict[str, str]:
    """A cron job's environment: no browser, no display, no terminal."""
    keep = ("PATH", "HOME", "LANG", "SYSTEMROOT", "TEMP", "TMP")
    return {k: v for k, v in os.environ.items() if k in keep}


# --- each grant, run as a cron job would ---------------------------------------------------


CRON_JOB = textwrap.dedent("""
    import json, sys, snworker
    url, client_id, kind, secret, key = sys.argv[1:6]
    s = snworker.Secret.file
    if kind == "cc":
        grant = snworker.ClientCredentials(secret=s(secret))
    else:
        grant = snworker.JwtBearer(key=s(key), key_id=sys.argv[6], subject="admin",
                                   client_secret=s(secret))
    with snworker.connect(url, client_id, grant=grant) as conn:
        resp = conn.execute_api_request("/api/now/table/incident", params={"sysparm_limit": 1})
        print(json.dumps({"status": resp.status, "user": conn.current_user["user_name"]}))
""")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["cc", "jwt"])
def test_a_cron_job_runs_each_grant_without_a_browser(kind, cc_stub, jwt_stub, secret_file,
                                                       key_file, tmp_path):
    sn = cc_stub if kind == "cc" else jwt_stub
    env = no_browser_environment()
    assert "BROWSER" not in env and "DISPLAY" not in env
    result = subprocess.run(
        [sys.executable, "-c", CRON_JOB, sn.url, sn.client_id, kind, str(secret_file),
         str(key_file), KID], env=env, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=50, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"status": 200, "user": "admin"}
    grant = "client_credentials" if kind == "cc" else "jwt_bearer"
    assert sn.grant_counts[grant] == 1
    assert sn.grant_counts["authorization_code"] == 0


@pytest.mark.timeout(60)
def test_the_cli_runs_a_request_with_client_credentials_for_cron(cc_stub, secret_file,
                                                                   tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "snworker", "request", INCIDENTS, "-p", "sysparm_limit=1",
         "-p", "sysparm_fields=number", "--instance", cc_stub.url, "--client-id",
         cc_stub.client_id, "--grant", "client-credentials", "--client-secret-file",
         str(secret_file)], env=no_browser_environment(), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=50, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["result"][0]["number"].startswith("INC")
    assert cc_stub.grant_counts["client_credentials"] == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("algorithm", ["RS256", "ES384", "HS256"])
def test_jwt_bearer_signs_with_each_family_of_algorithms(algorithm, tmp_path, secret_file):
    if algorithm.startswith("RS"):
        key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem, verifier = private_pem(key), public_pem(key)
    elif algorithm.startswith("ES"):
        key = ec.generate_private_key(ec.SECP384R1())
        pem, verifier = private_pem(key), public_pem(key)
    else:
        verifier = secrets.token_urlsafe(48)
        pem = verifier.encode()
    key_path = write_secret(tmp_path / "key", pem)
    # A public client: no client secret.
    with StubServiceNow(auth=("jwt",), jwt_verifiers={KID: verifier}) as sn:
        with connect(sn, jwt_bearer(key_path, None, algorithm=algorithm)) as conn:
            assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
        assert sn.grant_counts["jwt_bearer"] == 1


# --- renewal: the grant runs again, single-flight, with a fresh jti -------------------------


@pytest.mark.timeout(60)
def test_the_worker_runs_the_grant_again_on_a_401_once_for_many_threads(jwt_stub, key_file,
                                                                          secret_file):
    with connect(jwt_stub, jwt_bearer(key_file, secret_file)) as conn:
        jwt_stub.expire_access_tokens()
        statuses: list[int] = []

        def call() -> None:
            statuses.append(conn.execute_api_request(INCIDENTS,
                                                     params={"sysparm_limit": 1}).status)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert statuses == [200] * 8
        assert jwt_stub.grant_counts["jwt_bearer"] == 2  # the first, and one renewal
        assert jwt_stub.grant_counts["refresh_token"] == 0
    # Every assertion had its own jti (the stub refuses a replay; and here they differ).
    assertions = [s for s in jwt_stub.issued_secrets() if s.count(".") == 2]
    jtis = [json.loads(base64.urlsafe_b64decode(a.split(".")[1] + "=="))["jti"]
            for a in assertions]
    assert len(jtis) == 2 and len(set(jtis)) == 2


@pytest.mark.timeout(60)
def test_the_worker_renews_before_expiry_without_a_refresh_token(secret_file):
    with StubServiceNow(auth=("client_credentials",), client_secret=CLIENT_SECRET,
                        access_lifespan=3) as sn:
        with connect(sn, client_credentials(secret_file)) as conn:
            assert sn.grant_counts["client_credentials"] == 1
            time.sleep(2.5)  # the token (expires_in 2 s) is past its renewal margin
            assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
            assert sn.grant_counts["client_credentials"] == 2
            # Renewed before use: the instance never had to refuse a token.
            assert not [r for r in sn.requests if r.get("status") == 401]
        assert sn.grant_counts["refresh_token"] == 0


@pytest.mark.timeout(60)
def test_a_grant_refused_at_renewal_ends_the_connection_with_the_cause_named(cc_stub,
                                                                               secret_file):
    conn = connect(cc_stub, client_credentials(secret_file))
    try:
        cc_stub.register_client(cc_stub.client_id, [cc_stub.redirect_uri],
                                client_secret="rotated-" + secrets.token_hex(8))
        cc_stub.expire_access_tokens()
        with pytest.raises(snworker.AuthTokenExpiredError, match="client secret is wrong"):
            conn.execute_api_request(INCIDENTS)
        # The secret is fixed on the instance again: reconnect() runs the grant, no browser.
        cc_stub.register_client(cc_stub.client_id, [cc_stub.redirect_uri],
                                client_secret=CLIENT_SECRET)
        conn.reconnect()
        assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
    finally:
        conn.disconnect()


# --- each setup mistake ends connect() at once, named ---------------------------------------


@pytest.mark.timeout(60)
def test_the_grant_switched_off_is_named(secret_file):
    with (StubServiceNow(auth=("code",), client_secret=CLIENT_SECRET) as sn,
          pytest.raises(snworker.AuthorizationError) as caught):
        connect(sn, client_credentials(secret_file))
    assert caught.value.reason == "grant_disabled"
    assert "glide.oauth.inbound.client.credential.grant_type.enabled" in str(caught.value)


@pytest.mark.timeout(60)
def test_no_application_user_is_named(secret_file):
    with (StubServiceNow(auth=("client_credentials",), client_secret=CLIENT_SECRET,
                         application_user=None) as sn,
          pytest.raises(snworker.AuthorizationError) as caught):
        connect(sn, client_credentials(secret_file))
    assert caught.value.reason == "no_application_user"
    assert "OAuth Application User" in str(caught.value)


@pytest.mark.timeout(60)
def test_a_wrong_client_secret_is_named(cc_stub, tmp_path):
    wrong = write_secret(tmp_path / "wrong", "not-the-secret")
    with pytest.raises(snworker.AuthorizationError) as caught:
        connect(cc_stub, client_credentials(wrong))
    assert caught.value.reason == "invalid_client"
    assert "client secret" in str(caught.value)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("change", "reason", "named"), [
    ({"key_id": "another-kid"}, "unknown_key", "key_id"),
    ({"subject": "no.such.user"}, "unknown_subject", "subject"),
])
def test_a_jwt_setting_that_matches_nothing_is_named(change, reason, named, jwt_stub, key_file,
                                                     secret_file):
    with pytest.raises(snworker.AuthorizationError) as caught:
        connect(jwt_stub, jwt_bearer(key_file, secret_file, **change))
    assert caught.value.reason == reason
    assert named in str(caught.value)


@pytest.mark.timeout(60)
def test_a_key_that_is_not_the_verifiers_is_named(jwt_stub, secret_file, tmp_path):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = write_secret(tmp_path / "other.pem", private_pem(other))
    with pytest.raises(snworker.AuthorizationError) as caught:
        connect(jwt_stub, jwt_bearer(key, secret_file))
    assert caught.value.reason == "bad_signature"
    assert "verifier map entry" in str(caught.value)


@pytest.mark.timeout(60)
def test_an_expired_assertion_is_named(jwt_stub, key_file, secret_file):
    jwt_stub.advance(3600)  # the instance's clock an hour ahead of this machine's
    with pytest.raises(snworker.AuthorizationError) as caught:
        connect(jwt_stub, jwt_bearer(key_file, secret_file))
    assert caught.value.reason == "assertion_expired"
    assert "clock" in str(caught.value)


@pytest.mark.timeout(60)
def test_a_replayed_assertion_is_refused_by_the_stub_and_named_by_the_worker(
        jwt_stub, key_file, secret_file):
    from snworker.worker.unattended import UnattendedGrant

    with connect(jwt_stub, jwt_bearer(key_file, secret_file)):
        pass
    [assertion] = [s for s in jwt_stub.issued_secrets() if s.count(".") == 2]
    form = {"grant_type": platform.JWT_BEARER_GRANT, "client_id": jwt_stub.client_id,
            "client_secret": CLIENT_SECRET, "assertion": assertion}
    answer = requests.post(f"{jwt_stub.url}/oauth_token.do", data=form, timeout=10)
    assert answer.status_code == 401
    # The worker's reading of that answer (its mapping of a refusal, fed the stub's bytes).
    grant = UnattendedGrant.__new__(UnattendedGrant)
    grant._jwt = object()  # type: ignore[assignment]
    refusal = grant._refusal(answer.status_code, answer.json())
    assert refusal.detail == "assertion_replayed"
    assert "jti" in refusal.message


@posix_only
@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_a_secret_file_others_can_read_is_refused_unsent(mode, cc_stub, tmp_path):
    shared = write_secret(tmp_path / "shared", CLIENT_SECRET, mode)
    with pytest.raises(snworker.AuthorizationError) as caught:
        connect(cc_stub, client_credentials(shared))
    assert caught.value.reason == "secret_unreadable"
    assert "chmod 600" in str(caught.value)
    assert cc_stub.grant_counts["client_credentials"] == 0
    assert not [r for r in cc_stub.requests if r["path"] == "/oauth_token.do"]


@pytest.mark.timeout(60)
def test_a_missing_secret_or_a_key_that_is_not_pem_is_named(jwt_stub, secret_file, tmp_path):
    with pytest.raises(snworker.AuthorizationError) as caught:
        connect(jwt_stub, client_credentials(tmp_path / "absent"))
    assert caught.value.reason == "secret_unreadable"
    assert "absent" in str(caught.value)
    not_pem = write_secret(tmp_path / "key.txt", "just text, not a key")
    with pytest.raises(snworker.AuthorizationError) as caught:
        connect(jwt_stub, jwt_bearer(not_pem, secret_file))
    assert caught.value.reason == "secret_unreadable"
    assert "PEM private key" in str(caught.value)


def test_a_secret_itself_is_refused_in_the_parent():
    with pytest.raises(snworker.InvalidRequestError, match="not the secret itself"):
        snworker.ClientCredentials(secret=CLIENT_SECRET)  # type: ignore[arg-type]
    with pytest.raises(snworker.InvalidRequestError, match="algorithm"):
        snworker.JwtBearer(key=snworker.Secret.file("k"), key_id="k", subject="s",
                           algorithm="none")  # type: ignore[arg-type]


# --- the other references ---------------------------------------------------------------


@posix_only
@pytest.mark.timeout(60)
def test_a_secret_passed_by_descriptor(cc_stub):
    read_end, write_end = os.pipe()
    os.write(write_end, CLIENT_SECRET.encode())
    os.close(write_end)
    try:
        grant = snworker.ClientCredentials(secret=snworker.Secret.fd(read_end))
        with connect(cc_stub, grant) as conn:
            assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
    finally:
        os.close(read_end)


@posix_only
@pytest.mark.timeout(60)
def test_only_a_descriptor_passed_at_start_is_read(cc_stub):
    # Code in the application asks a worker to read its own descriptors (its pipe, its
    # parent-death pipe) as the secret: each is refused, named, and the worker goes on.
    from snworker.channel import Channel
    from snworker.messages import Error
    from snworker.settings import connect_settings

    settings = connect_settings(cc_stub.url, cc_stub.client_id)
    channel = Channel.start(lambda url: None)
    try:
        for fd in range(3, 12):
            message = replace(settings, id=channel.next_id(),
                              grant=("client_credentials", ("fd", fd)))
            answer = channel.call(message, 30)
            assert type(answer) is Error and answer.detail == "secret_unreadable", answer
            assert "was not passed to the worker" in answer.message
        assert cc_stub.grant_counts["client_credentials"] == 0
    finally:
        channel.close(2.0)


@posix_only
@pytest.mark.timeout(60)
def test_a_descriptor_whose_writer_never_closes_is_named_not_waited_for(cc_stub):
    read_end, write_end = os.pipe()
    try:
        grant = snworker.ClientCredentials(secret=snworker.Secret.fd(read_end))
        with pytest.raises(snworker.AuthorizationError) as caught:
            connect(cc_stub, grant, request_timeout=1)
        assert caught.value.reason == "secret_unreadable"
        assert "end of file" in str(caught.value)
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.timeout(60)
def test_a_systemd_credential(cc_stub, tmp_path, monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    write_secret(credentials / "sn-secret", CLIENT_SECRET, 0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    grant = snworker.ClientCredentials(secret=snworker.Secret.systemd("sn-secret"))
    with connect(cc_stub, grant) as conn:
        assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(snworker.AuthorizationError, match="CREDENTIALS_DIRECTORY"):
        connect(cc_stub, grant)


@pytest.mark.skipif(sys.platform == "win32", reason="the keyring's configuration is under HOME")
@pytest.mark.timeout(60)
def test_a_keyring_entry(cc_stub, tmp_path, monkeypatch):
    # A keyring backend that needs no desktop session (a file): the worker reads the entry
    # with the keyring package, as it reads the desktop's keyring on a desktop.
    keyring = pytest.importorskip("keyring")
    pytest.importorskip("keyrings.alt")
    monkeypatch.setenv("HOME", str(tmp_path))  # the worker's keyring configuration is here
    configuration = tmp_path / ".config" / "python_keyring"
    configuration.mkdir(parents=True)
    (configuration / "keyringrc.cfg").write_text(
        "[backend]\ndefault-keyring=keyrings.alt.file.PlaintextKeyring\n")
    from keyrings.alt.file import PlaintextKeyring

    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / ".local" / "share" / "python_keyring" /
                            "keyring_pass.cfg")
    keyring.set_keyring(backend)
    keyring.set_password("snworker-test", "svc", CLIENT_SECRET)
    grant = snworker.ClientCredentials(secret=snworker.Secret.keyring("snworker-test", "svc"))
    with connect(cc_stub, grant) as conn:
        assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
    missing = snworker.ClientCredentials(secret=snworker.Secret.keyring("snworker-test", "x"))
    with pytest.raises(snworker.AuthorizationError) as caught:
        connect(cc_stub, missing)
    assert caught.value.reason == "secret_unreadable"
    assert "keyring has no entry" in str(caught.value)


# --- the application's memory ----------------------------------------------------------------


APP = textwrap.dedent("""
    import os, sys, snworker
    url, client_id, secret, key, kid = sys.argv[1:6]
    canary = sys.stdin.readline().strip()
    s = snworker.Secret.file
    grants = [snworker.ClientCredentials(secret=s(secret)),
              snworker.JwtBearer(key=s(key), key_id=kid, subject="admin", client_secret=s(secret))]
    conns = [snworker.connect(url, client_id, grant=grant) for grant in grants]
    for conn in conns:
        for _ in range(3):
            conn.execute_api_request("/api/now/table/incident", params={"sysparm_limit": 5})
    print(" ".join(str(conn.worker_pid) for conn in conns), flush=True)
    sys.stdin.readline()
    for conn in conns:
        conn.disconnect()
""")


@linux_only
@pytest.mark.timeout(120)
def test_the_application_memory_holds_no_secret_key_or_token(rsa_key, secret_file, key_file):
    from tests.test_security import scan_memory

    canary = "canary-" + secrets.token_hex(16)
    stub = StubServiceNow.start_process(
        auth=["client_credentials", "jwt"], client_secret=CLIENT_SECRET,
        jwt_verifiers={KID: public_pem(rsa_key)})
    try:
        app = subprocess.Popen(
            [sys.executable, "-c", APP, stub.url, stub.client_id, str(secret_file),
             str(key_file), KID], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=no_browser_environment())
        try:
            assert app.stdin is not None and app.stdout is not None
            app.stdin.write(canary + "\n")
            app.stdin.flush()
            worker_pids = [int(p) for p in app.stdout.readline().split()]
            issued = stub.issued_secrets()  # tokens, the client secret and the assertions
            assert CLIENT_SECRET in issued and any(s.count(".") == 2 for s in issued)
            pem = private_pem(rsa_key)
            key_body = b"".join(line for line in pem.splitlines() if b"-----" not in line)
            needles = [s.encode() for s in issued] + [key_body[:64], key_body[-64:]]
            found_in_app = scan_memory(app.pid, [*needles, canary.encode()])
            found_in_workers = set().union(*(scan_memory(pid, needles) for pid in worker_pids))
            app.stdin.write("\n")
            app.stdin.flush()
            assert app.wait(30) == 0
        finally:
            app.kill()
    finally:
        stub.close()
    assert canary.encode() in found_in_app, "the scan cannot see the application's memory"
    assert CLIENT_SECRET.encode() in found_in_workers, "the scan cannot see the secret's copy"
    assert found_in_app == {canary.encode()}, "a secret is in the application's memory"


@pytest.mark.timeout(90)
def test_the_cli_stub_and_the_cli_request_speak_jwt_bearer(rsa_key, key_file, secret_file,
                                                           tmp_path):
    import selectors

    verifier = tmp_path / "verifier.pem"
    verifier.write_text(public_pem(rsa_key))
    stub = subprocess.Popen(
        [sys.executable, "-m", "snworker", "stub", "--auth", "jwt,client-credentials",
         "--client-secret", CLIENT_SECRET, "--jwt-verifier", f"{KID}={verifier}",
         "--application-user", "none"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert stub.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(stub.stdout, selectors.EVENT_READ)
            assert selector.select(30), "snworker stub did not start"
        ready = dict(part.split("=", 1) for part in
                     stub.stdout.readline().removeprefix("snworker stub: ").split())
        common = [sys.executable, "-m", "snworker", "request", INCIDENTS, "-p",
                  "sysparm_limit=1", "--instance", ready["url"], "--client-id",
                  ready["client_id"], "--client-secret-file", str(secret_file)]
        jwt = subprocess.run(
            [*common, "--grant", "jwt", "--key-file", str(key_file), "--key-id", KID,
             "--subject", "admin"], env=no_browser_environment(), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=50, cwd=tmp_path)
        assert jwt.returncode == 0, jwt.stderr
        assert len(json.loads(jwt.stdout)["result"]) == 1
        # The same stub has no OAuth Application User: the client-credentials grant is named.
        cc = subprocess.run([*common, "--grant", "client-credentials"],
                            env=no_browser_environment(), stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=50, cwd=tmp_path)
        assert cc.returncode == 3
        assert "OAuth Application User" in cc.stderr and "no_application_user" in cc.stderr
    finally:
        stub.terminate()
        stub.communicate(timeout=10)
