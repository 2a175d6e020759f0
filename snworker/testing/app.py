"""The stub instance as a WSGI application: OAuth pages and endpoints, REST, control endpoints.

Every request except the control endpoints (`/_stub/...`) passes the fault plan first, is
answered, and is then written to the request log with its secrets masked. A REST call is
authenticated (a bearer token, or Basic auth when the stub accepts it), then answered by a
route a test registered or by one of the platform's APIs, one module each.
"""

from __future__ import annotations

import html
import io
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.wrappers import Request, Response

from snworker.testing import platform
from snworker.testing.aggregate_api import AggregateApi
from snworker.testing.attachment_api import AttachmentApi
from snworker.testing.batch_api import BatchApi
from snworker.testing.faults import Fault
from snworker.testing.import_api import ImportApi
from snworker.testing.oauth import ConsentMode, ConsentPage, ErrorPage, Redirect
from snworker.testing.scripted_api import answer
from snworker.testing.state import ControlError, StubState
from snworker.testing.table_api import TableApi
from snworker.testing.wire import (
    ApiCall,
    FileResponse,
    Route,
    Router,
    error_response,
    json_response,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger(__name__)

SECRET_PARAMETERS: Final = frozenset(
    {"code", "code_verifier", "refresh_token", "access_token", "token", "client_secret", "password",
     "assertion"}
)
MASKED: Final = "***"
CONTROL_PREFIX: Final = "/_stub/"

DropConnection = Callable[["WSGIEnvironment"], None]
ClientGone = Callable[["WSGIEnvironment", float], bool]
# Logged as the status of a request whose client closed its connection during an injected delay
# (nginx's "client closed request"): the client gave up, nothing was answered.
CLIENT_CLOSED = 499
# A file this large is sent from the stored bytes as the server reads them, not copied first.
_SENT_IN_PLACE = 1 << 20


_OAUTH_ROUTES: Final = (
    Route(platform.AUTHORIZE_PATH, "oauth.authorize", ("GET", "POST")),
    Route(platform.TOKEN_PATH, "oauth.token", ("POST",)),
    Route(platform.REVOKE_PATH, "oauth.revoke", ("POST",)),
)


class RestApi(Protocol):
    """One of the instance's REST APIs: its routes and how it answers them."""

    @property
    def routes(self) -> tuple[Route, ...]:
        """The paths it answers."""

    def handle(self, call: ApiCall, endpoint: str, arguments: Mapping[str, str]) -> Response:
        """Answer an authenticated request routed to `endpoint`."""


class StubRequest(Request):
    """A request whose form may be large (the platform takes megabyte fields)."""

    max_form_memory_size = 64 * 1024 * 1024


def _masked(values: Mapping[str, str]) -> dict[str, str]:
    return {k: MASKED if k in SECRET_PARAMETERS else v for k, v in values.items()}


def _masked_headers(request: Request) -> dict[str, str]:
    headers = {}
    for name, value in request.headers.items():
        if name.lower() in ("authorization", "proxy-authorization"):
            scheme, _, _ = value.partition(" ")
            value = f"{scheme} {MASKED}" if scheme else MASKED
        elif name.lower() == "cookie":
            value = MASKED
        headers[name] = value
    return headers


def _is_form(request: Request) -> bool:
    return request.mimetype == "application/x-www-form-urlencoded"


def _logged_form(request: Request) -> dict[str, str]:
    if not _is_form(request):
        return {}
    try:
        return _masked(request.form.to_dict())
    except HTTPException:
        return {}


def _page(status: int, title: str, body: str) -> Response:
    document = (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>{body}</body></html>"
    )
    return Response(document, status=status, content_type="text/html; charset=utf-8")


def _consent_page(consent: ConsentPage) -> Response:
    headline = platform.CONSENT_HEADLINE.format(app_name=consent.app_name)
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in consent.request.items()
    )
    body = (
        f"<h1>{html.escape(headline)}</h1>"
        "<p>Signed in as System Administrator.</p>"
        f'<form method="post" action="{platform.AUTHORIZE_PATH}">{hidden}'
        '<button type="submit" name="action" value="allow">Allow</button>'
        '<button type="submit" name="action" value="deny">Deny</button>'
        "</form>"
    )
    return _page(200, "Authorize application", body)


class StubApplication:
    """The WSGI application of one stub instance."""

    def __init__(self, state: StubState, drop_connection: DropConnection,
                 client_gone: ClientGone | None = None) -> None:
        self.state = state
        self.drop_connection = drop_connection
        self.client_gone = client_gone
        self.apis: dict[str, RestApi] = {
            "table": TableApi(state),
            "attachment": AttachmentApi(state),
            "stats": AggregateApi(state),
            "import": ImportApi(state),
            "batch": BatchApi(self._answer, StubRequest),
        }
        self.oauth_routes = Router(_OAUTH_ROUTES)
        self.rest_routes = Router(route for api in self.apis.values() for route in api.routes)

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        request = StubRequest(environ)
        if request.path.startswith(CONTROL_PREFIX):
            return self._control(request)(environ, start_response)
        with self.state.lock:
            fault = self.state.faults.fault_for(request.method, request.path, self.state.now())
        if fault is not None and fault.delay > 0 and self._gone_during(environ, fault.delay):
            self._log(request, CLIENT_CLOSED)
            self.drop_connection(environ)
            return []
        if fault is not None and fault.drop:
            self._log(request, 0)
            self.drop_connection(environ)
            return []
        if fault is not None and fault.status is not None:
            response = self._fault_response(request, fault)
        else:
            response = self._answer(request)
            if fault is not None:
                response.headers.update(fault.headers)
        self._log(request, response.status_code)
        _send_in_place(response, environ)
        return response(environ, start_response)

    def _gone_during(self, environ: WSGIEnvironment, seconds: float) -> bool:
        """Wait `seconds`; True as soon as the client closes its connection meanwhile."""
        if self.client_gone is None:
            time.sleep(seconds)
            return False
        return self.client_gone(environ, seconds)

    def _log(self, request: Request, status: int) -> None:
        entry: dict[str, object] = {
            "method": request.method,
            "path": request.path,
            "query": _masked(request.args.to_dict()),
            "status": status,
            "headers": _masked_headers(request),
            "form": _logged_form(request),
        }
        with self.state.lock:
            entry["time"] = self.state.now()
            self.state.request_log.append(entry)

    @staticmethod
    def _fault_response(request: Request, fault: Fault) -> Response:
        assert fault.status is not None
        if request.path == platform.TOKEN_PATH and fault.status == platform.TOKEN_FAILURE_STATUS:
            response = json_response(dict(platform.TOKEN_FAILURE_BODY), fault.status)
        else:
            response = error_response(fault.status, fault.message, platform.INJECTED_DETAIL)
        response.headers.update(fault.headers)
        return response

    def _answer(self, request: Request) -> Response:
        """Answer a request that passed the fault plan (a batch's requests come here too)."""
        try:
            if request.path.startswith("/api/"):
                return self._rest(request)
            endpoint, _ = self.oauth_routes.match(request.path, request.method)
            if endpoint == "oauth.authorize":
                return self._authorize(request)
            if endpoint == "oauth.token":
                return self._token(request)
            return self._revoke(request)
        except MethodNotAllowed:
            return error_response(405, *platform.METHOD_NOT_SUPPORTED)
        except NotFound:
            if request.path.startswith("/api/"):
                return error_response(400, *platform.NO_RESOURCE)
            return error_response(404, "Not Found", f"No resource at {request.path}")
        except HTTPException as error:
            code = error.code or 400
            return error_response(code, error.name, error.description)
        except Exception:
            logger.exception("stub instance failed on %s %s", request.method, request.path)
            return error_response(500, "Internal Server Error", None)

    def _rest(self, request: Request) -> Response:
        """A REST call: authenticate, then a scripted route or one of the platform's APIs."""
        with self.state.lock:
            user = self._authenticated_user(request)
            if user is None:
                return error_response(401, *platform.NOT_AUTHENTICATED)
            call = ApiCall(request, self.state.caller(user))
            scripted = self.state.routes.match(request.path, request.method)
        if scripted is not None:
            return answer(call, *scripted)
        endpoint, arguments = self.rest_routes.match(request.path, request.method)
        if endpoint not in platform.ANY_ACCEPT_ENDPOINTS and request.headers.get("Accept") \
                and request.accept_mimetypes.best_match(platform.SERVED_TYPES) is None:
            return error_response(406, *platform.NOT_ACCEPTABLE)
        return self.apis[endpoint.split(".", 1)[0]].handle(call, endpoint, arguments)

    def _authenticated_user(self, request: Request) -> str | None:
        """The sys_id of the user a REST call acts for; the caller holds the state lock."""
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and credentials:
            return self.state.oauth.authenticate(credentials, self.state.now())
        basic = request.authorization
        if (scheme.lower() == "basic" and basic is not None and basic.type == "basic"
                and "basic" in self.state.config.auth):
            self.state.oauth.received(basic.password or "")
            return self.state.store.authenticate(basic.username or "", basic.password or "")
        return None

    def _authorize(self, request: Request) -> Response:
        decision: ConsentMode | None = None  # None: as the consent setting says
        if request.method == "GET":
            params = request.args.to_dict()
        else:
            # The consent form posts back the original request and the button clicked.
            params = request.form.to_dict()
            clicked = params.pop("action", "")
            if clicked not in ("allow", "deny"):
                return _page(400, "Error", "<p>Choose Allow or Deny.</p>")
            decision = "allow" if clicked == "allow" else "deny"
        with self.state.lock:
            oauth = self.state.oauth
            outcome = oauth.authorize(
                params, decision or oauth.consent, self.state.now(), self.state.user_sys_id
            )
        if isinstance(outcome, ErrorPage):
            return _page(outcome.status, "Error", f"<p>{html.escape(outcome.message)}</p>")
        if isinstance(outcome, ConsentPage):
            return _consent_page(outcome)
        assert isinstance(outcome, Redirect)
        return Response(status=302, headers={"Location": outcome.location})

    def _token(self, request: Request) -> Response:
        form = request.form.to_dict() if _is_form(request) else None
        basic = request.authorization
        client = None
        if basic is not None and basic.type == "basic":
            client = (basic.username or "", basic.password or "")
        with self.state.lock:
            status, body = self.state.oauth.token(
                form,
                self.state.now(),
                client_credentials=client,
                sign_in=self.state.store.authenticate,
                service_user=self.state.application_user(),
                find_user=self.state.store.find_user,
            )
        response = json_response(body, status)
        response.headers["Cache-Control"] = "no-store"
        return response

    def _revoke(self, request: Request) -> Response:
        token = request.form.get("token", "") if _is_form(request) else ""
        with self.state.lock:
            self.state.revocation_count += 1
            self.state.oauth.revoke(token)
        return Response(status=200)

    def _control(self, request: Request) -> Response:
        operation = request.path[len(CONTROL_PREFIX) :]
        arguments: Any = request.args.to_dict()
        if request.method == "POST":
            try:
                arguments = json.loads(request.get_data() or b"{}")
            except (ValueError, RecursionError):
                return error_response(400, "Invalid control request", "body is not JSON")
            if not isinstance(arguments, dict):
                return error_response(400, "Invalid control request", "body is not an object")
        try:
            result = self.state.control(operation, arguments)
        except ControlError as error:
            return error_response(400, "Invalid control request", str(error))
        return json_response({"result": result})


def _send_in_place(response: Response, environ: WSGIEnvironment) -> None:
    """A large file's content (an attachment's) is handed to the server as a file to read from.

    Returned as bytes, the server copies the whole body into a buffer of its own before the
    first byte leaves; from a file wrapper it reads each piece as the socket takes it, as an
    instance sends a file: no second copy of hundreds of MB, and far less of the stub's time.
    """
    body = response.response
    wrapper = environ.get("wsgi.file_wrapper")
    if (not isinstance(response, FileResponse) or wrapper is None
            or response.direct_passthrough or not isinstance(body, list) or len(body) != 1
            or not isinstance(body[0], bytes) or len(body[0]) < _SENT_IN_PLACE
            or environ.get("REQUEST_METHOD") == "HEAD"):
        return
    response.response = wrapper(io.BytesIO(body[0]))
    response.direct_passthrough = True

