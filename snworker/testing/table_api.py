"""The Table API over HTTP: `/api/now[/v1|/v2]/table/{table}[/{sys_id}]`."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from snworker.testing import platform
from snworker.testing.query import parse
from snworker.testing.state import StubState
from snworker.testing.tables import DisplayMode, RenderOptions, TableError, invalid_table

_DISPLAY_MODES: dict[str, DisplayMode] = {"true": "true", "false": "false", "all": "all"}


def json_response(payload: object, status: int = 200) -> Response:
    """A JSON response encoded once, compactly (records may be megabytes)."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status=status, content_type=platform.JSON_TYPE)


def error_response(status: int, message: str, detail: str | None) -> Response:
    """A failure in the platform's envelope."""
    return Response(
        platform.error_body(message, detail), status=status, content_type=platform.JSON_TYPE
    )


def _flag(args: MultiDict[str, str], name: str) -> bool:
    return args.get(name, "").strip().lower() == "true"


def _count(args: MultiDict[str, str], name: str, default: int, minimum: int) -> int:
    try:
        value = int(args.get(name, ""))
    except ValueError:
        return default
    return value if value >= minimum else default


def _render_options(request: Request) -> RenderOptions:
    args = request.args
    fields = tuple(f.strip() for f in args.get("sysparm_fields", "").split(",") if f.strip())
    display = _DISPLAY_MODES.get(args.get("sysparm_display_value", "").strip().lower(), "false")
    return RenderOptions(
        fields=fields,
        display=display,
        reference_links=not _flag(args, "sysparm_exclude_reference_link"),
        base_url=request.host_url.rstrip("/"),
    )


def _payload(request: Request) -> dict[str, object]:
    body = request.get_data(cache=False)
    if not body.strip():
        raise TableError(400, *platform.EMPTY_PAYLOAD)
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise TableError(400, *platform.BAD_PAYLOAD) from error
    if not isinstance(payload, dict):
        raise TableError(400, *platform.PAYLOAD_NOT_OBJECT)
    return payload


def _link_header(request: Request, offset: int, limit: int, total: int, counted: bool) -> str:
    def link(to: int, rel: str) -> str:
        args = request.args.copy()
        args["sysparm_offset"] = str(to)
        args["sysparm_limit"] = str(limit)
        return f'<{request.base_url}?{urlencode(list(args.items(multi=True)))}>;rel="{rel}"'

    links = [link(0, "first")]
    if offset > 0:
        links.append(link(max(0, offset - limit), "prev"))
    if offset + limit < total:
        links.append(link(offset + limit, "next"))
    if counted:
        links.append(link(max(0, (total - 1) // limit * limit), "last"))
    return ",".join(links)


class TableApi:
    """Answers Table API requests for an authenticated user."""

    def __init__(self, state: StubState) -> None:
        self.state = state

    def handle(
        self, request: Request, version: str, table: str, sys_id: str | None, user: str
    ) -> Response:
        """Dispatch one request; every failure comes back in the platform's envelope."""
        try:
            if not self.state.tables.knows(table):
                raise invalid_table(table)
            method = request.method
            if sys_id is None:
                if method == "POST":
                    return self._create(request, table)
                return self._list(request, version, table, user)
            if method in ("GET", "HEAD"):
                return self._show(request, table, sys_id)
            if method == "DELETE":
                return self._delete(table, sys_id)
            return self._update(request, table, sys_id)
        except TableError as error:
            return error_response(error.status, error.message, error.detail)

    def _list(self, request: Request, version: str, table: str, user: str) -> Response:
        args = request.args
        query = parse(args.get("sysparm_query", "").replace(platform.CURRENT_USER_EXPRESSION, user))
        limit = _count(args, "sysparm_limit", platform.DEFAULT_LIMIT, 1)
        offset = _count(args, "sysparm_offset", 0, 0)
        options = _render_options(request)
        with self.state.lock:
            selected = self.state.tables.select(table, query)
            page = selected[offset : offset + limit]
            result = [self.state.tables.render(record, options) for record in page]
        total = len(selected)
        if not result and version == "v1":
            return error_response(404, *platform.NO_RECORDS_MATCHING)
        response = json_response({"result": result})
        counted = not _flag(args, "sysparm_no_count")
        if counted:
            response.headers["X-Total-Count"] = str(total)
        if not _flag(args, "sysparm_suppress_pagination_header"):
            shown_total = total if counted else offset + len(page) + (len(page) == limit)
            response.headers["Link"] = _link_header(request, offset, limit, shown_total, counted)
        return response

    def _show(self, request: Request, table: str, sys_id: str) -> Response:
        options = _render_options(request)
        with self.state.lock:
            record = self.state.tables.get(table, sys_id)
            if record is None:
                raise TableError(404, *platform.NO_RECORD)
            return json_response({"result": self.state.tables.render(record, options)})

    def _create(self, request: Request, table: str) -> Response:
        payload = _payload(request)
        options = _render_options(request)
        with self.state.lock:
            record = self.state.tables.insert(
                table, payload, self.state.timestamp(), platform.SIGNED_IN_USER_NAME
            )
            shown = self.state.tables.render(record, options)
        response = self._written(request, shown, 201)
        location = f"{options.base_url}/api/now/table/{table}/{record['sys_id']}"
        response.headers["Location"] = location
        return response

    def _update(self, request: Request, table: str, sys_id: str) -> Response:
        payload = _payload(request)
        options = _render_options(request)
        with self.state.lock:
            record = self.state.tables.update(
                table, sys_id, payload, self.state.timestamp(), platform.SIGNED_IN_USER_NAME
            )
            if record is None:
                raise TableError(404, *platform.NO_RECORD)
            shown = self.state.tables.render(record, options)
        return self._written(request, shown, 200)

    def _delete(self, table: str, sys_id: str) -> Response:
        with self.state.lock:
            if not self.state.tables.delete(table, sys_id):
                raise TableError(404, *platform.NO_RECORD)
        return Response(status=204)

    @staticmethod
    def _written(request: Request, shown: dict[str, object], status: int) -> Response:
        if request.headers.get("X-no-response-body", "").strip().lower() == "true":
            return Response(status=status)
        return json_response({"result": shown}, status)
