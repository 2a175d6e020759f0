"""JWT bearer assertions, as the instance checks them: verifier map, signature, claims, jti.

Protocol only, as `oauth.py`: the outcome is the sys_id of the user the assertion names, or the
name of the refusal (a key of `platform.UNATTENDED_REFUSALS`). RS* and ES* signatures are
checked with `cryptography`; HS* with the standard library's hmac.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from snworker.testing import platform

_HASHES = {"256": "sha256", "384": "sha384", "512": "sha512"}


@dataclass(frozen=True, slots=True)
class Refused:
    """Why an assertion was refused: a key of `platform.UNATTENDED_REFUSALS`."""

    reason: str


@dataclass(slots=True)
class AssertionChecker:
    """The instance's JWT verifier map and its memory of the jti values already used."""

    verifiers: Mapping[str, str] = field(default_factory=dict)  # kid -> PEM key/cert or shared
    user_field: str = "user_name"
    _used: dict[str, float] = field(default_factory=dict)  # jti -> when it can be forgotten

    def check(self, assertion: str, client_id: str, now: float,
              find_user: Callable[[str, str], str | None]) -> str | Refused:
        """The sys_id of the user `assertion` acts for, or why it is refused."""
        try:
            head_b64, claims_b64, signature_b64 = assertion.split(".")
            header = json.loads(_unb64(head_b64))
            claims = json.loads(_unb64(claims_b64))
            signature = _unb64(signature_b64)
        except (ValueError, binascii.Error):
            return Refused("malformed")
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return Refused("malformed")
        key = self.verifiers.get(str(header.get("kid", "")))
        if key is None:
            return Refused("unknown_key")
        algorithm = str(header.get("alg", ""))
        if algorithm not in platform.JWT_ALGORITHMS or not _verifies(
                key, algorithm, f"{head_b64}.{claims_b64}".encode("ascii"), signature):
            return Refused("bad_signature")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if client_id not in audiences:
            return Refused("malformed")
        expires = claims.get("exp")
        if not isinstance(expires, int | float) or now >= expires:
            return Refused("assertion_expired")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            return Refused("malformed")
        for used, until in list(self._used.items()):
            if until <= now:
                del self._used[used]
        if jti in self._used:
            return Refused("assertion_replayed")
        self._used[jti] = float(expires)
        user = find_user(self.user_field, str(claims.get("sub", "")))
        if user is None:
            return Refused("unknown_subject")
        return user


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _verifies(key: str, algorithm: str, data: bytes, signature: bytes) -> bool:
    digest = _HASHES[algorithm[2:]]
    if algorithm.startswith("HS"):
        if key.lstrip().startswith("-----"):
            return False  # a certificate is not a shared key
        expected = hmac.new(key.encode(), data, digest).digest()
        return hmac.compare_digest(expected, signature)
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        public: Any = (x509.load_pem_x509_certificate(key.encode()).public_key()
                       if "CERTIFICATE" in key else load_pem_public_key(key.encode()))
    except ValueError:
        return False
    chosen: hashes.HashAlgorithm = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
                                    "sha512": hashes.SHA512()}[digest]
    try:
        if algorithm.startswith("RS") and isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, data, padding.PKCS1v15(), chosen)
            return True
        if algorithm.startswith("ES") and isinstance(public, ec.EllipticCurvePublicKey):
            half = len(signature) // 2
            der = encode_dss_signature(int.from_bytes(signature[:half], "big"),
                                       int.from_bytes(signature[half:], "big"))
            public.verify(der, data, ec.ECDSA(chosen))
            return True
    except InvalidSignature:
        return False
    return False
