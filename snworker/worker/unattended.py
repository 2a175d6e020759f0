"""The unattended grants: client credentials and JWT bearer. No browser, no refresh token.

The worker reads the secrets from the references the parent sent (`secrets.py`), keeps them for
its life, and runs the grant again whenever a new access token is needed: before the current
one runs out (the token store's margin rule) and after a 401. Each JWT assertion gets a fresh
`jti`. A refusal is named: the token endpoint's answer, and what the worker could check itself
(the secret's file, the key), become an AuthorizationFailed whose reason and hint name the
setting to fix.

JWT signing uses `cryptography` (the `jwt` extra) for RS* and ES*, and the standard library's
hmac for HS*: a JWT is three base64url parts, and signing is the only part that needs a
crypto library.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import math
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from snworker import errors
from snworker.worker.authorize import EXPIRY_SLACK, expires_in
from snworker.worker.failures import AuthorizationFailed, Failure, TokenExpired
from snworker.worker.redact import Redactor
from snworker.worker.secrets import read_secret, wipe
from snworker.worker.tokens import TokenGrant
from snworker.worker.transport import Transport

logger = logging.getLogger("snworker.worker")

TOKEN_PATH = "/oauth_token.do"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CREDENTIALS_PROPERTY = "glide.oauth.inbound.client.credential.grant_type.enabled"
# The token endpoint answers a refused grant with 401 (400 from some releases).
_REFUSED = (400, 401, 403)
_HASHES = {"256": "sha256", "384": "sha384", "512": "sha512"}
_EC_SIZES = {"256": 32, "384": 48, "512": 66}


@dataclass(frozen=True, slots=True)
class _Refusal:
    reason: errors.AuthorizationReason
    words: tuple[str, ...]  # any of these in the instance's error text names this refusal
    hint: str


# The stub's error texts are its reading of the platform (the real texts are not pinned
# down); a text that names none of these gets the hint that lists them all.
_REFUSALS = (
    _Refusal("grant_disabled", ("not enabled", "unsupported_grant_type", "grant type"),
             "the client-credentials grant is off on the instance: set the system property "
             f"{CREDENTIALS_PROPERTY} to true"),
    _Refusal("no_application_user", ("application user",),
             "the OAuth application has no OAuth Application User: name one on its entity "
             "(System OAuth > Application Registry, or Machine Identity Console)"),
    _Refusal("unknown_key", ("verifier", "kid"),
             "no JWT verifier map entry of the OAuth application has this key id: check "
             "key_id against the entry's Key Id"),
    _Refusal("unknown_subject", ("subject", "no user"),
             "the subject matches no user: check subject against the user field the OAuth "
             "entity matches (User Field: user_name, email or sys_id)"),
    _Refusal("bad_signature", ("signature",),
             "the assertion's signature does not verify: the key must be the private key of "
             "the certificate (or the shared key) in the JWT verifier map entry, and algorithm "
             "must match it"),
    _Refusal("assertion_expired", ("expired", "exp claim", "not yet valid"),
             "the instance finds the assertion expired: this machine's clock is off from the "
             "instance's (sync it with NTP)"),
    _Refusal("assertion_replayed", ("jti", "replay", "already used"),
             "the instance has seen this assertion's jti before (JTI verification): another "
             "client may send assertions signed with the same key; each must be fresh"),
    _Refusal("invalid_client", ("client", "secret", "authentication"),
             "the client id or the client secret is wrong: check both against the OAuth "
             "application"),
)
_CREDENTIALS_CHECKLIST = (
    f"check: the system property {CREDENTIALS_PROPERTY} is true, the OAuth application has "
    "an OAuth Application User, and the client id and secret are its own")
_JWT_CHECKLIST = (
    "check: the JWT verifier map entry's Key Id is key_id and its certificate matches the key, "
    "subject is a user's value in the entity's User Field, the client secret is the "
    "application's, and this machine's clock is right")


@dataclass(slots=True)
class _Secrets:
    client_secret: bytearray | None = field(default=None, repr=False)
    key: Any = field(default=None, repr=False)  # a cryptography private key, or a bytearray


class UnattendedGrant:
    """Runs one unattended grant, as often as a new access token is needed."""

    def __init__(self, wire: tuple[Any, ...], transport: Transport, client_id: str,
                 timeout: float, redactor: Redactor) -> None:
        self._transport = transport
        self._client_id = client_id
        self._timeout = timeout
        self._redactor = redactor
        self._never_cancelled = threading.Event()
        self._secrets = _Secrets()
        self._kind = wire[0] if isinstance(wire, tuple) and wire else None
        if self._kind == "client_credentials" and len(wire) == 2:
            self._secrets.client_secret = self._read(wire[1], "client secret", timeout)
            self._jwt: _JwtSettings | None = None
        elif self._kind == "jwt_bearer" and len(wire) == 8:
            settings = _JwtSettings.from_wire(wire)
            self._jwt = settings
            if wire[5] is not None:
                self._secrets.client_secret = self._read(wire[5], "client secret", timeout)
            pem = read_secret(wire[1], "JWT signing key", timeout)
            for text in _key_texts(pem):
                redactor.add(text)
            try:
                self._secrets.key = _load_key(pem, settings.algorithm)
            finally:
                if self._secrets.key is not pem:  # an HS key is kept as it is; a PEM, loaded
                    wipe(pem)
        else:
            raise Failure("not an unattended grant")

    @property
    def name(self) -> str:
        """The grant type, as logs name it."""
        return "client credentials" if self._jwt is None else "JWT bearer"

    def _read(self, reference: object, what: str, timeout: float) -> bytearray:
        secret = read_secret(reference, what, timeout)
        # A client secret is long-lived: look for its encodings in every response, for good.
        self._redactor.add(secret.decode("utf-8", "replace"), live_until=math.inf)
        return secret

    def run(self, cancelled: threading.Event | None = None) -> TokenGrant:
        """A new access token; AuthorizationFailed, naming the cause, if the instance refuses."""
        form = {"grant_type": "client_credentials" if self._jwt is None else JWT_BEARER,
                "client_id": self._client_id}
        client_secret = self._secrets.client_secret
        if client_secret is not None:
            form["client_secret"] = client_secret.decode("utf-8", "replace")
        if self._jwt is not None:
            assertion = self._jwt.sign(self._secrets.key, self._client_id)
            self._redactor.add(assertion)
            form["assertion"] = assertion
        try:
            status, body = self._transport.post_form(
                TOKEN_PATH, form, time.monotonic() + self._timeout,
                cancelled or self._never_cancelled, retry=True)
        except Failure as exc:
            raise AuthorizationFailed(
                f"the {self.name} grant failed: {exc.message}; check the instance name and "
                "the network", "unreachable") from None
        finally:
            form.clear()
        logger.info("snworker worker: token endpoint answered %d to the %s grant", status,
                    self.name)
        if status in _REFUSED:
            raise self._refusal(status, body)
        if status != 200:
            raise AuthorizationFailed(f"the {self.name} grant failed: HTTP {status}",
                                      "exchange_failed")
        return self._grant(body)

    def renew(self) -> TokenGrant:
        """A new access token for the token store: a refusal now ends the grant."""
        try:
            return self.run()
        except AuthorizationFailed as exc:
            if exc.detail == "unreachable":
                raise Failure(exc.message) from None  # for now: the store keeps its token
            raise TokenExpired(f"{exc.message}; call conn.reconnect()") from None

    def wipe(self) -> None:
        """Forget the secrets (what Python lets us overwrite is overwritten)."""
        secrets_ = self._secrets
        if secrets_.client_secret is not None:
            wipe(secrets_.client_secret)
        if isinstance(secrets_.key, bytearray):
            wipe(secrets_.key)
        secrets_.client_secret = secrets_.key = None

    def _grant(self, body: object) -> TokenGrant:
        if isinstance(body, dict) and isinstance(body.get("access_token"), str):
            until = time.monotonic() + expires_in(body) + EXPIRY_SLACK
            self._redactor.add(body["access_token"], live_until=until)
        try:
            grant = TokenGrant.from_response(body, time.monotonic())
        except ValueError as exc:
            raise AuthorizationFailed(str(exc), "exchange_failed") from None
        grant.refresh_token = None  # never used: the grant runs again instead
        return grant

    def _refusal(self, status: int, body: object) -> AuthorizationFailed:
        said = _oauth_error(body)
        text = said.lower()
        for refusal in _REFUSALS:
            if refusal.reason == "grant_disabled" and self._jwt is not None:
                continue
            if any(word in text for word in refusal.words):
                return AuthorizationFailed(
                    f"the instance refused the {self.name} grant (HTTP {status}: {said}): "
                    f"{refusal.hint}", refusal.reason)
        checklist = _CREDENTIALS_CHECKLIST if self._jwt is None else _JWT_CHECKLIST
        return AuthorizationFailed(
            f"the instance refused the {self.name} grant (HTTP {status}: {said}); {checklist}",
            "invalid_client")


@dataclass(frozen=True, slots=True)
class _JwtSettings:
    key_id: str
    subject: str
    algorithm: str
    issuer: str | None
    lifetime: float

    @classmethod
    def from_wire(cls, wire: tuple[Any, ...]) -> _JwtSettings:
        _, _, key_id, subject, algorithm, _, issuer, lifetime = wire
        if not all(isinstance(v, str) and v for v in (key_id, subject, algorithm)) or (
                issuer is not None and not isinstance(issuer, str)) or not isinstance(
                lifetime, int | float) or not 10 <= lifetime <= 3600:
            raise Failure("a malformed JWT bearer grant")
        if algorithm[:2] not in ("RS", "ES", "HS") or algorithm[2:] not in _HASHES:
            raise Failure(f"unsupported JWT algorithm {algorithm!r}")
        return cls(key_id, subject, algorithm, issuer, float(lifetime))

    def sign(self, key: Any, client_id: str) -> str:
        """A fresh assertion: its own jti, issued now, valid `lifetime` seconds."""
        now = int(time.time())
        header = {"alg": self.algorithm, "typ": "JWT", "kid": self.key_id}
        claims = {"iss": self.issuer or client_id, "sub": self.subject, "aud": client_id,
                  "iat": now, "nbf": now - 5, "exp": now + int(self.lifetime),
                  "jti": str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))}
        signing_input = f"{_b64(_json(header))}.{_b64(_json(claims))}"
        signature = _signature(key, self.algorithm, signing_input.encode("ascii"))
        return f"{signing_input}.{_b64(signature)}"


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _signature(key: Any, algorithm: str, data: bytes) -> bytes:
    digest = _HASHES[algorithm[2:]]
    if algorithm.startswith("HS"):
        return hmac.new(bytes(key), data, digest).digest()
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    chosen: hashes.HashAlgorithm = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
                                    "sha512": hashes.SHA512()}[digest]
    if algorithm.startswith("RS"):
        return bytes(key.sign(data, padding.PKCS1v15(), chosen))
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(chosen)))
    size = _EC_SIZES[algorithm[2:]]
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _load_key(pem: bytearray, algorithm: str) -> Any:
    """The signing key: the shared key's bytes (HS*), else the private key PEM, loaded."""
    if algorithm.startswith("HS"):
        if len(pem) < 32:
            raise AuthorizationFailed(
                f"the shared key for {algorithm} is {len(pem)} bytes; it needs 32 or more",
                "secret_unreadable")
        return pem
    try:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError:
        raise AuthorizationFailed(
            f"signing with {algorithm} needs the cryptography package: pip install "
            "'snworker[jwt]'", "secret_unreadable") from None
    try:
        key = load_pem_private_key(bytes(pem), password=None)
    except (ValueError, TypeError) as exc:
        raise AuthorizationFailed(
            f"the JWT signing key is not an unencrypted PEM private key ({exc})",
            "secret_unreadable") from None
    wanted = rsa.RSAPrivateKey if algorithm.startswith("RS") else ec.EllipticCurvePrivateKey
    if not isinstance(key, wanted):
        raise AuthorizationFailed(
            f"the JWT signing key is not an {algorithm[:2]} key for algorithm {algorithm}: "
            "choose the algorithm that matches the key", "secret_unreadable")
    return key


def _key_texts(pem: bytearray) -> list[str]:
    """The forms of a key a response could show: the PEM, and its base64 in one line."""
    text = pem.decode("ascii", "replace")
    body = "".join(line.strip() for line in text.splitlines() if line and "-----" not in line)
    return [t for t in (text.strip(), body) if len(t) >= 16]


def _oauth_error(body: object) -> str:
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("error", "error_description") if body.get(k)]
        if parts:
            return ": ".join(parts)
    return "no reason given"
