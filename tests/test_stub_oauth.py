"""The stub's OAuth endpoints, driven over a real socket as a client and a browser would."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from snworker.testing import StubServiceNow, approve, deny, ignore
from snworker.testing.oauth import s256

TOKEN_FAILURE = {"error_description": "access_denied", "error": "server_error"}
NOT_AUTHENTICATED = {
    "error": {
        "message": "User Not Authenticated",
        "detail": "Required to provide Auth information",
    },
    "status": "failure",
}


class Listener:
    """A client's loopback listener: remembers the query of every callback it receives."""

    def __init__(self) -> None:
        queries = self.queries = []  # type: list[dict[str, str]]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                queries.append({k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.redirect_uri = f"http://127.0.0.1:{self.server.server_port}/callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sn() -> Iterator[StubServiceNow]:
    with StubServiceNow() as stub:
        yield stub


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def authorize_params(
    sn: StubServiceNow, verifier: str, **overrides: str | None
) -> dict[str, str]:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": sn.client_id,
        "redirect_uri": "http://127.0.0.1:8765/callback",
        "state": "state-1",
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def authorize(sn: StubServiceNow, params: dict[str, str]) -> requests.Response:
    return requests.get(
        f"{sn.url}/oauth_auth.do", params=params, allow_redirects=False, timeout=5
    )


def redirect_query(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["Location"])
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def get_code(sn: StubServiceNow, verifier: str, **overrides: str) -> str:
    sn.set_consent("allow")
    return redirect_query(authorize(sn, authorize_params(sn, verifier, **overrides)))["code"]


def token_request(sn: StubServiceNow, **form: str) -> requests.Response:
    return requests.post(f"{sn.url}/oauth_token.do", data=form, timeout=5)


def exchange(sn: StubServiceNow, code: str, verifier: str, **overrides: str) -> requests.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": "http://127.0.0.1:8765/callback",
        "client_id": sn.client_id,
        "code_verifier": verifier,
    }
    form.update(overrides)
    return token_request(sn, **form)


def sign_in(sn: StubServiceNow) -> dict[str, Any]:
    verifier = secrets.token_urlsafe(48)
    answer = exchange(sn, get_code(sn, verifier), verifier)
    assert answer.status_code == 200
    return dict(answer.json())


def api_get(sn: StubServiceNow, access_token: str | None) -> requests.Response:
    headers = {} if access_token is None else {"Authorization": f"Bearer {access_token}"}
    return requests.get(f"{sn.url}/api/now/table/incident", headers=headers, timeout=5)


# --- authorize ----------------------------------------------------------------------------------


def test_consent_page_names_the_app_and_offers_allow_and_deny(sn: StubServiceNow) -> None:
    page = authorize(sn, authorize_params(sn, "v" * 43))
    assert page.status_code == 200
    assert "snworker test app would like to connect to your ServiceNow account" in page.text
    assert 'value="allow">Allow</button>' in page.text
    assert 'value="deny">Deny</button>' in page.text
    assert 'name="state" value="state-1"' in page.text


def test_approve_delivers_code_and_state_to_the_listener(
    sn: StubServiceNow, listener: Listener
) -> None:
    verifier = secrets.token_urlsafe(48)
    params = authorize_params(sn, verifier, redirect_uri=listener.redirect_uri)
    url = requests.Request("GET", f"{sn.url}/oauth_auth.do", params=params).prepare().url
    assert url is not None and approve(url) is True
    [callback] = listener.queries
    assert callback["state"] == "state-1"
    answer = exchange(sn, callback["code"], verifier, redirect_uri=listener.redirect_uri)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"access_token", "refresh_token", "scope", "token_type", "expires_in"}
    assert body["scope"] == "useraccount"
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1799
    assert sn.grant_counts == {"authorization_code": 1, "refresh_token": 0}


def test_deny_redirects_with_access_denied(sn: StubServiceNow, listener: Listener) -> None:
    params = authorize_params(sn, "v" * 43, redirect_uri=listener.redirect_uri, state="s-9")
    url = requests.Request("GET", f"{sn.url}/oauth_auth.do", params=params).prepare().url
    assert url is not None and deny(url) is True
    assert listener.queries == [{"error": "access_denied", "state": "s-9"}]


def test_ignore_does_nothing(sn: StubServiceNow, listener: Listener) -> None:
    assert ignore(f"{sn.url}/oauth_auth.do") is True
    assert listener.queries == []
    assert sn.requests == []


def test_consent_modes_answer_at_once(sn: StubServiceNow) -> None:
    sn.set_consent("allow")
    assert "code" in redirect_query(authorize(sn, authorize_params(sn, "v" * 43)))
    sn.set_consent("deny")
    assert redirect_query(authorize(sn, authorize_params(sn, "v" * 43))) == {
        "error": "access_denied",
        "state": "state-1",
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"client_id": "nobody"}, "Invalid client_id"),
        ({"state": None}, "Missing State parameter in request"),
        ({"redirect_uri": "https://evil.example/callback"}, "Invalid redirect_uri"),
        ({"redirect_uri": "http://127.0.0.1:8765/other"}, "Invalid redirect_uri"),
        ({"redirect_uri": "http://localhost:8765/callback"}, "Invalid redirect_uri"),
    ],
)
def test_refused_authorize_requests_get_a_page_not_a_redirect(
    sn: StubServiceNow, overrides: dict[str, Any], message: str
) -> None:
    answer = authorize(sn, authorize_params(sn, "v" * 43, **overrides))
    assert answer.status_code == 400
    assert "Location" not in answer.headers
    assert message in answer.text


def test_any_loopback_port_matches_by_default(sn: StubServiceNow) -> None:
    sn.set_consent("allow")
    answer = authorize(
        sn, authorize_params(sn, "v" * 43, redirect_uri="http://127.0.0.1:40123/callback")
    )
    assert answer.headers["Location"].startswith("http://127.0.0.1:40123/callback?code=")


def test_strict_redirect_falls_back_to_the_first_registered_uri() -> None:
    registered = "http://127.0.0.1:8765/callback"
    with StubServiceNow(strict_redirect=True, redirect_uri=registered, consent="allow") as sn:
        for asked in ("http://127.0.0.1:40123/callback", "https://evil.example/cb"):
            answer = authorize(sn, authorize_params(sn, "v" * 43, redirect_uri=asked))
            assert answer.status_code == 302
            assert answer.headers["Location"].startswith(f"{registered}?code=")


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
def test_protocol_errors_redirect_with_an_error(
    sn: StubServiceNow, overrides: dict[str, Any], error: str
) -> None:
    query = redirect_query(authorize(sn, authorize_params(sn, "v" * 43, **overrides)))
    assert query["error"] == error
    assert query["state"] == "state-1"
    assert "code" not in query


def test_client_without_pkce_may_skip_the_challenge(sn: StubServiceNow) -> None:
    sn.register_client("legacy", ["http://127.0.0.1:9000/cb"], pkce_required=False)
    sn.set_consent("allow")
    params = authorize_params(
        sn, "v", client_id="legacy", redirect_uri="http://127.0.0.1:9000/cb",
        code_challenge=None, code_challenge_method=None,
    )
    code = redirect_query(authorize(sn, params))["code"]
    answer = token_request(
        sn, grant_type="authorization_code", code=code, client_id="legacy",
        redirect_uri="http://127.0.0.1:9000/cb",
    )
    assert answer.status_code == 200


def test_consent_form_with_no_choice_is_refused(sn: StubServiceNow) -> None:
    form = authorize_params(sn, "v" * 43)
    answer = requests.post(f"{sn.url}/oauth_auth.do", data=form, allow_redirects=False, timeout=5)
    assert answer.status_code == 400


# --- token ----------------------------------------------------------------------------------------


def test_code_is_single_use(sn: StubServiceNow) -> None:
    verifier = secrets.token_urlsafe(48)
    code = get_code(sn, verifier)
    assert exchange(sn, code, verifier).status_code == 200
    reused = exchange(sn, code, verifier)
    assert reused.status_code == 401
    assert reused.json() == TOKEN_FAILURE


@pytest.mark.parametrize(
    "overrides",
    [
        {"code_verifier": "wrong-verifier-wrong-verifier-wrong-verifier"},
        {"code_verifier": ""},
        {"redirect_uri": "http://127.0.0.1:9999/callback"},
        {"client_id": "someone-else"},
        {"grant_type": "password"},
    ],
)
def test_bad_exchanges_are_refused_as_the_platform_does(
    sn: StubServiceNow, overrides: dict[str, str]
) -> None:
    verifier = secrets.token_urlsafe(48)
    code = get_code(sn, verifier)
    answer = exchange(sn, code, verifier, **overrides)
    assert answer.status_code == 401
    assert answer.json() == TOKEN_FAILURE
    assert sn.grant_counts["authorization_code"] == 0


def test_an_unknown_code_is_refused(sn: StubServiceNow) -> None:
    verifier = secrets.token_urlsafe(48)
    get_code(sn, verifier)
    answer = exchange(sn, "made-up-code", verifier)
    assert answer.status_code == 401
    assert answer.json() == TOKEN_FAILURE


def test_a_failed_attempt_spends_the_code(sn: StubServiceNow) -> None:
    verifier = secrets.token_urlsafe(48)
    code = get_code(sn, verifier)
    assert exchange(sn, code, "not-the-verifier").status_code == 401
    assert exchange(sn, code, verifier).status_code == 401


def test_code_expires_after_sixty_seconds(sn: StubServiceNow) -> None:
    verifier = secrets.token_urlsafe(48)
    fresh, stale = get_code(sn, verifier), get_code(sn, verifier)
    sn.advance(59)
    assert exchange(sn, fresh, verifier).status_code == 200
    sn.advance(2)
    assert exchange(sn, stale, verifier).status_code == 401


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", json.dumps({"grant_type": "refresh_token", "refresh_token": "x"})),
        ("text/plain", "grant_type=refresh_token&refresh_token=x"),
        ("application/x-www-form-urlencoded", ""),
    ],
)
def test_token_endpoint_takes_only_a_form(sn: StubServiceNow, content_type: str, body: str) -> None:
    tokens = sign_in(sn)
    body = body.replace("=x", "=" + tokens["refresh_token"]).replace('"x"', json.dumps(
        tokens["refresh_token"]))
    answer = requests.post(
        f"{sn.url}/oauth_token.do", data=body, headers={"Content-Type": content_type}, timeout=5
    )
    assert answer.status_code == 401
    assert answer.json() == TOKEN_FAILURE


def test_refresh_returns_the_same_refresh_token_and_a_new_access_token(sn: StubServiceNow) -> None:
    tokens = sign_in(sn)
    answer = token_request(
        sn, grant_type="refresh_token", refresh_token=tokens["refresh_token"],
        client_id=sn.client_id,
    )
    assert answer.status_code == 200
    renewed = answer.json()
    assert renewed["refresh_token"] == tokens["refresh_token"]
    assert renewed["access_token"] != tokens["access_token"]
    assert sn.grant_counts == {"authorization_code": 1, "refresh_token": 1}
    assert api_get(sn, renewed["access_token"]).status_code == 200
    assert api_get(sn, tokens["access_token"]).status_code == 200


def test_refresh_from_another_client_is_refused(sn: StubServiceNow) -> None:
    tokens = sign_in(sn)
    answer = token_request(
        sn, grant_type="refresh_token", refresh_token=tokens["refresh_token"], client_id="other"
    )
    assert answer.status_code == 401


def test_lifespans_apply_to_tokens_issued_later(sn: StubServiceNow) -> None:
    sn.set_lifespans(access=60, refresh=120)
    tokens = sign_in(sn)
    assert tokens["expires_in"] == 59
    sn.advance(61)
    assert api_get(sn, tokens["access_token"]).json() == NOT_AUTHENTICATED
    sn.advance(60)
    answer = token_request(
        sn, grant_type="refresh_token", refresh_token=tokens["refresh_token"],
        client_id=sn.client_id,
    )
    assert answer.status_code == 401
    assert answer.json() == TOKEN_FAILURE


def test_tokens_are_random_and_long(sn: StubServiceNow) -> None:
    first, second = sign_in(sn), sign_in(sn)
    values = {first["access_token"], first["refresh_token"], second["access_token"],
              second["refresh_token"]}
    assert len(values) == 4
    assert all(len(value) >= 43 for value in values)


# --- tokens in use --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization", [None, "Bearer", "Bearer made-up-token", "Basic YWRtaW46YWRtaW4="]
)
def test_rest_without_a_valid_token_is_refused(
    sn: StubServiceNow, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = requests.get(f"{sn.url}/api/now/table/incident", headers=headers, timeout=5)
    assert answer.status_code == 401
    assert answer.json() == NOT_AUTHENTICATED


def test_access_token_expires_on_the_stub_clock(sn: StubServiceNow) -> None:
    token = sign_in(sn)["access_token"]
    sn.advance(1799)
    assert api_get(sn, token).status_code == 200
    sn.advance(2)
    assert api_get(sn, token).status_code == 401


def test_expire_access_tokens_leaves_refresh_working(sn: StubServiceNow) -> None:
    tokens = sign_in(sn)
    sn.expire_access_tokens()
    assert api_get(sn, tokens["access_token"]).status_code == 401
    answer = token_request(
        sn, grant_type="refresh_token", refresh_token=tokens["refresh_token"],
        client_id=sn.client_id,
    )
    assert api_get(sn, answer.json()["access_token"]).status_code == 200


def test_revoke_refresh_tokens_ends_every_grant(sn: StubServiceNow) -> None:
    tokens = sign_in(sn)
    sn.revoke_refresh_tokens()
    assert api_get(sn, tokens["access_token"]).status_code == 401
    answer = token_request(
        sn, grant_type="refresh_token", refresh_token=tokens["refresh_token"],
        client_id=sn.client_id,
    )
    assert answer.status_code == 401


def test_revoke_endpoint(sn: StubServiceNow) -> None:
    first, second = sign_in(sn), sign_in(sn)
    revoke = f"{sn.url}/oauth_revoke_token.do"
    answer = requests.post(revoke, data={"token": first["access_token"]}, timeout=5)
    assert answer.status_code == 200
    assert api_get(sn, first["access_token"]).status_code == 401
    assert api_get(sn, second["access_token"]).status_code == 200
    requests.post(revoke, data={"token": second["refresh_token"], "client_id": sn.client_id},
                  timeout=5)
    assert api_get(sn, second["access_token"]).status_code == 401
    assert requests.post(revoke, data={"token": "unknown"}, timeout=5).status_code == 200
    assert sn.revocation_count == 3


def test_secrets_are_recorded_as_issued_and_masked_in_the_log(sn: StubServiceNow) -> None:
    verifier = secrets.token_urlsafe(48)
    code = get_code(sn, verifier)
    tokens = exchange(sn, code, verifier).json()
    api_get(sn, tokens["access_token"])
    issued = sn.issued_secrets()
    for secret in (code, verifier, tokens["access_token"], tokens["refresh_token"]):
        assert secret in issued
    log = json.dumps(sn.requests)
    assert not any(secret in log for secret in issued)
    token_entry = next(r for r in sn.requests if r["path"] == "/oauth_token.do")
    assert token_entry["form"]["code"] == "***"
    assert token_entry["form"]["code_verifier"] == "***"
    assert token_entry["form"]["grant_type"] == "authorization_code"
    assert sn.requests[-1]["headers"]["Authorization"] == "Bearer ***"
