"""Scripted REST APIs: routes a test registers, answered by its own Python handler.

    def hello(request: ScriptedRequest) -> object:
        return {"greeting": f"hello {request.path_params['name']}"}

    sn.route("/api/x_acme/v1/hello/<name>", hello, methods=["GET"])

A handler's return value is sent as `{"result": value}` with 200, as a scripted resource's
response body is; a `ScriptedResponse` sets the status and headers too. Routes need the same
authentication as the platform's own APIs and are gone after `reset()`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response

from snworker.testing import platform
from snworker.testing.wire import ApiCall, Route, Router, error_response, json_response

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScriptedRequest:
    """What a scripted REST handler is given."""

    method: str
    path: str
    path_params: Mapping[str, str]
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    user_sys_id: str

    def json(self) -> Any:
        """The body parsed as JSON (None when empty)."""
        return json.loads(self.body) if self.body.strip() else None


@dataclass(frozen=True, slots=True)
class ScriptedResponse:
    """A handler's answer when 200 and `{"result": ...}` are not enough."""

    status: int = 200
    result: object = None
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[ScriptedRequest], object]


class ScriptedRoutes:
    """The routes registered on one stub; the caller holds the state lock."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._router = Router(())

    def add(self, path: str, handler: Handler, methods: Sequence[str]) -> None:
        """Answer `methods` on `path` (`/api/x_acme/v1/items/<sys_id>`)."""
        if not path.startswith("/api/"):
            raise ValueError("a scripted REST API path starts with /api/")
        if not callable(handler):
            raise TypeError("handler must be callable")
        endpoint = f"scripted.{len(self._handlers)}"
        self._handlers[endpoint] = handler
        route = Route(path, endpoint, tuple(m.upper() for m in methods))
        self._router = Router((route, *self._router.routes))

    def clear(self) -> None:
        """Forget every route."""
        self._handlers.clear()
        self._router = Router(())

    def match(self, path: str, method: str) -> tuple[Handler, dict[str, str]] | None:
        """The handler and path parameters for a request; None when no route has the path.

        Raises werkzeug's `MethodNotAllowed` when a route has the path but not the method.
        """
        if not self._handlers:
            return None
        try:
            endpoint, arguments = self._router.match(path, method)
        except NotFound:
            return None
        return self._handlers[endpoint], arguments


def answer(call: ApiCall, handler: Handler, path_params: Mapping[str, str]) -> Response:
    """Run a handler on a request and send what it returns."""
    request = call.request
    scripted = ScriptedRequest(
        method=request.method,
        path=request.path,
        path_params=dict(path_params),
        query=request.args.to_dict(),
        headers=dict(request.headers.items()),
        body=request.get_data(),
        user_sys_id=call.caller.user_sys_id,
    )
    try:
        outcome = handler(scripted)
    except Exception as error:
        logger.exception("scripted REST handler failed on %s %s", request.method, request.path)
        message, detail = platform.SCRIPT_FAILED
        return error_response(500, message, detail.format(error=type(error).__name__))
    if not isinstance(outcome, ScriptedResponse):
        outcome = ScriptedResponse(result=outcome)
    if outcome.result is None:
        response = Response(status=outcome.status)
    else:
        response = json_response({"result": outcome.result}, outcome.status)
    response.headers.update(dict(outcome.headers))
    return response
