"""Ways in besides the authorization-code flow: Basic auth and the password grants."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from conftest import ADMIN

from snworker.testing import StubServiceNow
from snworker.testing.platform import SEED_PASSWORD

SECRET = "client-s3cret"
EVERY_WAY = ("code", "basic", "password", "client_credentials")


pytestmark = pytest.mark.servicenow(auth=EVERY_WAY, client_secret=SECRET)


def token(sn: StubServiceNow, auth: Any = None, **form: str) -> requests.Response:
    return requests.post(f"{sn.url}/oauth_token.do", data=form, auth=auth, timeout=5)


def me(sn: StubServiceNow, **kwargs: Any) -> requests.Response:
    return requests.get(f"{sn.url}/api/now/table/sys_user", timeout=5, params={
        "sysparm_query": "sys_id=javascript:gs.getUserID()", "sysparm_fields": "user_name"},
        **kwargs)


def test_only_the_authorization_code_flow_by_default() -> None:
    with StubServiceNow(client_secret=SECRET) as sn:
        assert me(sn, auth=ADMIN).status_code == 401
        refused = token(sn, grant_type="password", username="admin", password=SEED_PASSWORD,
                        client_id=sn.client_id, client_secret=SECRET)
        assert refused.status_code == 401
        assert refused.json() == {"error_description": "access_denied", "error": "server_error"}
        # The client-credentials grant is refused as with its system property off.
        refused = token(sn, grant_type="client_credentials", client_id=sn.client_id,
                        client_secret=SECRET)
        assert refused.status_code == 401
        assert refused.json()["error"] == "unsupported_grant_type"
        assert "grant_type.enabled" in refused.json()["error_description"]
        assert sn.grant_counts == {"authorization_code": 0, "refresh_token": 0}


def test_basic_auth_signs_in_seed_users_and_users_a_test_adds(sn: StubServiceNow) -> None:
    assert me(sn, auth=ADMIN).json() == {"result": [{"user_name": "admin"}]}
    assert me(sn, auth=("abel.tuter", SEED_PASSWORD)).json()["result"] == [
        {"user_name": "abel.tuter"}]
    assert me(sn, auth=("admin", "wrong")).status_code == 401
    assert me(sn, auth=("nobody", SEED_PASSWORD)).status_code == 401
    sn.insert("sys_user", {"user_name": "svc.sync", "user_password": "p4ss", "first_name": "Sync"})
    assert me(sn, auth=("svc.sync", "p4ss")).json()["result"] == [{"user_name": "svc.sync"}]
    abel = next(u for u in sn.users if u["user_name"] == "abel.tuter")
    requests.patch(f"{sn.url}/api/now/table/sys_user/{abel['sys_id']}", auth=ADMIN, timeout=5,
                   json={"locked_out": True})
    assert me(sn, auth=("abel.tuter", SEED_PASSWORD)).status_code == 401


def test_writes_are_made_as_the_signed_in_user(sn: StubServiceNow) -> None:
    beth = next(u for u in sn.users if u["user_name"] == "beth.anglin")
    created = requests.post(f"{sn.url}/api/now/table/incident", timeout=5,
                            auth=("beth.anglin", SEED_PASSWORD),
                            json={"short_description": "as Beth", "comments": "hi"})
    record = created.json()["result"]
    assert record["opened_by"]["value"] == beth["sys_id"]
    assert (record["sys_created_by"], record["sys_updated_by"]) == ("beth.anglin",) * 2
    [entry] = [j for j in sn.records("sys_journal_field") if j["element_id"] == record["sys_id"]]
    assert entry["sys_created_by"] == "beth.anglin"


@pytest.mark.parametrize("client_in_header", [False, True])
def test_password_grant(sn: StubServiceNow, client_in_header: bool) -> None:
    form = {"grant_type": "password", "username": "fred.luddy", "password": SEED_PASSWORD}
    if client_in_header:
        answer = token(sn, auth=(sn.client_id, SECRET), **form)
    else:
        answer = token(sn, client_id=sn.client_id, client_secret=SECRET, **form)
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    assert set(tokens) == {"access_token", "refresh_token", "scope", "token_type", "expires_in"}
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert me(sn, headers=bearer).json()["result"] == [{"user_name": "fred.luddy"}]
    renewed = token(sn, grant_type="refresh_token", refresh_token=tokens["refresh_token"],
                    client_id=sn.client_id, client_secret=SECRET)
    assert renewed.status_code == 200
    assert sn.grant_counts == {"authorization_code": 0, "refresh_token": 1, "password": 1,
                               "client_credentials": 0}


@pytest.mark.parametrize("form", [
    {"username": "fred.luddy", "password": "wrong", "client_secret": SECRET},
    {"username": "fred.luddy", "password": SEED_PASSWORD, "client_secret": "wrong"},
    {"username": "fred.luddy", "password": SEED_PASSWORD},
])
def test_password_grant_refusals(sn: StubServiceNow, form: dict[str, str]) -> None:
    answer = token(sn, grant_type="password", client_id=sn.client_id, **form)
    assert answer.status_code == 401
    assert answer.json() == {"error_description": "access_denied", "error": "server_error"}


def test_client_credentials_grant(sn: StubServiceNow) -> None:
    answer = token(sn, grant_type="client_credentials", client_id=sn.client_id,
                   client_secret=SECRET)
    assert answer.status_code == 200
    tokens = answer.json()
    assert "refresh_token" not in tokens and tokens["token_type"] == "Bearer"
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert me(sn, headers=bearer).json()["result"] == [{"user_name": "admin"}]
    sn.revoke_refresh_tokens()
    assert me(sn, headers=bearer).status_code == 401


def test_a_registered_client_with_a_secret_and_no_redirect(sn: StubServiceNow) -> None:
    sn.register_client("integration", [], client_secret="other-secret")
    answer = token(sn, grant_type="client_credentials", client_id="integration",
                   client_secret="other-secret")
    assert answer.status_code == 200
    public = token(sn, grant_type="client_credentials", client_id=sn.client_id,
                   client_secret="other-secret")
    assert public.status_code == 401


def test_passwords_and_secrets_are_masked_and_listed_as_issued(sn: StubServiceNow) -> None:
    me(sn, auth=ADMIN)
    token(sn, grant_type="password", username="admin", password=SEED_PASSWORD,
          client_id=sn.client_id, client_secret=SECRET)
    log = json.dumps(sn.requests)
    assert SEED_PASSWORD not in log and SECRET not in log
    basic = next(r for r in sn.requests if r["path"] == "/api/now/table/sys_user")
    assert basic["headers"]["Authorization"] == "Basic ***"
    form = next(r for r in sn.requests if r["path"] == "/oauth_token.do")["form"]
    assert (form["password"], form["client_secret"], form["username"]) == ("***", "***", "admin")
    issued = sn.issued_secrets()
    assert SEED_PASSWORD in issued and SECRET in issued
    assert sn.config.client_secret == SECRET and SECRET not in repr(sn.config)
