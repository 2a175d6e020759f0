"""What the stub's REST APIs share on the wire: envelopes, errors, parameters, routing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlencode

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.wrappers import Request, Response

from snworker.testing import platform
from snworker.testing.render import DisplayMode, RenderOptions
from snworker.testing.store import ApiError, Caller

_DISPLAY_MODES: dict[str, DisplayMode] = {"true": "true", "false": "false", "all": "all"}


@dataclass(frozen=True, slots=True)
class ApiCall:
    """An authenticated request: the request and who makes it, at what time."""

    request: Request
    caller: Caller


class FileResponse(Response):
    """A file's content, as stored: a large one is sent as the server reads it (app.py)."""


def json_response(payload: object, status: int = 200) -> Response:
    """A JSON response encoded once, compactly (records may be megabytes)."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status=status, content_type=platform.JSON_TYPE)


def error_response(status: int, message: str, detail: str | None) -> Response:
    """A failure in the platform's envelope."""
    return Response(
        platform.error_body(message, detail), status=status, content_type=platform.JSON_TYPE
    )


def flag(args: MultiDict[str, str], name: str) -> bool:
    """A `true`/`false` query parameter."""
    return args.get(name, "").strip().lower() == "true"


def count(args: MultiDict[str, str], name: str, default: int, minimum: int) -> int:
    """A whole-number query parameter; unusable values fall back to the default."""
    try:
        value = int(args.get(name, ""))
    except ValueError:
        return default
    return value if value >= minimum else default


def display_mode(args: MultiDict[str, str]) -> DisplayMode:
    """`sysparm_display_value`: false (the default), true or all."""
    return _DISPLAY_MODES.get(args.get("sysparm_display_value", "").strip().lower(), "false")


def names(args: MultiDict[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list parameter (`sysparm_fields`, `sysparm_group_by`)."""
    return tuple(f.strip() for f in args.get(name, "").split(",") if f.strip())


def render_options(request: Request) -> RenderOptions:
    """How the request asks for records to be shown."""
    args = request.args
    return RenderOptions(
        fields=names(args, "sysparm_fields"),
        display=display_mode(args),
        reference_links=not flag(args, "sysparm_exclude_reference_link"),
        base_url=request.host_url.rstrip("/"),
    )


def json_payload(request: Request) -> dict[str, object]:
    """The JSON object in the body, or the platform's error for a body that is not one."""
    body = request.get_data(cache=False)
    if not body.strip():
        raise ApiError(400, *platform.EMPTY_PAYLOAD)
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise ApiError(400, *platform.BAD_PAYLOAD) from error
    if not isinstance(payload, dict):
        raise ApiError(400, *platform.PAYLOAD_NOT_OBJECT)
    return payload


def paged(request: Request, response: Response, offset: int, limit: int, page: int,
          total: int) -> Response:
    """A list answer with `X-Total-Count` and `Link`, as the request allows."""
    args = request.args
    counted = not flag(args, "sysparm_no_count")
    if counted:
        response.headers["X-Total-Count"] = str(total)
    if not flag(args, "sysparm_suppress_pagination_header"):
        shown_total = total if counted else offset + page + (page == limit)
        response.headers["Link"] = _link_header(request, offset, limit, shown_total, counted)
    return response


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


def quiet(request: Request) -> bool:
    """Whether the client asked for no response body (`X-no-response-body: true`)."""
    return request.headers.get("X-no-response-body", "").strip().lower() == "true"


# --- routing -----------------------------------------------------------------------------------

_PLACEHOLDER: Final = re.compile(r"<(?:any\(([^)]*)\):)?(\w+)>")


def _pattern(template: str) -> re.Pattern[str]:
    parts, position = [], 0
    for match in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[position : match.start()]))
        choices, name = match.groups()
        if choices is None:
            parts.append(f"(?P<{name}>[^/]+)")
        else:
            options = "|".join(re.escape(c.strip()) for c in choices.split(","))
            parts.append(f"(?P<{name}>{options})")
        position = match.end()
    parts.append(re.escape(template[position:].rstrip("/")))
    return re.compile("".join(parts) + "/?")


@dataclass(frozen=True, slots=True)
class Route:
    """A path template (`/api/now/<any(v1, v2):version>/table/<table>`) and who answers it."""

    template: str
    endpoint: str
    methods: tuple[str, ...] = ("GET",)
    defaults: Mapping[str, str] = field(default_factory=dict)
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", _pattern(self.template))


class Router:
    """Routes matched in order; a path some route has but not for the method is a 405."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)

    def match(self, path: str, method: str) -> tuple[str, dict[str, str]]:
        """The endpoint and path arguments; raises werkzeug's NotFound or MethodNotAllowed."""
        allowed: set[str] = set()
        for route in self.routes:
            found = route.pattern.fullmatch(path)
            if found is None:
                continue
            methods = {*route.methods, "HEAD"} if "GET" in route.methods else set(route.methods)
            if method in methods:
                return route.endpoint, {**route.defaults, **found.groupdict()}
            allowed |= methods
        if allowed:
            raise MethodNotAllowed(sorted(allowed))
        raise NotFound()
