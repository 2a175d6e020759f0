"""Table API conveniences on top of a connection: records by sys_id, paged iteration, and
the files attached to records."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar, cast

from snworker.connection import ServiceNowConnection
from snworker.entities.Core import AttachmentMetadata
from snworker.errors import ApiRequestError, InvalidRequestError
from snworker.response import ApiResponse

R = TypeVar("R", bound=Mapping[str, Any])


class Table(Generic[R]):
    """One table on the instance, e.g. `Table[Incident](conn, "incident")`.

    Uses the v2 Table API, which answers an empty list with 200 and `[]`.
    """

    def __init__(self, conn: ServiceNowConnection, name: str) -> None:
        self._conn = conn
        self.name = name
        self.path = table_path(name)

    def get(self, sys_id: str, *, fields: Sequence[str] = (),
            display_value: bool | str = False) -> R | None:
        """The record with `sys_id`, or None when there is none (or an ACL hides it)."""
        _check_sys_id(sys_id)
        try:
            resp = self._conn.execute_api_request(
                f"{self.path}/{sys_id}", "GET", params=_params(fields, display_value))
        except ApiRequestError as exc:
            if exc.status == 404:
                return None
            raise
        return cast(R, resp.data)

    def create(self, record: R) -> R:
        """Insert `record` (fields of the table's type: a typo is a type error); as stored."""
        return cast(R, self._conn.execute_api_request(self.path, "POST", dict(record)).data)

    def update(self, sys_id: str, changes: R) -> R:
        """PATCH the fields in `changes` (of the table's type); the record as stored."""
        _check_sys_id(sys_id)
        return cast(R, self._conn.execute_api_request(
            f"{self.path}/{sys_id}", "PATCH", dict(changes)).data)

    def delete(self, sys_id: str) -> None:
        """Delete the record."""
        _check_sys_id(sys_id)
        self._conn.execute_api_request(f"{self.path}/{sys_id}", "DELETE")

    def iter(self, query: str = "", *, fields: Sequence[str] = (), page_size: int = 500,
             limit: int | None = None, display_value: bool | str = False) -> Iterator[R]:
        """Every record matching the encoded `query`, fetched `page_size` at a time.

        Pages are read by offset, and offsets only mean something in a fixed order: a query
        without an ORDERBY term gets `ORDERBYsys_id`, without which the instance may return a
        record on two pages and skip another. The first page asks for the count of matches
        (X-Total-Count), and the pages end there; later pages skip the count, which costs the
        instance a query each.
        """
        pages = Pages(query, fields, page_size, limit, display_value)
        while (params := pages.next_params()) is not None:
            resp = self._conn.execute_api_request(self.path, "GET", params=params)
            yield from cast(list[R], pages.read(resp))

    # --- attachments (the Attachment API, for this table's records) -------------------------

    def add_attachment(self, sys_id: str, file_name: str, content: bytes,
                       content_type: str = "application/octet-stream") -> AttachmentMetadata:
        """Attach `content` to the record as `file_name`; the attachment's record.

        Raises:
            InvalidRequestError: a bad sys_id, file name or content type (nothing sent).
            ApiRequestError: the instance refused it (no such record, no write access).
        """
        _check_sys_id(sys_id)
        if not isinstance(content, bytes | bytearray):
            raise InvalidRequestError("an attachment's content is bytes")
        if not file_name or not file_name.isprintable() or "/" in file_name:
            raise InvalidRequestError(f"not a file name: {file_name!r}")
        resp = self._conn.execute_api_request(
            "/api/now/attachment/file", "POST", bytes(content),
            headers={"Content-Type": content_type},
            params={"table_name": self.name, "table_sys_id": sys_id, "file_name": file_name})
        return cast(AttachmentMetadata, resp.data)

    def attachments(self, sys_id: str) -> list[AttachmentMetadata]:
        """The records of the files attached to the record, oldest first."""
        _check_sys_id(sys_id)
        resp = self._conn.execute_api_request("/api/now/attachment", "GET", params={
            "sysparm_query": f"table_name={self.name}^table_sys_id={sys_id}"
                             "^ORDERBYsys_created_on"})
        return cast(list[AttachmentMetadata], resp.data or [])

    def attachment_content(self, attachment_sys_id: str) -> bytes:
        """The bytes of an attachment (by the attachment's own sys_id)."""
        _check_sys_id(attachment_sys_id)
        return self._conn.execute_api_request(
            f"/api/now/attachment/{attachment_sys_id}/file", "GET",
            headers={"Accept": "*/*"}).content


class Pages:
    """The pages of one paged read: what to ask for next and when to stop (no I/O).

    The sync `Table.iter` and the async one drive the same pages.
    """

    def __init__(self, query: str, fields: Sequence[str], page_size: int, limit: int | None,
                 display_value: bool | str) -> None:
        if page_size < 1:
            raise InvalidRequestError("page_size must be at least 1")
        self._query = ordered(query)
        self._fields = fields
        self._page_size = page_size
        self._limit = limit
        self._display_value = display_value
        self._offset = 0
        self._size = 0
        self._total: int | None = None
        self._done = False

    def next_params(self) -> dict[str, Any] | None:
        """The query parameters of the next page; None when the pages have ended."""
        limit, offset = self._limit, self._offset
        if self._done or (limit is not None and offset >= limit):
            return None
        size = self._size = self._page_size if limit is None else min(self._page_size,
                                                                      limit - offset)
        params = _params(self._fields, self._display_value)
        params.update(sysparm_limit=size, sysparm_offset=offset)
        if offset:
            params["sysparm_no_count"] = True
        params["sysparm_query"] = self._query
        return params

    def read(self, resp: ApiResponse[Any]) -> list[Any]:
        """The records of the page `resp` answered; notes whether another page follows."""
        page: list[Any] = resp.data or []
        self._offset += self._size
        self._total = _total_count(resp.headers, self._total)
        self._done = not _more_pages(resp.headers, self._total, self._offset,
                                     full=len(page) >= self._size)
        return page


def table_path(name: str) -> str:
    """The v2 Table API's path for table `name`; InvalidRequestError for a malformed name."""
    if not isinstance(name, str) or not name or not all(c.isalnum() or c == "_" for c in name):
        raise InvalidRequestError(f"not a table name: {name!r}")
    return f"/api/now/v2/table/{name}"


def ordered(query: str) -> str:
    """`query` with `ORDERBYsys_id` added when it has no ORDERBY (or ORDERBYDESC) term."""
    if any(term.startswith("ORDERBY") for term in query.split("^")):
        return query
    return f"{query}^ORDERBYsys_id" if query else "ORDERBYsys_id"


def link_targets(header: str) -> dict[str, str]:
    """The URLs of an HTTP Link header by relation: `<url>;rel="next"` -> {"next": url}."""
    targets: dict[str, str] = {}
    for url, parameters in _LINK.findall(header):
        for name, value in _LINK_PARAMETER.findall(parameters):
            if name.lower() == "rel":
                for relation in value.strip('"').lower().split():
                    targets.setdefault(relation, url.strip())
    return targets


# URLs in a Link header may hold commas (ServiceNow leaves them unescaped in sysparm_fields),
# so a link is taken as `<...>` and the parameters after it, never split on commas.
_LINK = re.compile(r"<([^>]*)>([^<]*)")
_LINK_PARAMETER = re.compile(r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("[^"]*"|[^;,\s]*)')


def _total_count(headers: Mapping[str, str], known: int | None) -> int | None:
    try:
        return int(headers["X-Total-Count"])
    except (KeyError, ValueError):
        return known


def _more_pages(headers: Mapping[str, str], total: int | None, offset: int, *,
                full: bool) -> bool:
    """Whether a page follows the one that ended at `offset`.

    With a count, the pages end at it; a page thinned by ACLs does not end them early. Without
    one, a short page ends them, and so does a Link header without a "next" link.
    """
    if total is not None:
        return offset < total
    link = headers.get("Link")
    return full and (link is None or "next" in link_targets(link))


def _params(fields: Sequence[str], display_value: bool | str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if fields:
        params["sysparm_fields"] = ",".join(fields)
    if display_value:
        params["sysparm_display_value"] = display_value
    return params


def _check_sys_id(sys_id: str) -> None:
    if not isinstance(sys_id, str) or len(sys_id) != 32 or not all(
            c in "0123456789abcdef" for c in sys_id):
        raise InvalidRequestError(f"a sys_id is 32 lowercase hex characters, not {sys_id!r}")
