"""The in-process reference: a plain `requests.Session` with its own grant from the stub.

The reference runs the same authorization-code flow with PKCE as the worker (consent through
the stub's browser stand-in, a one-shot loopback listener, the code exchange), then sends
`Authorization: Bearer` and `Accept: application/json` itself and parses JSON in the caller,
exactly as an application without snworker would.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from snworker.testing import approve

AUTHORIZE_PATH = "/oauth_auth.do"
TOKEN_PATH = "/oauth_token.do"
FLOW_TIMEOUT = 10.0


class _CallbackHandler(BaseHTTPRequestHandler):
    """Records the query of the first request and answers it with a short page."""

    server: _CallbackServer

    def do_GET(self) -> None:
        self.server.query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"done")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _CallbackServer(HTTPServer):
    query: dict[str, str] | None = None


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize(instance_url: str, client_id: str, redirect_uri: str) -> str:
    """Run the code flow with PKCE against the stub; the access token it grants."""
    callback_path = urlsplit(redirect_uri).path
    with _CallbackServer(("127.0.0.1", 0), _CallbackHandler) as listener:
        listener.timeout = FLOW_TIMEOUT
        uri = f"http://127.0.0.1:{listener.server_address[1]}{callback_path}"
        verifier = secrets.token_urlsafe(64)
        state = secrets.token_urlsafe(16)
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": uri,
            "state": state,
            "code_challenge": _s256(verifier),
            "code_challenge_method": "S256",
        }
        waiter = threading.Thread(target=listener.handle_request, name="bench-callback")
        waiter.start()
        approved = approve(f"{instance_url}{AUTHORIZE_PATH}?{urlencode(query)}")
        waiter.join(FLOW_TIMEOUT)
        answer = listener.query or {}
    if not approved or answer.get("state") != state or "code" not in answer:
        raise RuntimeError("the reference session was not authorized by the stub")
    response = requests.post(
        instance_url + TOKEN_PATH,
        data={
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": uri,
            "client_id": client_id,
            "code_verifier": verifier,
        },
        timeout=FLOW_TIMEOUT,
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def session_factory(instance_url: str, access_token: str) -> Callable[[], requests.Session]:
    """Make plain sessions that carry the reference's token.

    Proxy and CA settings are resolved once, as the worker does, rather than on every request
    (`trust_env`): the reference gets the same shortcut, so the figures compare the boundary
    and not a configuration difference.
    """
    settings = requests.Session().merge_environment_settings(instance_url, {}, None, None, None)

    def new_session() -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        session.proxies = settings["proxies"]
        session.verify = settings["verify"]
        session.headers["Authorization"] = f"Bearer {access_token}"
        session.headers["Accept"] = "application/json"
        return session

    return new_session


def get_result(session: requests.Session, url: str) -> Any:
    """GET `url` and return the envelope's `result`, as a caller without snworker would."""
    response = session.get(url, timeout=30.0)
    response.raise_for_status()
    return response.json()["result"]
