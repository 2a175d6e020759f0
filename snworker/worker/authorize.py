"""The authorization-code flow with PKCE: verifier, loopback listener, token endpoint."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from snworker.worker.failures import AuthorizationFailed, Failure, TlsFailure, TokenExpired
from snworker.worker.redact import Redactor
from snworker.worker.tokens import TokenGrant
from snworker.worker.transport import Transport

logger = logging.getLogger("snworker.worker")

TOKEN_PATH = "/oauth_token.do"
AUTHORIZE_PATH = "/oauth_auth.do"
REVOKE_PATH = "/oauth_revoke_token.do"
# How long one idle browser connection may hold the single-threaded listener.
_LISTENER_SOCKET_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Pkce:
    """A PKCE verifier and its S256 challenge (RFC 7636)."""

    verifier: str = field(repr=False)
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        """A fresh verifier: 64 random bytes, 86 characters of base64url."""
        verifier = secrets.token_urlsafe(64)
        return cls(verifier, s256(verifier))


def s256(verifier: str) -> str:
    """The S256 code challenge of `verifier`: base64url(SHA-256), no padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(instance_url: str, client_id: str, redirect_uri: str, state: str,
                  challenge: str, scopes: tuple[str, ...]) -> str:
    """The consent page URL the user's browser opens."""
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if scopes:
        query["scope"] = " ".join(scopes)
    return f"{instance_url}{AUTHORIZE_PATH}?{urlencode(query)}"


@dataclass(slots=True)
class Callback:
    """What the browser brought back to the listener."""

    code: str | None = field(default=None, repr=False)
    error: str | None = None
    error_description: str | None = None


class _LoopbackServer(HTTPServer):
    """An HTTP server on one loopback port that no other process can share.

    On Windows, SO_REUSEADDR would let another process bind the same port and take the
    callback; SO_EXCLUSIVEADDRUSE refuses it. On POSIX, SO_REUSEADDR only allows a rebind over
    connections in TIME_WAIT.
    """

    allow_reuse_address = sys.platform != "win32"

    def server_bind(self) -> None:
        if sys.platform == "win32":
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        super().server_bind()


class LoopbackListener:
    """Waits on 127.0.0.1 for the one redirect that carries the code.

    Only GET on the registered path with the expected `state` counts; anything else is answered
    and ignored. The port is released on every way out (`close()` runs from a `with` block).
    """

    def __init__(self, redirect_uri: str) -> None:
        parts = urlsplit(redirect_uri)
        self._path = parts.path or "/"
        self._state = ""
        self._result: Callback | None = None
        self.mismatched_states = 0
        listener = self

        class Handler(BaseHTTPRequestHandler):
            timeout = _LISTENER_SOCKET_TIMEOUT

            def do_GET(self) -> None:
                listener._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the request line holds the code: never print it

        self._server = _LoopbackServer(("127.0.0.1", parts.port or 0), Handler)
        self._server.timeout = 0.2
        port = self._server.server_address[1]
        self.redirect_uri = urlunsplit(
            (parts.scheme, f"{parts.hostname}:{port}", parts.path, "", "")
        )

    def __enter__(self) -> LoopbackListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Free the port."""
        self._server.server_close()

    def wait(self, state: str, deadline: float, cancelled: threading.Event) -> Callback:
        """Serve until the callback with `state` arrives; raise AuthorizationFailed otherwise."""
        self._state = state
        while self._result is None:
            if cancelled.is_set():
                raise AuthorizationFailed("authorization was cancelled", "cancelled")
            if time.monotonic() >= deadline:
                if self.mismatched_states:
                    raise AuthorizationFailed(
                        f"the browser came back to {self.redirect_uri} with the wrong state "
                        f"({self.mismatched_states} time(s)) and never with the right one; the "
                        "callback was not from this authorization attempt", "state_mismatch")
                raise AuthorizationFailed(
                    f"no answer on {self.redirect_uri} in time: the user did not finish in the "
                    "browser, or the instance sent the browser to another redirect URL (a real "
                    "instance falls back to the first registered redirect URL when redirect_uri "
                    "does not match one exactly; register this one with the OAuth app)",
                    "timeout")
            self._server.handle_request()
        return self._result

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        if parts.path != self._path:
            _answer(request, 404, "Not found.")
            return
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if not hmac.compare_digest(query.get("state", "").encode(), self._state.encode()):
            self.mismatched_states += 1
            _answer(request, 400, "This sign-in link is not for this application.")
            return
        if query.get("code"):
            self._result = Callback(code=query["code"])
            _answer(request, 200, "Access granted. You can close this window.")
        else:
            self._result = Callback(
                error=query.get("error") or "no_code",
                error_description=query.get("error_description"),
            )
            _answer(request, 200, "Access was not granted. You can close this window.")


def _answer(request: BaseHTTPRequestHandler, status: int, text: str) -> None:
    body = (
        "<!doctype html><html><head><meta charset='utf-8'><title>snworker</title></head>"
        f"<body><p>{text}</p></body></html>"
    ).encode()
    request.send_response(status)
    request.send_header("Content-Type", "text/html; charset=utf-8")
    request.send_header("Content-Length", str(len(body)))
    request.send_header("Cache-Control", "no-store")
    request.send_header("Connection", "close")
    request.end_headers()
    request.wfile.write(body)
    request.close_connection = True


class TokenEndpoint:
    """The instance's OAuth endpoints, for a public client."""

    def __init__(self, transport: Transport, client_id: str, timeout: float,
                 redactor: Redactor) -> None:
        self._transport = transport
        self._client_id = client_id
        self._timeout = timeout
        self._redactor = redactor
        self._never_cancelled = threading.Event()

    def _grant(self, body: object) -> TokenGrant:
        """The grant in a token endpoint's answer, its tokens registered for redaction first."""
        if isinstance(body, dict):
            for name in ("access_token", "refresh_token"):
                if isinstance(body.get(name), str):
                    # An access token may be accepted a while past its expiry on another clock.
                    until = time.monotonic() + expires_in(body) + EXPIRY_SLACK
                    self._redactor.add(body[name],
                                       live_until=until if name == "access_token" else None)
        return TokenGrant.from_response(body, time.monotonic())

    def exchange(self, code: str, redirect_uri: str, verifier: str,
                 cancelled: threading.Event) -> TokenGrant:
        """Trade the authorization code for tokens; AuthorizationFailed if refused."""
        try:
            status, body = self._transport.post_form(TOKEN_PATH, {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": self._client_id,
                "code_verifier": verifier,
            }, time.monotonic() + self._timeout, cancelled, retry=False)
        except Failure as exc:
            raise AuthorizationFailed(
                f"the code exchange failed: {exc.message}", "exchange_failed") from None
        if status != 200:
            raise AuthorizationFailed(
                f"the instance refused the code exchange (HTTP {status}: "
                f"{_oauth_error(body)}); if it mentions the code challenge, the instance may "
                "have answered with a code from an older grant: try again",
                "exchange_failed")
        try:
            return self._grant(body)
        except ValueError as exc:
            raise AuthorizationFailed(str(exc), "exchange_failed") from None

    def refresh(self, refresh_token: str) -> TokenGrant:
        """Renew the access token. TokenExpired if refused; ApiFailure if it failed for now."""
        status, body = self._transport.post_form(TOKEN_PATH, {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": self._client_id,
        }, time.monotonic() + self._transport.policy.total_timeout, self._never_cancelled,
            retry=True)
        logger.info("snworker worker: token endpoint answered %d to a refresh", status)
        if status in (400, 401, 403):
            raise TokenExpired(
                f"the instance refused to renew the access token ({_oauth_error(body)}); "
                "call conn.reconnect()")
        if status != 200:
            raise TokenRefreshFailed(f"could not renew the access token: HTTP {status}", status)
        try:
            return self._grant(body)
        except ValueError as exc:
            raise TokenRefreshFailed(str(exc), status) from None

    def revoke(self, token: str, timeout: float) -> bool:
        """Revoke `token` at the instance within `timeout` seconds; True if it said yes."""
        try:
            status, _ = self._transport.post_form(REVOKE_PATH, {
                "token": token, "client_id": self._client_id,
            }, time.monotonic() + timeout, self._never_cancelled, retry=False)
        except Failure:
            return False
        return status == 200


class TokenRefreshFailed(Failure):
    """The token endpoint failed for now (not a refusal): the tokens are kept."""


EXPIRY_SLACK = 300.0


def expires_in(body: dict[str, Any]) -> float:
    """A token answer's `expires_in`, in seconds (the platform's default when unreadable)."""
    try:
        return max(float(body.get("expires_in", 1800)), 0.0)
    except (TypeError, ValueError):
        return 1800.0


def _oauth_error(body: object) -> str:
    if isinstance(body, dict):
        return str(body.get("error_description") or body.get("error") or "no reason given")
    return "no reason given"


Authorize = Callable[[threading.Event], TokenGrant]

def open_listener(redirect_uris: tuple[str, ...]) -> LoopbackListener:
    """A listener on the first of `redirect_uris` whose port is free."""
    tried = []
    for uri in redirect_uris:
        try:
            return LoopbackListener(uri)
        except OSError as exc:
            tried.append(f"{uri} ({exc.strerror or exc})")
    raise AuthorizationFailed(
        "cannot listen for the browser's answer on " + ", ".join(tried) + ": another program "
        "(or another snworker connection) uses the port; register more redirect URLs with the "
        "OAuth application and pass them all as redirect_uri=[...]", "redirect_busy")


# How long the instance may take to answer the probe of its authorization endpoint.
PROBE_TIMEOUT = 5.0


def probe_authorization(transport: Transport, client_id: str, redirect_uri: str,
                        scopes: tuple[str, ...], timeout: float, redactor: Redactor) -> None:
    """Before the user is asked anything: fail at once if the consent could never succeed.

    Loads the authorization endpoint as the browser will (with a throwaway state and
    challenge): an instance that does not answer, or that says the client id or the redirect
    URL is not registered, ends the flow now, with the cause named, instead of after the whole
    authorization timeout. Anything else (a sign-in page, a consent page) lets the flow go on.
    """
    url = authorize_url("", client_id, redirect_uri, secrets.token_urlsafe(16),
                        Pkce.new().challenge, scopes)
    try:
        answer = transport.get_page(url, timeout)
    except TlsFailure as exc:
        raise AuthorizationFailed(f"cannot talk to the instance at {transport.origin}: "
                                  f"{exc.message}", "unreachable") from None
    except Failure as exc:
        raise AuthorizationFailed(
            f"the instance at {transport.origin} does not answer: {exc.message}; check the "
            "instance name and the network (a proxy, or a CA bundle, may be needed)",
            "unreachable") from None
    location = answer.headers.get("Location", "")
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    if "code" in query:  # an instance that consents at once: keep its code in the worker
        redactor.add(query["code"])
    text = answer.body.decode("utf-8", "replace").lower()
    error = query.get("error", "")
    if error in ("unauthorized_client", "invalid_client") or (
            400 <= answer.status < 500 and "client_id" in text):
        raise AuthorizationFailed(
            f"the instance does not know the client id {client_id!r} (HTTP {answer.status}): "
            "check it against the OAuth application in System OAuth > Application Registry",
            "invalid_client")
    if 400 <= answer.status < 500 and "redirect_uri" in text:
        raise AuthorizationFailed(
            f"the instance refuses the redirect URL {redirect_uri} (HTTP {answer.status}): "
            "register it with the OAuth application", "redirect_mismatch")
    if location and not location.startswith(redirect_uri.split("?")[0]) and (
            "code" in query or "error" in query):
        raise AuthorizationFailed(
            f"the instance sends the browser to {location.split('?')[0]}, not to "
            f"{redirect_uri}: register this redirect URL with the OAuth application",
            "redirect_mismatch")


def run_flow(transport: Transport, endpoint: TokenEndpoint, client_id: str,
             redirect_uris: tuple[str, ...],
             scopes: tuple[str, ...], timeout: float, open_browser: Callable[[str], None],
             cancelled: threading.Event, redactor: Redactor) -> TokenGrant:
    """Open the consent page, wait for the code, exchange it. Raises AuthorizationFailed."""
    pkce = Pkce.new()
    redactor.add(pkce.verifier)
    state = secrets.token_urlsafe(24)
    listener = open_listener(redirect_uris)
    with listener:
        deadline = time.monotonic() + timeout
        probe_authorization(transport, client_id, listener.redirect_uri, scopes,
                            min(PROBE_TIMEOUT, timeout), redactor)
        logger.debug("snworker worker: waiting up to %.0f s for the browser on %s", timeout,
                     listener.redirect_uri)
        open_browser(authorize_url(transport.origin, client_id, listener.redirect_uri, state,
                                   pkce.challenge, scopes))
        callback = listener.wait(state, deadline, cancelled)
    if callback.code is None:
        if callback.error == "access_denied":
            raise AuthorizationFailed("the user denied access", "denied")
        raise AuthorizationFailed(
            f"the instance did not grant access: {callback.error}"
            + (f" ({callback.error_description})" if callback.error_description else ""),
            "denied" if callback.error else "exchange_failed")
    redactor.add(callback.code)
    logger.debug("snworker worker: consent given; exchanging the code")
    return endpoint.exchange(callback.code, listener.redirect_uri, pkce.verifier, cancelled)
