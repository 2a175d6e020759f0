"""What a request to the instance may carry: methods, paths and headers, as allow-lists.

The worker applies these checks to every request, because it is the trust boundary: a
compromised parent can write any message to the pipe. The parent may run the same checks early
(the CLI does, before it asks for consent); passing them there proves nothing to the worker.

Only the worker frames a request on the wire. The parent may add end-to-end headers that are
known to be safe, and nothing that decides how the request is framed, routed or authenticated:
no Content-Length, Transfer-Encoding, TE, Trailer, Connection, Keep-Alive, Upgrade or Expect, no
Authorization, Cookie, Host or Proxy-*, and no Accept-Encoding (the worker must be able to read
every body it passes on, to redact it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

from snworker.errors import InvalidRequestError

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})
IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "HEAD"})

# End-to-end request headers a caller may set (RFC 9110), compared in lower case.
STANDARD_HEADERS = frozenset({
    "accept",
    "accept-language",
    "cache-control",
    "content-disposition",
    "content-language",
    "content-type",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-unmodified-since",
    "pragma",
    "prefer",
    "user-agent",
})
# Extension headers (`X-...`, such as ServiceNow's X-no-response-body) are end-to-end too, but
# for these, which proxies and load balancers read to route a request or to name its client.
ROUTING_HEADERS = frozenset({
    "x-client-ip",
    "x-cluster-client-ip",
    "x-host",
    "x-http-method",
    "x-http-method-override",
    "x-method-override",
    "x-real-ip",
    "x-usertoken",  # a ServiceNow session's token: a credential
})
ROUTING_PREFIXES = ("x-forwarded-", "x-original-", "x-rewrite-")
MAX_HEADERS = 64
MAX_HEADER_VALUE = 8192

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_EXTENSION = re.compile(r"x-[0-9a-z][0-9a-z\-]*")
_VALUE = re.compile(r"[\t\x20-\x7e]*")
_FORBIDDEN_IN_PATH = re.compile(r"[\x00-\x1f\x7f\\#]")


def check_method(method: object) -> str:
    """The method, if it is one snworker sends."""
    if not isinstance(method, str) or method not in METHODS:
        raise InvalidRequestError(
            f"unsupported HTTP method {_show(method)}; use one of " + ", ".join(sorted(METHODS)))
    return method


def check_path(path: object) -> str:
    """The path, if it names a resource on the instance and cannot leave its origin."""
    if not isinstance(path, str):
        raise InvalidRequestError("the path must be a string")
    if not path.startswith("/") or path.startswith("//"):
        raise InvalidRequestError(
            "expected a path on the instance starting with '/', like "
            f"'/api/now/table/incident'; got {_show(path)}")
    if _FORBIDDEN_IN_PATH.search(path):
        raise InvalidRequestError(
            f"the path contains a control character, '\\' or '#': {_show(path)}")
    route = path.split("?", 1)[0]
    if "%" in route or "." in route:
        decoded = unquote(route)
        if _FORBIDDEN_IN_PATH.search(decoded) or decoded.startswith("//"):
            raise InvalidRequestError(
                f"the path hides a control character, '\\' or '//': {_show(path)}")
        if ".." in decoded.split("/"):
            raise InvalidRequestError(f"the path may not contain '..' segments: {_show(path)}")
    return path


def header_allowed(name: str) -> bool:
    """True for a header name the caller may set (case-insensitive)."""
    lower = name.lower()
    if lower in STANDARD_HEADERS:
        return True
    return (_EXTENSION.fullmatch(lower) is not None and lower not in ROUTING_HEADERS
            and not lower.startswith(ROUTING_PREFIXES))


def check_headers(pairs: Iterable[tuple[object, object]]) -> list[tuple[str, str]]:
    """The caller's headers, if every one is allowed, well formed and given once."""
    checked: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in pairs:
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidRequestError(f"header {_show(name)} must be a string with a string value")
        if not _TOKEN.fullmatch(name):
            raise InvalidRequestError(f"not a valid header name: {_show(name)}")
        if not header_allowed(name):
            raise InvalidRequestError(
                f"the {name} header may not be given: snworker sets the headers that frame, "
                "route or authenticate a request (allowed: standard end-to-end headers such as "
                "Accept and Content-Type, and X- extension headers)")
        if name.lower() in seen:
            raise InvalidRequestError(f"the {name} header is given twice")
        if len(value) > MAX_HEADER_VALUE or not _VALUE.fullmatch(value):
            raise InvalidRequestError(
                f"the value of header {name} must be at most {MAX_HEADER_VALUE} printable ASCII "
                "characters, without line breaks")
        seen.add(name.lower())
        checked.append((name, value.strip()))
    if len(checked) > MAX_HEADERS:
        raise InvalidRequestError(f"at most {MAX_HEADERS} headers may be given")
    return checked


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 82 else text[:79] + "..."
