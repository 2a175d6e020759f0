"""HTTP to the instance: one origin-locked `requests.Session`, retries, redaction.

Every request the parent asks for is checked here, in the worker, because the worker is the trust
boundary: a compromised parent can send any message it likes. `requests` errors become snworker
failures in this module and nowhere else.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import logging
import math
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
import requests.adapters
import urllib3.exceptions
import urllib3.response
from requests.utils import requote_uri
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_any,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from snworker import checks
from snworker.checks import IDEMPOTENT
from snworker.errors import InvalidRequestError
from snworker.messages import UNKNOWN_LENGTH, Pairs, Request
from snworker.policy import RetryPolicy
from snworker.worker.exchange import POOL_CLASSES
from snworker.worker.failures import (
    ApiFailure,
    Cancelled,
    Failure,
    InvalidRequest,
    Timeout,
    TlsFailure,
)

logger = logging.getLogger("snworker.worker")

# Response headers that never reach the parent: a session cookie is a credential too.
WITHHELD_HEADERS = frozenset({"set-cookie", "set-cookie2"})
POOL_SIZE = 256  # one kept-alive connection for each request thread a peer may run


@dataclass(frozen=True, slots=True)
class Checked:
    """A request that passed every check, ready to send: the full URL, every header."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    timeout: float
    raise_for_status: bool = True  # False: a 4xx/5xx is an answer like any other
    retry: bool = True  # False: one attempt; the caller retries as it sees fit
    upload: int | None = None  # a body that comes in pieces: its length, or UNKNOWN_LENGTH
    window: int = 0  # > 0: the answer's body goes on in pieces


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer, its body read whole, or (`raw`) still to be read."""

    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes
    raw: Any = None  # the open urllib3 response of a body left to stream

    def close(self) -> None:
        """Let go of a body left unread: the connection is closed, never reused."""
        if self.raw is not None:
            self.raw.close()


class Transient(Exception):
    """A failure worth another try: a retryable status or a transport error."""

    def __init__(self, response: Answer | None = None, error: Exception | None = None) -> None:
        super().__init__(response.status if response is not None else error)
        self.response = response
        self.error = error


def tls_trust(ca_bundle: str | None) -> tuple[bool | str, ssl.SSLContext | None, str]:
    """`verify` and SSL context for requests, and what they trust, in words."""
    if ca_bundle:
        return ca_bundle, None, f"the CA bundle {ca_bundle}"
    try:
        import truststore

        return True, truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT), "the system trust store"
    except Exception:  # not installed, or this OS's store cannot be used
        import certifi

        return certifi.where(), None, "certifi's CA bundle"


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (a local stub, never proxied)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter, verifying with `context` when one is given."""

    def __init__(self, context: ssl.SSLContext | None, **kwargs: Any) -> None:
        self._context = context
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._context is not None:
            kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = POOL_CLASSES  # a Cancel can abort them

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        if self._context is not None:
            kwargs["ssl_context"] = self._context
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = POOL_CLASSES
        return manager


class Transport:
    """The worker's only way to the network."""

    def __init__(self, instance_url: str, policy: RetryPolicy, proxy: str | None = None,
                 ca_bundle: str | None = None) -> None:
        self.origin = instance_url
        self._netloc = urlsplit(instance_url).netloc
        self.policy = policy
        # Trust and proxy are what the parent said, fixed now: never the environment (a
        # REQUESTS_CA_BUNDLE or a proxy variable set by code in the parent has no effect here).
        verify, context, self.trust = tls_trust(ca_bundle)
        session = requests.Session()
        adapter = _Adapter(context, pool_connections=1, pool_maxsize=POOL_SIZE, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.trust_env = False
        if proxy and not is_loopback(urlsplit(instance_url).hostname or ""):
            session.proxies = {"https": proxy, "http": proxy}
        session.verify = verify
        session.headers["Accept"] = "application/json"
        session.headers["User-Agent"] = "snworker"
        self.session = session
        # API requests go straight to requests' transport adapter with a request built here:
        # the Session's per-request merging of settings, hooks and cookies costs a third of
        # the client's CPU on a small GET, and the worker keeps no cookies on purpose.
        self._adapter = adapter
        self._default_headers: dict[str, str] = {
            k: v if isinstance(v, str) else v.decode() for k, v in session.headers.items()}
        self._send_options: dict[str, Any] = {
            "verify": session.verify, "cert": session.cert, "proxies": session.proxies,
        }

    # --- checks --------------------------------------------------------------------------

    def check(self, request: Request) -> Checked:
        """Refuse anything that could leave the instance origin or change how it is framed."""
        try:
            method = checks.check_method(request.method)
            path = checks.check_path(request.path)
            caller_headers = checks.check_headers(_pairs(request.headers, "header"))
        except InvalidRequestError as exc:
            raise InvalidRequest(str(exc)) from None
        url = self.origin + path
        if urlsplit(url).netloc != self._netloc:
            raise InvalidRequest(f"the path {path!r} does not stay on the instance")
        # Names compare case-insensitively: a caller's header replaces a default, never doubles it.
        headers = {name.lower(): (name, value) for name, value in self._default_headers.items()}
        for name, value in caller_headers:
            headers[name.lower()] = (name, value)
        params = _pairs(request.params, "parameter")
        if params:
            url += ("&" if "?" in path else "?") + urlencode(params)
        if _NEEDS_QUOTING.search(url):
            url = requote_uri(url)
        if request.suppress_response_body:
            headers["x-no-response-body"] = ("X-no-response-body", "true")
        body, upload = request.body, request.upload
        if upload is not None:
            # A body that comes in pieces: framed here, by its declared length, or chunked by
            # urllib3 when the length is unknown (each piece length-prefixed on the wire).
            if type(upload) is not int or upload < UNKNOWN_LENGTH or body is not None:
                raise InvalidRequest("a streamed body needs a length or UNKNOWN_LENGTH")
            headers.setdefault("content-type", ("Content-Type", "application/json"))
            if upload != UNKNOWN_LENGTH:
                headers["content-length"] = ("Content-Length", str(upload))
        elif body is not None:
            if not isinstance(body, bytes):
                raise InvalidRequest("the request body must be bytes")
            headers.setdefault("content-type", ("Content-Type", "application/json"))
            headers["content-length"] = ("Content-Length", str(len(body)))
        elif method in ("POST", "PUT", "PATCH"):
            headers["content-length"] = ("Content-Length", "0")
        timeout = request.timeout
        if not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout <= 0:
            raise InvalidRequest("timeout must be a positive number of seconds")
        if type(request.raise_for_status) is not bool or type(request.retry) is not bool:
            raise InvalidRequest("raise_for_status and retry must be booleans")
        window = request.window
        if type(window) is not int or window < 0:
            raise InvalidRequest("a stream's window must be a number of bytes")
        return Checked(method, url, dict(headers.values()), body, float(timeout),
                       request.raise_for_status, request.retry, upload, window)

    # --- sending -------------------------------------------------------------------------

    def send(self, checked: Checked, authorization: str, timeout: float,
             body: Iterable[bytes] | None = None,
             keep_open: Callable[[int], bool] | None = None) -> Answer:
        """One HTTP exchange, redirects not followed; raises `requests` errors.

        `body` replaces the checked body (pieces of an upload). When `keep_open(status)` is
        true the answer's body is left unread, for the caller to stream and close.
        """
        prepared = requests.PreparedRequest()
        prepared.method = checked.method
        prepared.url = checked.url
        prepared.headers = {**checked.headers,  # type: ignore[assignment]
                            "Authorization": authorization}
        prepared.body = checked.body if body is None else body  # type: ignore[assignment]
        prepared.hooks = {"response": []}
        response = self._adapter.send(prepared, timeout=timeout, **self._send_options)
        encoding = response.headers.get("Content-Encoding")
        if encoding and not _decodable(encoding):
            # The body is still encoded: redaction could not see into it, so it stays here.
            response.close()
            raise ApiFailure(f"the instance answered with Content-Encoding {encoding[:40]!r}, "
                             "which snworker cannot decode and check; the body was withheld",
                             response.status_code)
        if keep_open is not None and keep_open(response.status_code):
            return Answer(response.status_code, response.headers, b"", response.raw)
        try:
            # One read of the whole body: requests' own reading goes 10 KB at a time, which
            # costs 0.7 ms of CPU per megabyte.
            content: bytes = response.raw.read(decode_content=True)
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise BodyTimeout(exc) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise requests.ConnectionError(exc) from exc
        finally:
            response.close()
        return Answer(response.status_code, response.headers, content)

    def retryable(self, method: str, status: int) -> bool:
        """True when `classify` would try `status` again for `method`."""
        return status in self.policy.retry_statuses and (method in IDEMPOTENT or status == 429)

    def retrying(self, deadline: float, cancelled: threading.Event) -> Retrying:
        """The retry loop for one call, built from the policy."""
        policy = self.policy
        backoff = wait_exponential_jitter(policy.backoff_initial, policy.backoff_max,
                                          jitter=policy.backoff_initial)

        def wait(state: RetryCallState) -> float:
            seconds = backoff(state)
            failure = _transient_of(state)
            if failure is not None and failure.response is not None:
                after = retry_after(failure.response.headers.get("Retry-After"))
                if after is not None:
                    seconds = min(after, policy.retry_after_max)
            return seconds

        def sleep(seconds: float) -> None:
            logger.info("snworker worker: transient failure; retrying in %.2f s", seconds)
            if cancelled.wait(seconds):
                raise Cancelled("cancelled by the caller")

        return Retrying(
            stop=stop_any(stop_after_attempt(policy.attempts),
                          _StopAtDeadline(deadline, cancelled)),
            wait=wait,
            retry=retry_if_exception_type(Transient),
            sleep=sleep,
            reraise=True,
        )

    def classify(self, method: str, response: Answer) -> Answer:
        """Raise Transient for a status worth retrying for `method`; else return it."""
        if self.retryable(method, response.status):
            raise Transient(response=response)
        return response

    def call(self, attempt: Callable[[float], Answer], deadline: float,
             cancelled: threading.Event, resend_on_error: bool, retry: bool = True) -> Answer:
        """Run `attempt(remaining seconds)` under the policy; map `requests` errors to ours.

        `attempt` raises Transient for an answer worth another try. A transport error is retried
        when `resend_on_error`, or when the request surely never left this machine. The retry
        loop is built only after a first failure, which it then replays as its first attempt.
        Without `retry`, the first attempt's outcome is final.
        """
        if cancelled.is_set():  # cancelled while it waited for a thread: nothing was sent
            raise Cancelled("cancelled by the caller")
        tries = _Tries(attempt, deadline, resend_on_error)
        try:
            return tries.once()
        except Transient as exc:
            if not retry:
                if exc.response is not None:
                    return exc.response
                raise _transport_failure(exc.error or Exception()) from None
        except _DeadlinePassed:
            raise _deadline_failure(None) from None
        except requests.RequestException as exc:
            raise _transport_failure(exc) from None
        tries.replay = True
        try:
            for try_ in self.retrying(deadline, cancelled):
                with try_:
                    return tries.once()
        except _DeadlinePassed:
            raise _deadline_failure(tries.last) from None
        except Transient as exc:
            if cancelled.is_set():
                raise Cancelled("cancelled by the caller") from None
            if exc.response is not None:
                return exc.response
            assert exc.error is not None
            raise _transport_failure(exc.error) from None
        except requests.RequestException as exc:
            raise _transport_failure(exc) from None
        raise Timeout("no attempt was made within the deadline")  # pragma: no cover

    def post_form(self, path: str, form: dict[str, str], deadline: float,
                  cancelled: threading.Event, retry: bool) -> tuple[int, Any]:
        """POST a form to an OAuth endpoint (no token); the status and parsed JSON."""
        url = self.origin + path

        def attempt(remaining: float) -> Answer:
            response = self.session.post(url, data=form, timeout=remaining,
                                         allow_redirects=False)
            answer = Answer(response.status_code, response.headers, response.content)
            if retry and (answer.status >= 500 or answer.status == 429):
                raise Transient(response=answer)
            return answer

        answer = self.call(attempt, deadline, cancelled, resend_on_error=retry)
        try:
            return answer.status, json.loads(answer.body)
        except ValueError:
            return answer.status, None

    def get_page(self, path_and_query: str, timeout: float) -> Answer:
        """GET a page of the instance once, without a token or redirects (for the OAuth probe)."""
        try:
            response = self.session.get(self.origin + path_and_query, timeout=timeout,
                                        allow_redirects=False, headers={"Accept": "text/html"})
        except requests.RequestException as exc:
            raise _transport_failure(exc) from None
        return Answer(response.status_code, response.headers, response.content[:1 << 16])

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()


# --- responses --------------------------------------------------------------------------


def response_headers(response: Answer) -> Pairs:
    """The headers the parent may see."""
    return tuple(
        (name, value) for name, value in response.headers.items()
        if name.lower() not in WITHHELD_HEADERS
    )


def error_from_response(status: int, body: bytes, headers: Pairs) -> ApiFailure:
    """An ApiFailure from the platform's error envelope, or from the status alone."""
    message, detail = f"the instance answered {status}", None
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict):
            message = str(error.get("message") or message)
            detail = None if error.get("detail") is None else str(error.get("detail"))
        elif isinstance(error, str):
            message = str(parsed.get("error_description") or error)
    return ApiFailure(message, status, detail, headers)


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


# --- helpers ----------------------------------------------------------------------------

_NEEDS_QUOTING = re.compile(r"[^A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=%]")


_DECODERS = frozenset({"identity", *urllib3.response.HTTPResponse.CONTENT_DECODERS})


def _decodable(encoding: str) -> bool:
    return all(part.strip().lower() in _DECODERS for part in encoding.split(",") if part.strip())


def _pairs(value: object, what: str) -> Pairs:
    if not isinstance(value, tuple) or not all(
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], str)
        for p in value
    ):
        raise InvalidRequest(f"each {what} must be a pair of strings")
    return value


class _StopAtDeadline(stop_base):
    """Stop when the caller gave up, or when the next wait would end past the deadline."""

    def __init__(self, deadline: float, cancelled: threading.Event) -> None:
        self._deadline = deadline
        self._cancelled = cancelled

    def __call__(self, state: RetryCallState) -> bool:
        if self._cancelled.is_set():
            return True
        return time.monotonic() + (state.upcoming_sleep or 0.0) >= self._deadline


def _transient_of(state: RetryCallState) -> Transient | None:
    outcome = state.outcome
    if outcome is None or not outcome.failed:
        return None
    exc = outcome.exception()
    return exc if isinstance(exc, Transient) else None


def _retryable_error(exc: requests.RequestException, resend_on_error: bool) -> bool:
    if resend_on_error:
        return isinstance(exc, requests.ConnectionError | requests.Timeout) and not isinstance(
            exc, requests.exceptions.SSLError)
    return _not_sent(exc)


def _not_sent(exc: requests.RequestException) -> bool:
    """True when the request surely never reached the server (safe to resend a POST)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and not isinstance(
            exc, requests.exceptions.SSLError):
        reason: Any = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)
        return isinstance(reason, urllib3.exceptions.NewConnectionError)
    return False


class _Tries:
    """The tries of one call, and how the latest one ended (to say what a deadline cut short)."""

    def __init__(self, attempt: Callable[[float], Answer], deadline: float,
                 resend_on_error: bool) -> None:
        self._attempt = attempt
        self._deadline = deadline
        self._resend_on_error = resend_on_error
        self.last: Transient | None = None
        self.replay = False  # the retry loop's first try is the failure that started it

    def once(self) -> Answer:
        """One try; Transient for a failure worth another, _DeadlinePassed when out of time."""
        if self.replay and self.last is not None:
            self.replay = False
            raise self.last
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise _DeadlinePassed()
        try:
            return self._attempt(remaining)
        except Transient as failure:
            self.last = failure
            raise
        except requests.RequestException as exc:
            if _retryable_error(exc, self._resend_on_error):
                self.last = Transient(error=exc)
                raise self.last from exc
            raise


def read_piece(raw: Any, size: int) -> bytes:
    """Up to `size` bytes of an open answer's body, decoded; b"" at its end."""
    try:
        data: bytes = raw.read(size, decode_content=True)
    except urllib3.exceptions.ReadTimeoutError:
        raise Timeout("the instance stopped sending the body before the deadline") from None
    except (urllib3.exceptions.HTTPError, OSError):
        raise ApiFailure("the connection to the instance was lost while the body was read",
                         ) from None
    return data


class BodyTimeout(requests.ReadTimeout):
    """The instance began to answer, but the body did not arrive in time."""


class _DeadlinePassed(Exception):
    """No time is left for another try."""


def _deadline_failure(previous: Transient | None) -> Timeout:
    """What is known when the deadline ends the tries: sent or not, answered or not."""
    if previous is None:
        return Timeout("the deadline passed before the request could be sent: it was not sent")
    if previous.response is not None:
        return Timeout(f"the instance answered {previous.response.status}, and the deadline "
                       "passed before the request could be tried again")
    failure = _transport_failure(previous.error or Exception())
    return Timeout(f"{failure.message}; the deadline passed before another try")


def _transport_failure(exc: Exception) -> Failure:
    if isinstance(exc, BodyTimeout):
        return Timeout("the instance began to answer, but the answer was not read in full "
                       "before the deadline")
    if isinstance(exc, requests.ConnectTimeout):
        return Timeout("the request was not sent: the instance accepted no connection before "
                       "the deadline")
    if isinstance(exc, requests.Timeout) and any(
            "handshake operation timed out" in str(cause) for cause in _causes(exc)):
        return Timeout("the request was not sent: the server took the connection but did not "
                       "complete a TLS handshake before the deadline (a server that does not "
                       "speak TLS, such as an http:// one, may wait like this)")
    if isinstance(exc, requests.Timeout):
        return Timeout("the request was sent, but the instance did not answer before the "
                       "deadline")
    if isinstance(exc, requests.exceptions.SSLError):
        return _tls_failure(exc)
    if isinstance(exc, requests.ConnectionError):
        return ApiFailure("could not reach the instance (connection failed or was dropped)")
    return ApiFailure(f"the request failed: {type(exc).__name__}")


# OpenSSL's reasons for a server whose first answer is not a TLS record: it speaks plain HTTP.
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST",
                      "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL"})


def _tls_failure(exc: requests.exceptions.SSLError) -> TlsFailure:
    """A TLS failure, its cause named from OpenSSL's reason."""
    reason = _ssl_reason(exc)
    if reason in _NOT_TLS:
        return TlsFailure("TLS failed: the server does not speak TLS (it answered in plain text; "
                          "is it an http:// server, such as a local stub?)")
    if reason == "CERTIFICATE_VERIFY_FAILED":
        return TlsFailure("TLS failed: the instance's certificate is not trusted (a proxy that "
                          "inspects TLS needs its CA in the system's store, or ca_bundle=)")
    return TlsFailure(f"TLS failed talking to the instance ({reason or 'certificate or protocol'})")


def _ssl_reason(exc: BaseException) -> str | None:
    """OpenSSL's reason (such as WRONG_VERSION_NUMBER) from the ssl.SSLError under `exc`."""
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLError):
            return str(cause.reason) if cause.reason else None
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions it wraps (requests and urllib3 wrap in args and `reason`)."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [*current.args, getattr(current, "reason", None), current.__cause__,
                    current.__context__]
