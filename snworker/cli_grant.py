"""The unattended-grant options that `request` and `agent start` share.

    --grant client-credentials --client-secret-file F
    --grant jwt --key-file F --key-id K --subject S [--algorithm RS256] [--client-secret-file F]
    --client-secret-credential NAME, --key-credential NAME   (systemd: $CREDENTIALS_DIRECTORY)

The options name where the secrets are; the worker reads them, this process never does.
"""

from __future__ import annotations

import argparse

from snworker.grants import JWT_ALGORITHMS, ClientCredentials, Grant, JwtBearer, Secret

GRANTS = ("client-credentials", "jwt")


class GrantUsageError(Exception):
    """The grant options do not fit together; nothing was started."""


def add_grant_arguments(parser: argparse.ArgumentParser) -> None:
    """--grant and the options naming its secrets."""
    group = parser.add_argument_group(
        "unattended grant (no browser; the worker reads the secrets, this process never does)")
    group.add_argument("--grant", choices=GRANTS,
                       help="client-credentials or jwt (JWT bearer) instead of a user's consent")
    group.add_argument("--client-secret-file", metavar="FILE",
                       help="a file, mode 600, holding the OAuth client secret")
    group.add_argument("--client-secret-credential", metavar="NAME",
                       help="the client secret as a systemd credential (LoadCredential=NAME:...)")
    group.add_argument("--key-file", metavar="FILE",
                       help="jwt: a file, mode 600, holding the PEM private key (HS*: the "
                       "shared key)")
    group.add_argument("--key-credential", metavar="NAME",
                       help="jwt: the key as a systemd credential")
    group.add_argument("--key-id", metavar="KID",
                       help="jwt: the key id of the instance's JWT verifier map entry")
    group.add_argument("--subject", metavar="USER",
                       help="jwt: the user the token acts as (user_name, email or sys_id, as "
                       "the OAuth entity's user field says)")
    group.add_argument("--algorithm", choices=JWT_ALGORITHMS, default="RS256",
                       help="jwt: the signing algorithm (default RS256)")


def grant_from_arguments(args: argparse.Namespace) -> Grant | None:
    """The grant the options describe, or None; GrantUsageError when they do not fit."""
    secret = _one(args.client_secret_file, args.client_secret_credential, "client secret")
    if args.grant is None:
        if secret or args.key_file or args.key_credential or args.key_id or args.subject:
            raise GrantUsageError("the secret and key options go with --grant")
        return None
    if args.grant == "client-credentials":
        if secret is None:
            raise GrantUsageError("--grant client-credentials needs --client-secret-file (or "
                                  "--client-secret-credential)")
        if args.key_file or args.key_credential or args.key_id or args.subject:
            raise GrantUsageError("--key-file, --key-id and --subject go with --grant jwt")
        return ClientCredentials(secret=secret)
    key = _one(args.key_file, args.key_credential, "key")
    if key is None or not args.key_id or not args.subject:
        raise GrantUsageError("--grant jwt needs --key-file (or --key-credential), --key-id "
                              "and --subject")
    return JwtBearer(key=key, key_id=args.key_id, subject=args.subject,
                     algorithm=args.algorithm, client_secret=secret)


def _one(path: str | None, credential: str | None, what: str) -> Secret | None:
    if path and credential:
        raise GrantUsageError(f"give the {what} as a file or as a systemd credential, not both")
    if path:
        return Secret.file(path)
    if credential:
        return Secret.systemd(credential)
    return None
