"""Unattended grants and the secrets they use, by reference: plain data that crosses to the worker.

    connect(..., grant=ClientCredentials(secret=Secret.file("/etc/app/sn-secret")))
    connect(..., grant=JwtBearer(key=Secret.systemd("sn-key"), key_id="kid1", subject="svc"))

A `Secret` names where the secret is (a file, an inherited descriptor, a systemd credential, the
desktop keyring); it never holds the secret. The worker reads it, keeps it in its own memory,
and runs the grant again whenever the access token runs out: there is no refresh token and no
browser. The parent sends only the references (`to_wire()`), checked here for their form.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Literal

from snworker.errors import InvalidRequestError

SecretKind = Literal["file", "fd", "systemd", "keyring"]
JwtAlgorithm = Literal["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "HS256", "HS384",
                       "HS512"]
JWT_ALGORITHMS: tuple[str, ...] = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
                                   "HS256", "HS384", "HS512")
# How long an assertion is valid: the instance only needs it for the one exchange.
DEFAULT_ASSERTION_LIFETIME = 300.0


@dataclass(frozen=True, slots=True)
class Secret:
    """Where a secret is, never the secret: the worker reads it from there.

    Build one with `Secret.file`, `Secret.fd`, `Secret.systemd` or `Secret.keyring`.
    """

    kind: SecretKind
    where: tuple[str | int, ...]

    @classmethod
    def file(cls, path: str | os.PathLike[str]) -> Secret:
        """A file only its owner may read (refused when its group or others can)."""
        text = os.fspath(path)
        if not isinstance(text, str) or not text or "\0" in text:
            raise InvalidRequestError("Secret.file needs a path")
        return cls("file", (os.path.abspath(text),))

    @classmethod
    def fd(cls, fd: int) -> Secret:
        """An open descriptor of this process (a pipe or a file), read to its end by the worker.

        POSIX only: the descriptor is passed to the worker when it starts, so it must be open
        when connect() is called.
        """
        if isinstance(fd, bool) or not isinstance(fd, int) or fd < 3:
            raise InvalidRequestError("Secret.fd needs a descriptor number of 3 or more")
        if sys.platform == "win32":
            raise InvalidRequestError("Secret.fd works on Linux and macOS; on Windows use "
                                      "Secret.file or Secret.keyring")
        return cls("fd", (fd,))

    @classmethod
    def systemd(cls, name: str) -> Secret:
        """A systemd credential (`LoadCredential=name:...`): $CREDENTIALS_DIRECTORY/name."""
        if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name
                or "\\" in name or not name.isprintable()):
            raise InvalidRequestError(f"not a systemd credential name: {name!r}")
        return cls("systemd", (name,))

    @classmethod
    def keyring(cls, service: str, user: str) -> Secret:
        """A password in the desktop keyring (the `keyring` extra; not under cron or CI)."""
        for value in (service, user):
            if not isinstance(value, str) or not value or not value.isprintable():
                raise InvalidRequestError("Secret.keyring needs a service and a user name")
        return cls("keyring", (service, user))

    def to_wire(self) -> tuple[Any, ...]:
        """The reference as a tuple of builtins."""
        return (self.kind, *self.where)

    def fds(self) -> tuple[int, ...]:
        """The descriptors the worker must inherit to read this secret."""
        return (int(self.where[0]),) if self.kind == "fd" else ()


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """The client-credentials grant: the OAuth client's id and secret buy a token.

    Every token acts as the OAuth Application User the instance's admin named for the client.

    Args:
        secret: where the client secret is.
    """

    secret: Secret

    def __post_init__(self) -> None:
        _need_secret(self.secret, "ClientCredentials(secret=...)")

    def to_wire(self) -> tuple[Any, ...]:
        """The grant as a tuple of builtins, for the `Connect` message."""
        return ("client_credentials", self.secret.to_wire())

    def fds(self) -> tuple[int, ...]:
        """The descriptors the worker must inherit."""
        return self.secret.fds()


@dataclass(frozen=True, slots=True)
class JwtBearer:
    """The JWT bearer grant: an assertion signed with `key` buys a token.

    Args:
        key: where the private key is (PEM; for HS256-512, the shared key).
        key_id: the `kid`, as the JWT verifier map entry on the instance names it.
        subject: the `sub`: the user's value in the field the OAuth entity matches
            (user_name, email or sys_id).
        algorithm: RS256/384/512, ES256/384/512, or HS256/384/512.
        client_secret: where the client secret is; None for a public client.
        issuer: the `iss`; default: the client id.
        lifetime: seconds each assertion is valid.
    """

    key: Secret
    key_id: str
    subject: str
    algorithm: JwtAlgorithm = "RS256"
    client_secret: Secret | None = None
    issuer: str | None = None
    lifetime: float = DEFAULT_ASSERTION_LIFETIME

    def __post_init__(self) -> None:
        _need_secret(self.key, "JwtBearer(key=...)")
        if self.client_secret is not None:
            _need_secret(self.client_secret, "JwtBearer(client_secret=...)")
        for name in ("key_id", "subject"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or not value.isprintable():
                raise InvalidRequestError(f"JwtBearer.{name} must be a non-empty string")
        if self.issuer is not None and (not isinstance(self.issuer, str) or not self.issuer):
            raise InvalidRequestError("JwtBearer.issuer must be a non-empty string or None")
        if self.algorithm not in JWT_ALGORITHMS:
            raise InvalidRequestError(f"JwtBearer.algorithm must be one of {JWT_ALGORITHMS}")
        if (isinstance(self.lifetime, bool) or not isinstance(self.lifetime, int | float)
                or not math.isfinite(self.lifetime) or not 10 <= self.lifetime <= 3600):
            raise InvalidRequestError("JwtBearer.lifetime must be 10 to 3600 seconds")

    def to_wire(self) -> tuple[Any, ...]:
        """The grant as a tuple of builtins, for the `Connect` message."""
        return ("jwt_bearer", self.key.to_wire(), self.key_id, self.subject, self.algorithm,
                None if self.client_secret is None else self.client_secret.to_wire(),
                self.issuer, float(self.lifetime))

    def fds(self) -> tuple[int, ...]:
        """The descriptors the worker must inherit."""
        return self.key.fds() + (self.client_secret.fds() if self.client_secret else ())


Grant = ClientCredentials | JwtBearer


def grant_wire(grant: object) -> tuple[Any, ...]:
    """connect()'s `grant` argument, checked, as the Connect message carries it."""
    if grant is None:
        return ()
    if not isinstance(grant, ClientCredentials | JwtBearer):
        raise InvalidRequestError("grant must be snworker.ClientCredentials(...) or "
                                  "snworker.JwtBearer(...)")
    return grant.to_wire()


def _need_secret(value: object, where: str) -> None:
    if isinstance(value, str | bytes | bytearray):
        raise InvalidRequestError(
            f"{where} takes a snworker.Secret reference (Secret.file, Secret.fd, "
            "Secret.systemd, Secret.keyring), not the secret itself: the worker reads it, so "
            "this process never holds it")
    if not isinstance(value, Secret):
        raise InvalidRequestError(f"{where} must be a snworker.Secret")
