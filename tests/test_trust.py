"""Rule 8: network trust is explicit. TLS against the OS store or an explicit `ca_bundle`; a
proxy from the argument or HTTPS_PROXY only, never for a loopback instance, and then it sees only
a TLS tunnel. CA and key-log variables set in the parent never reach the worker.

The instance is the stub behind a TLS front with a certificate from a test CA; the browser
stand-in is pointed at the stub directly, so only the worker speaks TLS.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

import snworker
from snworker.settings import proxy_for as _proxy_for
from snworker.testing import StubServiceNow, approve
from tests.relays import ConnectProxy, Relay, make_certificates, server_context

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

INSTANCE_NAME = "dev12345.service-now.com"
INCIDENTS = "/api/now/table/incident"


@dataclass
class Tls:
    sn: StubServiceNow
    front: Relay
    ca: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.front.port}"

    def browser(self, url: str) -> bool:
        """The consent page, fetched from the stub itself (the browser's TLS is not tested)."""
        parts = urlsplit(url)
        return approve(urlunsplit(("http", urlsplit(self.sn.url).netloc, *parts[2:])))


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_certificates(tmp_path_factory.mktemp("tls"), ["127.0.0.1", INSTANCE_NAME])


@pytest.fixture
def tls(certificates: tuple[Path, Path, Path]) -> Iterator[Tls]:
    ca, cert, key = certificates
    with StubServiceNow() as sn:
        port = urlsplit(sn.url).port
        assert port
        front = Relay(("127.0.0.1", port), tls=server_context(cert, key))
        try:
            yield Tls(sn, front, ca)
        finally:
            front.close()


def connect(tls: Tls, url: str | None = None, **kwargs: object) -> snworker.ServiceNowConnection:
    return snworker.connect(url or tls.url, tls.sn.client_id, redirect_uri=tls.sn.redirect_uri,
                            open_browser=tls.browser, authorization_timeout=15, **kwargs)


def test_an_explicit_ca_bundle_is_trusted(tls):
    with connect(tls, ca_bundle=tls.ca) as conn:
        assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
    assert tls.front.recorded()  # it went over TLS, through the front


def test_ca_variables_set_in_the_parent_are_not_honoured(tls, monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, str(tls.ca))
    monkeypatch.setenv("SSL_CERT_DIR", str(tls.ca.parent))
    with pytest.raises(snworker.AuthorizationError) as caught:
        connect(tls)
    assert caught.value.reason == "unreachable"  # the probe before the browser opens fails
    assert "TLS" in str(caught.value)


def test_sslkeylogfile_set_in_the_parent_gets_no_key(tls, monkeypatch, tmp_path):
    keys = tmp_path / "keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(keys))
    with connect(tls, ca_bundle=tls.ca) as conn:
        conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1})
    assert not keys.exists() or keys.read_text() == ""


@pytest.fixture
def proxy(tls: Tls) -> Iterator[ConnectProxy]:
    relay = ConnectProxy(("127.0.0.1", tls.front.port))
    try:
        yield relay
    finally:
        relay.close()


@pytest.mark.parametrize("given", ["argument", "HTTPS_PROXY"])
def test_a_proxy_sees_only_a_tls_tunnel(tls, proxy, monkeypatch, given):
    # The instance's name never resolves here: only the proxy can reach it (at the TLS front).
    url = f"http://127.0.0.1:{proxy.port}"
    kwargs: dict[str, object] = {"ca_bundle": tls.ca}
    if given == "argument":
        kwargs["proxy"] = url
    else:
        monkeypatch.setenv("HTTPS_PROXY", url)
    with connect(tls, f"https://{INSTANCE_NAME}", **kwargs) as conn:
        assert conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1}).status == 200
    assert proxy.connects and all(
        line.startswith(f"CONNECT {INSTANCE_NAME}:443 ") for line in proxy.connects)
    tunnelled = b"".join(proxy.recorded())
    assert tunnelled
    for secret in tls.sn.issued_secrets():
        assert secret.encode() not in tunnelled
    assert b"/api/now" not in tunnelled and b"Bearer" not in tunnelled


def test_a_loopback_instance_never_goes_through_a_proxy(tls, proxy, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    with connect(tls, ca_bundle=tls.ca, proxy=f"http://127.0.0.1:{proxy.port}") as conn:
        conn.execute_api_request(INCIDENTS, params={"sysparm_limit": 1})
    assert proxy.connects == []


def test_the_proxy_is_chosen_from_the_argument_or_https_proxy_and_no_proxy(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
                 "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    instance = f"https://{INSTANCE_NAME}"
    assert _proxy_for(instance, None) is None
    monkeypatch.setenv("HTTP_PROXY", "http://plain:3128")  # for http URLs: not ours
    monkeypatch.setenv("ALL_PROXY", "http://all:3128")
    assert _proxy_for(instance, None) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://corp:3128")
    assert _proxy_for(instance, None) == "http://corp:3128"
    assert _proxy_for(instance, "proxy.example:8080") == "http://proxy.example:8080"
    for no_proxy in ("service-now.com", ".service-now.com", "*", "other.example, dev12345."
                     "service-now.com"):
        monkeypatch.setenv("NO_PROXY", no_proxy)
        assert _proxy_for(instance, None) is None, no_proxy
    monkeypatch.setenv("NO_PROXY", "now.com")
    assert _proxy_for(instance, None) == "http://corp:3128"
    assert _proxy_for("https://127.0.0.1:8443", "http://corp:3128") is None
    with pytest.raises(snworker.InvalidRequestError):
        _proxy_for(instance, "socks5://corp:1080")


def test_the_ca_bundle_must_be_a_file():
    with pytest.raises(snworker.InvalidRequestError, match="ca_bundle"):
        snworker.connect("dev12345", "cid", ca_bundle=os.devnull + ".missing")
