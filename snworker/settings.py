"""connect()'s arguments, checked: the instance, redirect URIs, timeouts, proxy and CA bundle.

Checked in the parent, so that a mistake is an InvalidRequestError before anything starts; the
worker checks the Connect message again, since the parent is not trusted.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import urllib.request
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit, urlunsplit

from snworker.errors import InvalidRequestError
from snworker.grants import Grant, grant_wire
from snworker.messages import Connect
from snworker.policy import Policy, RetryPolicy

DEFAULT_REDIRECT_URI = "http://127.0.0.1:8765/callback"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# A host name with at least one dot, and a port perhaps: "dev12345.service-now.com".
_HOST_NAME = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+(:\d{1,5})?")


def connect_settings(
    instance: str, client_id: str, *, redirect_uri: str | Sequence[str] = DEFAULT_REDIRECT_URI,
    scopes: Iterable[str] = (), authorization_timeout: float = 300.0,
    request_timeout: float = 30.0, retry: RetryPolicy | None = None,
    ca_bundle: str | os.PathLike[str] | None = None, proxy: str | None = None,
    grant: Grant | None = None, policy: Policy | None = None,
) -> Connect:
    """connect()'s arguments, checked, as the Connect message (its id still 0)."""
    instance_url = normalize_instance_url(instance)
    uris = redirect_uris(redirect_uri)
    if not isinstance(client_id, str) or not client_id or not client_id.isprintable():
        raise InvalidRequestError("client_id must be a non-empty printable string")
    scope_list = (scopes,) if isinstance(scopes, str) else tuple(scopes)
    if not all(isinstance(s, str) and s and s.isprintable() and " " not in s for s in scope_list):
        raise InvalidRequestError("scopes must be non-empty strings without spaces")
    auth_timeout = seconds(authorization_timeout, "authorization_timeout")
    req_timeout = seconds(request_timeout, "request_timeout")
    retry_policy = retry if retry is not None else RetryPolicy()
    if not isinstance(retry_policy, RetryPolicy):
        raise InvalidRequestError("retry must be a snworker.RetryPolicy")
    if policy is not None and not isinstance(policy, Policy):
        raise InvalidRequestError("policy must be a snworker.Policy")
    return Connect(
        0, instance_url, client_id, uris, scope_list, auth_timeout, req_timeout,
        retry_policy.to_wire(), logging.getLogger("snworker").getEffectiveLevel(),
        proxy_for(instance_url, proxy), ca_bundle_path(ca_bundle), grant_wire(grant),
        () if policy is None else policy.to_wire(),
    )


def normalize_instance_url(instance: str) -> str:
    """"dev12345", "dev12345.service-now.com" or "https://dev12345.service-now.com/" ->
    "https://dev12345.service-now.com"."""
    if not isinstance(instance, str) or not instance.strip():
        raise InvalidRequestError("instance must be an instance name or an https URL")
    text = instance.strip()
    if "://" not in text:
        if all(c.isalnum() or c == "-" for c in text):
            return f"https://{text.lower()}.service-now.com"
        if not _HOST_NAME.fullmatch(text):
            raise InvalidRequestError(f"not an instance name, host name or https URL: {text!r}")
        text = f"https://{text.lower()}"  # a host name, as gh and curl take one
    parts = urlsplit(text)
    host = parts.hostname or ""
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise InvalidRequestError(
            f"the instance URL must be an origin only (scheme, host, port): {text!r}"
        )
    if parts.scheme == "https" and host:
        pass
    elif parts.scheme == "http" and is_loopback(host):
        pass  # a local stub; never a real instance
    else:
        raise InvalidRequestError(f"the instance URL must use https: {text!r}")
    try:
        port = parts.port
    except ValueError:
        raise InvalidRequestError(f"bad port in the instance URL: {text!r}") from None
    netloc = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{netloc}" + (f":{port}" if port is not None else "")


def redirect_uris(given: str | Sequence[str]) -> tuple[str, ...]:
    uris = (given,) if isinstance(given, str) else tuple(given)
    if not uris:
        raise InvalidRequestError("redirect_uri must name at least one loopback URL")
    for uri in uris:
        check_redirect_uri(uri)
    return uris


def check_redirect_uri(uri: str) -> None:
    if not isinstance(uri, str):
        raise InvalidRequestError("redirect_uri must be a string or a list of strings")
    parts = urlsplit(uri)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme == "http" and parts.hostname == "localhost":
        loopback = urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}" if port else
                                             "127.0.0.1"))
        raise InvalidRequestError(
            f"redirect_uri must name the loopback address 127.0.0.1, not localhost: {uri!r}. "
            "A browser may resolve localhost to ::1, where another user's program can listen "
            f"on the same port and take the code (RFC 8252 8.3). Use {loopback!r}, and "
            "register it with the OAuth app")
    if (parts.scheme != "http" or parts.hostname != "127.0.0.1"
            or port is None or port < 0 or parts.query or parts.fragment):
        raise InvalidRequestError(
            "redirect_uri must be a loopback URL with a port, like "
            f"'http://127.0.0.1:8765/callback' (port 0: any free port); got {uri!r}"
        )


def ca_bundle_path(path: str | os.PathLike[str] | None) -> str | None:
    if path is None:
        return None
    bundle = os.path.abspath(os.fspath(path))
    if not os.path.isfile(bundle):
        raise InvalidRequestError(f"ca_bundle is not a file: {bundle!r}")
    return bundle


def proxy_for(instance_url: str, proxy: str | None) -> str | None:
    """The proxy for the instance: the argument, else HTTPS_PROXY unless NO_PROXY says no."""
    host = urlsplit(instance_url).hostname or ""
    if is_loopback(host):
        return None
    if proxy is None:
        environment = urllib.request.getproxies_environment()
        proxy = environment.get("https")
        if proxy is None or bypassed(host, environment.get("no", "")):
            return None
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequestError(f"proxy must be an http:// or https:// URL, not {proxy!r}")
    return parts.geturl()


def bypassed(host: str, no_proxy: str) -> bool:
    """True when NO_PROXY (comma-separated hosts, domain suffixes or *) names `host`."""
    host = host.lower().rstrip(".")
    for entry in no_proxy.split(","):
        name = entry.strip().lower().split(":")[0].rstrip(".")
        if name == "*" or (name and (host == name.lstrip(".") or host.endswith(
                "." + name.lstrip(".")))):
            return True
    return False


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def seconds(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value <= 0:
        raise InvalidRequestError(f"{name} must be a positive number of seconds")
    return float(value)
