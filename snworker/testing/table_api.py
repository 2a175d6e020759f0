"""The Table API: `/api/now[/v1|/v2]/table/{table}[/{sys_id}]`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from werkzeug.wrappers import Response

from snworker.testing import platform
from snworker.testing.query import Condition, parse
from snworker.testing.render import render
from snworker.testing.state import StubState
from snworker.testing.store import ApiError
from snworker.testing.wire import (
    ApiCall,
    Route,
    count,
    error_response,
    flag,
    json_payload,
    json_response,
    paged,
    quiet,
    render_options,
)

_VERSION: Final = {"version": platform.DEFAULT_TABLE_API_VERSION}
_RECORD_METHODS: Final = ("GET", "PUT", "PATCH", "DELETE")


class TableApi:
    """Lists, reads and writes records for an authenticated caller."""

    routes: Final = (
        Route("/api/now/table/<table>", "table.collection", ("GET", "POST"), _VERSION),
        Route("/api/now/<any(v1, v2):version>/table/<table>", "table.collection",
              ("GET", "POST")),
        Route("/api/now/table/<table>/<sys_id>", "table.record", _RECORD_METHODS, _VERSION),
        Route("/api/now/<any(v1, v2):version>/table/<table>/<sys_id>", "table.record",
              _RECORD_METHODS),
    )

    def __init__(self, state: StubState) -> None:
        self.state = state

    def handle(self, call: ApiCall, endpoint: str, arguments: Mapping[str, str]) -> Response:
        """Answer one request; every failure comes back in the platform's envelope."""
        table, sys_id = arguments["table"], arguments.get("sys_id")
        method = call.request.method
        try:
            if sys_id is None:
                if method == "POST":
                    return self._create(call, table)
                return self._list(call, arguments["version"], table)
            if method in ("GET", "HEAD"):
                return self._show(call, table, sys_id)
            if method == "DELETE":
                return self._delete(table, sys_id)
            return self._update(call, table, sys_id)
        except ApiError as error:
            return error_response(error.status, error.message, error.detail)

    def _list(self, call: ApiCall, version: str, table: str) -> Response:
        args = call.request.args
        filters = [
            Condition(name, "=", value)
            for name, value in args.items(multi=True)
            if not name.startswith("sysparm_")
        ]
        query = parse(args.get("sysparm_query", "")).requiring(filters)
        limit = count(args, "sysparm_limit", platform.DEFAULT_LIMIT, 1)
        offset = count(args, "sysparm_offset", 0, 0)
        options = render_options(call.request)
        with self.state.lock:
            store = self.state.store
            view = store.table(table)
            selected = store.select(table, query, call.caller)
            page = selected[offset : offset + limit]
            result = [render(store, view, record, options) for record in page]
        if not result and version == "v1":
            return error_response(404, *platform.NO_RECORDS_MATCHING)
        response = json_response({"result": result})
        return paged(call.request, response, offset, limit, len(page), len(selected))

    def _show(self, call: ApiCall, table: str, sys_id: str) -> Response:
        options = render_options(call.request)
        with self.state.lock:
            store = self.state.store
            view = store.table(table)
            record = store.get(table, sys_id)
            if record is None:
                raise ApiError(404, *platform.NO_RECORD)
            return json_response({"result": render(store, view, record, options)})

    def _create(self, call: ApiCall, table: str) -> Response:
        options = render_options(call.request)
        with self.state.lock:
            store = self.state.store
            store.table(table)
            payload = json_payload(call.request)
            record = store.insert(
                table, payload, call.caller,
                input_display=flag(call.request.args, "sysparm_input_display_value"),
            )
            shown = render(store, store.table(table), record, options)
        response = Response(status=201) if quiet(call.request) else json_response(
            {"result": shown}, 201)
        location = f"{options.base_url}/api/now/table/{table}/{record['sys_id']}"
        response.headers["Location"] = location
        return response

    def _update(self, call: ApiCall, table: str, sys_id: str) -> Response:
        options = render_options(call.request)
        payload = json_payload(call.request)
        with self.state.lock:
            store = self.state.store
            record = store.update(
                table, sys_id, payload, call.caller,
                input_display=flag(call.request.args, "sysparm_input_display_value"),
            )
            if record is None:
                raise ApiError(404, *platform.NO_RECORD)
            shown = render(store, store.table(table), record, options)
        return Response(status=200) if quiet(call.request) else json_response({"result": shown})

    def _delete(self, table: str, sys_id: str) -> Response:
        with self.state.lock:
            self.state.store.table(table)
            if not self.state.store.delete(table, sys_id):
                raise ApiError(404, *platform.NO_RECORD)
        return Response(status=204)
