"""The Attachment API: `/api/now[/v1]/attachment`, files on records, as `sys_attachment` rows.

    POST   /attachment/file?table_name=&table_sys_id=&file_name=   raw bytes, their Content-Type
    POST   /attachment/upload                                      multipart form
    GET    /attachment?sysparm_query=                              metadata list
    GET    /attachment/{sys_id}                                    metadata
    GET    /attachment/{sys_id}/file                               content
    DELETE /attachment/{sys_id}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from werkzeug.wrappers import Response

from snworker.testing import platform
from snworker.testing.attachments import attach
from snworker.testing.query import parse
from snworker.testing.render import RenderOptions, render
from snworker.testing.state import StubState
from snworker.testing.store import ApiError, Record, RecordStore
from snworker.testing.wire import (
    ApiCall,
    FileResponse,
    Route,
    count,
    error_response,
    json_response,
    paged,
)

_PREFIXES: Final = ("/api/now/attachment", "/api/now/v1/attachment")


def _routes() -> tuple[Route, ...]:
    routes: list[Route] = []
    for prefix in _PREFIXES:
        routes += [
            Route(prefix, "attachment.list"),
            Route(f"{prefix}/file", "attachment.file", ("POST",)),
            Route(f"{prefix}/upload", "attachment.upload", ("POST",)),
            Route(f"{prefix}/<sys_id>", "attachment.one", ("GET", "DELETE")),
            Route(f"{prefix}/<sys_id>/file", "attachment.content"),
        ]
    return tuple(routes)


def metadata(store: RecordStore, record: Record, base_url: str) -> dict[str, object]:
    """An attachment's record as the Attachment API shows it, with its download link."""
    shown = render(store, store.schema.table(platform.ATTACHMENT_TABLE), record,
                   RenderOptions(base_url=base_url))
    shown["download_link"] = f"{base_url}/api/now/attachment/{record['sys_id']}/file"
    return shown


class AttachmentApi:
    """Stores, lists, serves and deletes files attached to records."""

    routes: Final = _routes()

    def __init__(self, state: StubState) -> None:
        self.state = state

    def handle(self, call: ApiCall, endpoint: str, arguments: Mapping[str, str]) -> Response:
        """Answer one request; every failure comes back in the platform's envelope."""
        try:
            if endpoint == "attachment.list":
                return self._list(call)
            if endpoint == "attachment.file":
                return self._upload_raw(call)
            if endpoint == "attachment.upload":
                return self._upload_form(call)
            if endpoint == "attachment.content":
                return self._content(call, arguments["sys_id"])
            if call.request.method == "DELETE":
                return self._delete(arguments["sys_id"])
            return self._show(call, arguments["sys_id"])
        except ApiError as error:
            return error_response(error.status, error.message, error.detail)

    def _base(self, call: ApiCall) -> str:
        return call.request.host_url.rstrip("/")

    def _list(self, call: ApiCall) -> Response:
        args = call.request.args
        limit = count(args, "sysparm_limit", platform.DEFAULT_LIMIT, 1)
        offset = count(args, "sysparm_offset", 0, 0)
        with self.state.lock:
            store = self.state.store
            selected = store.select(platform.ATTACHMENT_TABLE,
                                    parse(args.get("sysparm_query", "")), call.caller)
            page = selected[offset : offset + limit]
            result = [metadata(store, record, self._base(call)) for record in page]
        response = json_response({"result": result})
        return paged(call.request, response, offset, limit, len(page), len(selected))

    def _stored(self, call: ApiCall, table: str, sys_id: str, name: str, kind: str,
                content: bytes) -> Response:
        for parameter, value in (("table_name", table), ("table_sys_id", sys_id),
                                 ("file_name", name)):
            if not value:
                raise ApiError(400, platform.MISSING_PARAMETER.format(name=parameter), None)
        with self.state.lock:
            store = self.state.store
            record = attach(store, table, sys_id, name, kind, content, call.caller)
            shown = metadata(store, record, self._base(call))
        response = json_response({"result": shown}, 201)
        response.headers["Location"] = f"{self._base(call)}/api/now/attachment/{record['sys_id']}"
        return response

    def _upload_raw(self, call: ApiCall) -> Response:
        request = call.request
        args = request.args
        return self._stored(
            call, args.get("table_name", ""), args.get("table_sys_id", ""),
            args.get("file_name", ""),
            request.headers.get("Content-Type", "").strip() or platform.DEFAULT_CONTENT_TYPE,
            request.get_data(cache=False),
        )

    def _upload_form(self, call: ApiCall) -> Response:
        request = call.request
        upload = next(iter(request.files.values()), None)
        if upload is None:
            raise ApiError(400, *platform.ATTACHMENT_NO_FILE)
        return self._stored(
            call, request.form.get("table_name", ""), request.form.get("table_sys_id", ""),
            upload.filename or "", upload.content_type or platform.DEFAULT_CONTENT_TYPE,
            upload.read(),
        )

    def _find(self, sys_id: str) -> Record:
        record = self.state.store.get(platform.ATTACHMENT_TABLE, sys_id)
        if record is None:
            raise ApiError(404, *platform.NO_RECORD)
        return record

    def _show(self, call: ApiCall, sys_id: str) -> Response:
        with self.state.lock:
            shown = metadata(self.state.store, self._find(sys_id), self._base(call))
        return json_response({"result": shown})

    def _content(self, call: ApiCall, sys_id: str) -> Response:
        with self.state.lock:
            record = self._find(sys_id)
            content = self.state.store.files.get(sys_id, b"")
            shown = metadata(self.state.store, record, self._base(call))
        response = FileResponse(content, status=200, content_type=record["content_type"])
        response.headers["X-Attachment-Metadata"] = json.dumps(shown, separators=(",", ":"))
        return response

    def _delete(self, sys_id: str) -> Response:
        with self.state.lock:
            self._find(sys_id)
            self.state.store.delete(platform.ATTACHMENT_TABLE, sys_id)
            self.state.store.files.pop(sys_id, None)
        return Response(status=204)
