"""The access policy, enforced where the wire is: what a connection's requests may reach.

A request is refused before anything is sent unless the policy allows its method, its API and
every table whose data it reaches. The table-data APIs are known by their paths:

    /api/now[/v1|/v2]/table/{table}[/{sys_id}]     Table
    /api/now[/v1]/stats/{table}                     Aggregate
    /api/now[/v1]/attachment/file?table_name=T      Attachment upload, by table
    /api/now[/v1]/attachment?sysparm_query=table_name=T^...   Attachment list, by table
    /api/now[/v1]/attachment/{sys_id}[/file]        Attachment by sys_id: the worker reads the
                                                    attachment's table_name first
    /api/now[/v1]/import/{staging_table}            Import Set
    /api/now[/v1]/batch                             Batch: each sub-request decoded and checked

Under a `tables` or `apis` policy anything else (a multipart upload, a scripted REST API, a UI
page, an attachment by sys_id inside a batch) is refused unless `apis` names its prefix: the
worker cannot tell which table such a request reaches, so it is not allowed by default.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from snworker.policy import Policy
from snworker.worker.failures import InvalidRequest

_TABLE = re.compile(r"^/api/now(?:/v[12])?/table/([^/]+)(?:/[^/]+)?$")
_STATS = re.compile(r"^/api/now(?:/v1)?/stats/([^/]+)$")
_IMPORT = re.compile(r"^/api/now(?:/v1)?/import/([^/]+)(?:/insertmultiple)?$")
_ATTACHMENT_FILE = re.compile(r"^/api/now(?:/v1)?/attachment/file$")
_ATTACHMENT_LIST = re.compile(r"^/api/now(?:/v1)?/attachment$")
_BATCH = re.compile(r"^/api/now(?:/v1)?/batch$")
_ATTACHMENT_ONE = re.compile(r"^/api/now(?:/v1)?/attachment/([0-9a-f]{32})(?:/file)?$")
# Query constructs that reach rows of other tables than the one named.
_OTHER_TABLES = re.compile(r"(?:^|\^)(?:JOIN|RLQUERY)", re.IGNORECASE)
_MAX_BATCH_BODY = 16 << 20


class AccessPolicy:
    """A `Policy`, applied to the requests of one connection."""

    def __init__(self, policy: Policy | None) -> None:
        self._policy = policy
        self._active = policy is not None and (policy.methods, policy.tables, policy.apis) != (
            None, None, None)

    @classmethod
    def from_wire(cls, values: tuple[Any, ...]) -> AccessPolicy:
        """From the Connect message's `access` field; () is no policy."""
        if values == ():
            return cls(None)
        return cls(Policy.from_wire(values))

    @property
    def active(self) -> bool:
        """True when some request could be refused."""
        return self._active

    def describe(self) -> dict[str, Any]:
        """The policy, for an agent's status."""
        policy = self._policy
        if policy is None:
            return {}
        return {"methods": policy.methods, "tables": policy.tables, "apis": policy.apis}

    def check(self, method: str, url: str, body: bytes | None) -> str | None:
        """Raise InvalidRequest unless the policy allows this request (`url` as it is sent).

        Returns the sys_id of an attachment whose table decides (then call `check_table` with
        it), or None when the request is allowed as it is.
        """
        if not self._active:
            return None
        parts = urlsplit(url)
        return self._check(method, parts.path, parts.query, body, nested=False)

    def check_table(self, table: str, what: str) -> None:
        """Raise InvalidRequest unless the policy allows the data of `table` (for `what`)."""
        tables = self._policy.tables if self._policy is not None else None
        if tables is not None and table.lower() not in tables:
            raise InvalidRequest(f"refused by the access policy: {what} belongs to table "
                                 f"{table!r}, which is not allowed (allowed: "
                                 f"{', '.join(tables)})")

    def _check(self, method: str, raw_path: str, query: str, body: bytes | None,
               nested: bool) -> str | None:
        policy = self._policy
        assert policy is not None
        path = _normal_path(raw_path)
        params = parse_qsl(query, keep_blank_values=True)
        if _BATCH.match(path):
            if nested:
                raise InvalidRequest("refused by the access policy: a batch inside a batch")
            self._check_batch(body)
            return None
        if policy.methods is not None and method not in policy.methods and not (
                method == "HEAD" and "GET" in policy.methods):
            raise InvalidRequest(f"refused by the access policy: {method} is not allowed "
                                 f"(allowed: {', '.join(policy.methods)})")
        listed = policy.apis is not None and any(
            path == api or path.startswith(api + "/") for api in policy.apis)
        if policy.apis is not None and not listed:
            raise InvalidRequest(f"refused by the access policy: {path} is not under an "
                                 f"allowed API ({', '.join(policy.apis)})")
        if policy.tables is None:
            return None
        tables = _tables_reached(path, params, method)
        one = _ATTACHMENT_ONE.match(path)
        if tables is None and one and method in ("GET", "HEAD", "DELETE") and not listed:
            if nested:
                raise InvalidRequest("refused by the access policy: an attachment by sys_id "
                                     "inside a batch (its table cannot be checked there)")
            return one.group(1)
        if tables is None:
            if listed:
                return None  # an API the policy names explicitly: trusted with any table
            raise InvalidRequest(
                f"refused by the access policy: {method} {path} may reach tables other than "
                f"{', '.join(policy.tables)} (only the Table, Aggregate, Attachment-by-table, "
                "Import Set and Batch APIs are told apart; name other APIs in `apis`)")
        for table in tables:
            if table not in policy.tables:
                raise InvalidRequest(f"refused by the access policy: table {table!r} is not "
                                     f"allowed (allowed: {', '.join(policy.tables)})")
        return None

    def _check_batch(self, body: bytes | None) -> None:
        """Every sub-request of a batch must pass on its own."""
        if body is None or len(body) > _MAX_BATCH_BODY:
            raise InvalidRequest("refused by the access policy: a batch without a readable body")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            raise InvalidRequest("refused by the access policy: a batch body that is not "
                                 "JSON") from None
        items = payload.get("rest_requests") if isinstance(payload, dict) else None
        if not isinstance(items, list):
            raise InvalidRequest("refused by the access policy: a batch without rest_requests")
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("url"), str) \
                    or not isinstance(item.get("method"), str):
                raise InvalidRequest("refused by the access policy: a batch request without a "
                                     "url and a method")
            sub_body: bytes | None = None
            encoded = item.get("body")
            if encoded:
                if not isinstance(encoded, str):
                    raise InvalidRequest("refused by the access policy: a batch request body "
                                         "that is not base64")
                try:
                    sub_body = base64.b64decode(encoded, validate=True)
                except (binascii.Error, ValueError):
                    raise InvalidRequest("refused by the access policy: a batch request body "
                                         "that is not base64") from None
            url = item["url"]
            if not url.startswith("/") or url.startswith("//"):
                raise InvalidRequest(f"refused by the access policy: a batch request for "
                                     f"{url[:80]!r}")
            parts = urlsplit(url)
            self._check(item["method"].upper(), parts.path, parts.query, sub_body, nested=True)


def _normal_path(path: str) -> str:
    """The path as the instance reads it: decoded, lower case, without empty segments."""
    decoded = unquote(path)
    if "%" in decoded or "\\" in decoded or ";" in decoded:
        raise InvalidRequest(f"refused by the access policy: an unusual path {path[:80]!r}")
    segments = [s for s in decoded.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise InvalidRequest(f"refused by the access policy: an unusual path {path[:80]!r}")
    return "/" + "/".join(segments).lower()


def _tables_reached(path: str, params: list[tuple[str, str]], method: str) -> list[str] | None:
    """The tables whose data this request reaches; None when the worker cannot tell."""
    for pattern in (_TABLE, _STATS, _IMPORT):
        found = pattern.match(path)
        if found:
            for name, value in params:
                if name.lower() == "sysparm_query" and _OTHER_TABLES.search(value):
                    return None
                if name.lower() == "sysparm_fields" and "." in value:
                    return None  # dot-walked fields: columns of referenced tables
            return [found.group(1)]
    if _ATTACHMENT_FILE.match(path) and method == "POST":
        names = [v.lower() for k, v in params if k == "table_name"]
        return names if len(names) == 1 else None
    if _ATTACHMENT_LIST.match(path) and method in ("GET", "HEAD"):
        queries = [v for k, v in params if k == "sysparm_query"]
        return _attachment_tables(queries[0]) if len(queries) == 1 else None
    return None


def _attachment_tables(query: str) -> list[str] | None:
    """The table an attachment query is limited to: `table_name=T` AND'ed with anything
    that cannot widen it (no OR, no new query)."""
    terms = query.split("^")
    if any(term.upper().startswith(("OR", "NQ")) or "^OR" in term.upper() for term in terms):
        return None
    tables = [term.split("=", 1)[1].lower() for term in terms
              if term.startswith("table_name=") and "," not in term]
    return tables[:1] if len(tables) == 1 else None
