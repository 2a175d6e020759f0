"""The stub's OAuth 2.0 authorization server: clients, consent, codes, grants and tokens.

Protocol only: the HTTP side (`app.py`) turns the outcomes here into pages, redirects and JSON.
The caller holds the state lock around every method. Besides the authorization-code flow (with
PKCE) and its refresh grant, the password and client-credentials grants answer when the stub is
told to accept them, for clients registered with a secret, and the JWT bearer grant for assertions
signed with a key of the JWT verifier map (`assertions.py`). The unattended grants issue no
refresh token, and each setup mistake is refused with its own error (`platform.py`).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlencode, urlsplit

from snworker.testing import platform
from snworker.testing.assertions import AssertionChecker, Refused

ConsentMode = Literal["ask", "allow", "deny"]
TokenAnswer = tuple[int, dict[str, object]]


@dataclass(frozen=True, slots=True)
class Client:
    """A registered OAuth application; a public client has no secret."""

    client_id: str
    redirect_uris: tuple[str, ...]
    app_name: str
    pkce_required: bool = True
    client_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class AuthorizationCode:
    """A code issued at consent, waiting to be exchanged once."""

    code: str = field(repr=False)
    client_id: str
    redirect_uri: str | None
    challenge: str | None
    challenge_method: str
    expires_at: float
    user_sys_id: str


@dataclass(slots=True)
class Grant:
    """What one consent bought: a refresh token and the access tokens issued from it."""

    client_id: str
    user_sys_id: str
    refresh_token: str = field(repr=False)
    refresh_expires_at: float
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class KeptGrant:
    """A grant that outlives a reset: what it was issued with, and the secrets of its consent."""

    client_id: str
    user_sys_id: str
    refresh_token: str = field(repr=False)
    access_token: str | None = field(repr=False)  # the latest issued from it
    secrets: tuple[str, ...] = field(repr=False)  # its code, verifier and tokens


@dataclass(slots=True)
class AccessToken:
    """An access token and the grant it belongs to."""

    token: str = field(repr=False)
    grant: Grant
    expires_at: float
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class ErrorPage:
    """An authorize request refused with a page (there is no trusted place to redirect to)."""

    status: int
    message: str


@dataclass(frozen=True, slots=True)
class ConsentPage:
    """The page that asks the user to Allow or Deny; `request` goes back in hidden fields."""

    app_name: str
    request: dict[str, str]


@dataclass(frozen=True, slots=True)
class Redirect:
    """Send the browser to `location` (the client's redirect URI with a code or an error)."""

    location: str


AuthorizeOutcome = ErrorPage | ConsentPage | Redirect


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of a verifier."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _with_query(uri: str, params: Mapping[str, str]) -> str:
    return f"{uri}{'&' if '?' in uri else '?'}{urlencode(params)}"


def _same_but_port(registered: str, requested: str) -> bool:
    """RFC 8252 7.3: a loopback IP redirect matches whatever port the client picked."""
    try:
        want, got = urlsplit(registered), urlsplit(requested)
    except ValueError:
        return False
    return (
        want.scheme == got.scheme == "http"
        and want.hostname in platform.LOOPBACK_HOSTS
        and want.hostname == got.hostname
        and want.path == got.path
        and want.query == got.query
    )


class AuthorizationServer:
    """Clients, pending codes, grants and tokens, on the stub's clock."""

    def __init__(
        self,
        *,
        access_lifespan: float,
        refresh_lifespan: float,
        consent: ConsentMode,
        strict_redirect: bool,
        methods: tuple[str, ...] = platform.DEFAULT_AUTH,
        assertions: AssertionChecker | None = None,
    ) -> None:
        self.access_lifespan = access_lifespan
        self.refresh_lifespan = refresh_lifespan
        self.consent: ConsentMode = consent
        self.strict_redirect = strict_redirect
        self.methods = methods
        self.assertions = assertions if assertions is not None else AssertionChecker()
        self.clients: dict[str, Client] = {}
        # The grants this stub accepts; the authorization-code ones always, as before any other.
        accepted = {platform.GRANT_OF_METHOD.get(m, m) for m in methods}
        self.grant_counts: dict[str, int] = dict.fromkeys(
            [g for g in platform.GRANT_TYPES if g in (*accepted, "authorization_code",
                                                        "refresh_token")], 0)
        self.issued_secrets: list[str] = []
        self._received: set[str] = set()
        self._codes: dict[str, AuthorizationCode] = {}
        self._grants: dict[str, Grant] = {}
        self._access_tokens: dict[str, AccessToken] = {}

    def register_client(self, client: Client) -> None:
        """Add or replace a registered application."""
        self.clients[client.client_id] = client

    def received(self, secret: str) -> None:
        """Remember a secret a client sent (a password, a client secret) among the issued ones."""
        if secret and secret not in self._received:
            self._received.add(secret)
            self.issued_secrets.append(secret)

    # --- authorize -----------------------------------------------------------------------------

    def _redirect_for(self, client: Client, requested: str) -> str | None:
        """Where the browser goes back to; None when the request must be refused."""
        if not requested or requested in client.redirect_uris:
            return requested or client.redirect_uris[0]
        if self.strict_redirect:
            # The platform does not refuse: it falls back to the first registered URL.
            return client.redirect_uris[0]
        if any(_same_but_port(uri, requested) for uri in client.redirect_uris):
            return requested
        return None

    def authorize(
        self,
        request: Mapping[str, str],
        decision: ConsentMode,
        now: float,
        user_sys_id: str,
    ) -> AuthorizeOutcome:
        """Answer an authorization request; `decision` is "ask" until the user has clicked."""
        client = self.clients.get(request.get("client_id", ""))
        if client is None:
            return ErrorPage(400, platform.INVALID_CLIENT_MESSAGE)
        requested = request.get("redirect_uri", "")
        redirect_uri = self._redirect_for(client, requested)
        if redirect_uri is None:
            return ErrorPage(400, platform.INVALID_REDIRECT_MESSAGE)
        state = request.get("state", "")
        if not state:
            return ErrorPage(400, platform.MISSING_STATE_MESSAGE)

        def error(code: str, description: str | None = None) -> Redirect:
            params = {"error": code, "state": state}
            if description:
                params["error_description"] = description
            return Redirect(_with_query(redirect_uri, params))

        if request.get("response_type") != "code":
            return error("unsupported_response_type")
        challenge = request.get("code_challenge") or None
        method = request.get("code_challenge_method") or "plain"
        if client.pkce_required and (challenge is None or method != "S256"):
            return error("invalid_request", "code_challenge with method S256 is required")
        if method not in ("S256", "plain"):
            return error("invalid_request", "unsupported code_challenge_method")
        if decision == "ask":
            return ConsentPage(client.app_name, dict(request))
        if decision == "deny":
            return error("access_denied")
        code = secrets.token_urlsafe(32)
        self._codes[code] = AuthorizationCode(
            code=code,
            client_id=client.client_id,
            redirect_uri=requested or None,
            challenge=challenge,
            challenge_method=method,
            expires_at=now + platform.AUTHORIZATION_CODE_LIFESPAN,
            user_sys_id=user_sys_id,
        )
        self.issued_secrets.append(code)
        return Redirect(_with_query(redirect_uri, {"code": code, "state": state}))

    # --- token ---------------------------------------------------------------------------------

    def token(
        self,
        form: Mapping[str, str] | None,
        now: float,
        client_credentials: tuple[str, str] | None = None,
        sign_in: Callable[[str, str], str | None] = lambda user, password: None,
        service_user: str | None = "",
        find_user: Callable[[str, str], str | None] = lambda field, value: None,
    ) -> TokenAnswer:
        """Answer a token request.

        Args:
            form: the form body; None when the body was not form-urlencoded.
            client_credentials: client id and secret from a Basic `Authorization` header.
            sign_in: the sys_id of the user with a user name and password, or None.
            service_user: the user a client-credentials token acts for (the OAuth Application
                User); None when none is named.
            find_user: the sys_id of the active user whose field has a value, or None (the
                JWT bearer grant's subject).
        """
        if form is None:
            return self._refused()
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code" and "code" in self.methods:
            return self._exchange_code(form, now)
        if grant_type == "refresh_token":
            return self._refresh(form, client_credentials, now)
        if grant_type == "client_credentials":
            if "client_credentials" not in self.methods:
                return self._named_refusal("grant_disabled")
            client = self._confidential_client(form, client_credentials)
            if client is None:
                return self._named_refusal("invalid_client")
            if not service_user:
                return self._named_refusal("no_application_user")
            return self._grant(client.client_id, service_user, "client_credentials", now,
                               refresh=False)
        if grant_type == platform.JWT_BEARER_GRANT and "jwt" in self.methods:
            return self._jwt_bearer(form, client_credentials, now, find_user)
        if grant_type == "password" and grant_type in self.methods:
            client = self._confidential_client(form, client_credentials)
            if client is None:
                return self._refused()
            password = form.get("password", "")
            self.received(password)
            user = sign_in(form.get("username", ""), password)
            if user is None:
                return self._refused()
            return self._grant(client.client_id, user, "password", now)
        return self._refused()

    def _jwt_bearer(
        self, form: Mapping[str, str], credentials: tuple[str, str] | None, now: float,
        find_user: Callable[[str, str], str | None],
    ) -> TokenAnswer:
        """The JWT bearer grant: the client's secret (unless it is public), then the assertion."""
        client_id = credentials[0] if credentials else form.get("client_id", "")
        registered = self.clients.get(client_id)
        if registered is None:
            return self._named_refusal("invalid_client")
        if registered.client_secret:
            client = self._confidential_client(form, credentials)
            if client is None:
                return self._named_refusal("invalid_client")
        assertion = form.get("assertion", "")
        self.received(assertion)  # a bearer credential until it expires
        outcome = self.assertions.check(assertion, client_id, now, find_user)
        if isinstance(outcome, Refused):
            return self._named_refusal(outcome.reason)
        return self._grant(client_id, outcome, "jwt_bearer", now, refresh=False)

    @staticmethod
    def _named_refusal(reason: str) -> TokenAnswer:
        error, description = platform.UNATTENDED_REFUSALS[reason]
        return platform.TOKEN_FAILURE_STATUS, {"error": error, "error_description": description}

    def _confidential_client(
        self, form: Mapping[str, str], credentials: tuple[str, str] | None
    ) -> Client | None:
        """The client the request authenticates as with its secret, or None."""
        client_id, secret = credentials or (
            form.get("client_id", ""), form.get("client_secret", "")
        )
        self.received(secret)
        client = self.clients.get(client_id)
        if client is None or not client.client_secret or not secrets.compare_digest(
            client.client_secret.encode(), secret.encode()
        ):
            return None
        return client

    def _grant(
        self, client_id: str, user: str, grant_type: str, now: float, refresh: bool = True
    ) -> TokenAnswer:
        grant = Grant(
            client_id=client_id,
            user_sys_id=user,
            refresh_token=secrets.token_urlsafe(48),
            refresh_expires_at=now + self.refresh_lifespan,
        )
        self._grants[grant.refresh_token] = grant
        if refresh:
            self.issued_secrets.append(grant.refresh_token)
        self.grant_counts[grant_type] += 1
        status, body = self._issue(grant, now)
        if not refresh:
            body.pop("refresh_token")
        return status, body

    def _exchange_code(self, form: Mapping[str, str], now: float) -> TokenAnswer:
        verifier = form.get("code_verifier", "")
        if verifier:
            self.issued_secrets.append(verifier)
        # A code is spent by any attempt, so a wrong verifier cannot be retried.
        code = self._codes.pop(form.get("code", ""), None)
        if (
            code is None
            or now >= code.expires_at
            or form.get("client_id") != code.client_id
            or (form.get("redirect_uri") or None) != code.redirect_uri
            or not _verifier_fits(code, verifier)
        ):
            return self._refused()
        return self._grant(code.client_id, code.user_sys_id, "authorization_code", now)

    def _refresh(
        self, form: Mapping[str, str], credentials: tuple[str, str] | None, now: float
    ) -> TokenAnswer:
        grant = self._grants.get(form.get("refresh_token", ""))
        client_id = credentials[0] if credentials else form.get("client_id")
        if (
            grant is None
            or grant.revoked
            or now >= grant.refresh_expires_at
            or client_id != grant.client_id
        ):
            return self._refused()
        self.grant_counts["refresh_token"] += 1
        return self._issue(grant, now)

    def _issue(self, grant: Grant, now: float) -> TokenAnswer:
        token = AccessToken(secrets.token_urlsafe(48), grant, now + self.access_lifespan)
        self._access_tokens[token.token] = token
        self.issued_secrets.append(token.token)
        return 200, {
            "access_token": token.token,
            "refresh_token": grant.refresh_token,
            "scope": platform.TOKEN_SCOPE,
            "token_type": platform.TOKEN_TYPE,
            "expires_in": int(self.access_lifespan) - 1,
        }

    @staticmethod
    def _refused() -> TokenAnswer:
        return platform.TOKEN_FAILURE_STATUS, dict(platform.TOKEN_FAILURE_BODY)

    # --- tokens in use ---------------------------------------------------------------------------

    def revoke(self, token: str) -> None:
        """Revoke an access token, or a refresh token and with it the whole grant."""
        if token in self._grants:
            self._grants[token].revoked = True
        elif token in self._access_tokens:
            self._access_tokens[token].revoked = True

    def authenticate(self, token: str, now: float) -> str | None:
        """The sys_id of the user an access token acts for, or None if it is not usable."""
        access = self._access_tokens.get(token)
        if access is None or access.revoked or access.grant.revoked or now >= access.expires_at:
            return None
        return access.grant.user_sys_id

    def expire_access_tokens(self, now: float) -> None:
        """Make every access token issued so far expired."""
        for access in self._access_tokens.values():
            access.expires_at = min(access.expires_at, now)

    def revoke_refresh_tokens(self) -> None:
        """Revoke every grant, and so every token issued from it."""
        for grant in self._grants.values():
            grant.revoked = True

    # --- a grant kept across resets ----------------------------------------------------------

    def newest_grant(self) -> KeptGrant | None:
        """The grant issued last (with every secret issued so far), or None."""
        if not self._grants:
            return None
        grant = next(reversed(self._grants.values()))
        return KeptGrant(grant.client_id, grant.user_sys_id, grant.refresh_token,
                         self._latest_access_token(grant), tuple(self.issued_secrets))

    def kept_as_now(self, kept: KeptGrant) -> KeptGrant:
        """`kept` with the latest access token issued from its grant here, if any."""
        grant = self._grants.get(kept.refresh_token)
        latest = self._latest_access_token(grant) if grant is not None else None
        if latest is None or latest == kept.access_token:
            return kept
        return KeptGrant(kept.client_id, kept.user_sys_id, kept.refresh_token, latest,
                         (*kept.secrets, latest))

    def readmit(self, kept: KeptGrant, now: float) -> None:
        """Take `kept` back as a fresh consent: unrevoked, its tokens valid for their lifespans."""
        grant = Grant(kept.client_id, kept.user_sys_id, kept.refresh_token,
                      now + self.refresh_lifespan)
        self._grants[grant.refresh_token] = grant
        if kept.access_token is not None:
            self._access_tokens[kept.access_token] = AccessToken(
                kept.access_token, grant, now + self.access_lifespan)
        for secret in kept.secrets:
            if secret not in self.issued_secrets:
                self.issued_secrets.append(secret)
        self.grant_counts["authorization_code"] += 1

    def _latest_access_token(self, grant: Grant) -> str | None:
        return next((access.token for access in reversed(self._access_tokens.values())
                     if access.grant is grant), None)


def _verifier_fits(code: AuthorizationCode, verifier: str) -> bool:
    if code.challenge is None:
        return True
    if not verifier:
        return False
    expected = s256(verifier) if code.challenge_method == "S256" else verifier
    return secrets.compare_digest(expected, code.challenge)
