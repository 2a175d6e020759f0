"""The Batch API: `POST /api/now/v1/batch`, many REST requests in one.

    {"batch_request_id": "1", "rest_requests": [{"id": "11", "method": "GET",
      "url": "/api/now/table/incident?sysparm_limit=1", "headers": [{"name": ..., "value": ...}],
      "body": "<base64>"}]}

Each request is served in-process by the same handlers as a request of its own, as the batch's
caller, and answered in `serviced_requests` with its status, headers and base64 body. Requests
that cannot be served are listed by id in `unserviced_requests`.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import urlsplit

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from snworker.testing import platform
from snworker.testing.store import ApiError
from snworker.testing.wire import ApiCall, Route, error_response, json_payload, json_response

Serve = Callable[[Request], Response]
_METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class BatchApi:
    """Serves the requests of a batch one after another."""

    routes: Final = tuple(Route(path, "batch.run", ("POST",)) for path in platform.BATCH_PATHS)

    def __init__(self, serve: Serve, request_class: type[Request]) -> None:
        self.serve = serve
        self.request_class = request_class

    def handle(self, call: ApiCall, endpoint: str, arguments: Mapping[str, str]) -> Response:
        """Answer one batch; a body that is not a batch is refused in the platform's envelope."""
        try:
            payload = json_payload(call.request)
            requests = payload.get("rest_requests")
            if not isinstance(requests, list):
                raise ApiError(400, "Invalid request", "rest_requests must be a list")
        except ApiError as error:
            return error_response(error.status, error.message, error.detail)
        serviced, unserviced = [], []
        for item in requests:
            answer = self._serve_one(call.request, item)
            if answer is None:
                unserviced.append(item.get("id", "") if isinstance(item, dict) else "")
            else:
                serviced.append(answer)
        return json_response({
            "batch_request_id": str(payload.get("batch_request_id", "")),
            "serviced_requests": serviced,
            "unserviced_requests": unserviced,
        })

    def _sub_request(self, outer: Request, item: Mapping[str, Any]) -> Request | None:
        """The request an item of `rest_requests` describes, sent as the batch's caller."""
        method, url = str(item.get("method", "")).upper(), item.get("url")
        if method not in _METHODS or not isinstance(url, str) or not url.startswith("/api/"):
            return None
        parts = urlsplit(url)
        if parts.path.rstrip("/") in platform.BATCH_PATHS:
            return None
        headers = {"Accept": "application/json"}
        for header in item.get("headers") or []:
            if isinstance(header, dict) and "name" in header:
                headers[str(header["name"])] = str(header.get("value", ""))
        for name in ("Authorization", "Cookie"):
            if name in outer.headers:
                headers[name] = outer.headers[name]
        try:
            body = base64.b64decode(item.get("body") or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            return None
        headers.pop("Content-Length", None)
        environ = EnvironBuilder(
            path=parts.path, query_string=parts.query, method=method,
            headers=list(headers.items()),
            data=body, base_url=outer.host_url,
        ).get_environ()
        return self.request_class(environ)

    def _serve_one(self, outer: Request, item: object) -> dict[str, object] | None:
        if not isinstance(item, dict) or "id" not in item:
            return None
        request = self._sub_request(outer, item)
        if request is None:
            return None
        started = time.perf_counter()
        response = self.serve(request)
        body = b"" if request.method == "HEAD" else response.get_data()
        answer: dict[str, object] = {
            "id": str(item["id"]),
            "status_code": response.status_code,
            "status_text": _phrase(response.status_code),
            "body": base64.b64encode(body).decode(),
            "execution_time": int((time.perf_counter() - started) * 1000),
        }
        if not item.get("exclude_response_headers"):
            answer["headers"] = [{"name": k, "value": v} for k, v in response.headers.items()]
        return answer
