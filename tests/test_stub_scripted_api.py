"""Scripted REST APIs: routes a test registers on the stub, answered by its own handler."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from snworker.testing import ScriptedRequest, ScriptedResponse, StubServiceNow
from snworker.testing.platform import SEED_PASSWORD

ADMIN = ("admin", SEED_PASSWORD)


@pytest.fixture
def sn() -> Iterator[StubServiceNow]:
    with StubServiceNow(auth=("code", "basic")) as stub:
        yield stub


def test_a_route_answers_with_its_handlers_result(sn: StubServiceNow) -> None:
    seen: list[ScriptedRequest] = []

    def hello(request: ScriptedRequest) -> object:
        seen.append(request)
        return {"greeting": f"hello {request.path_params['name']}"}

    sn.route("/api/x_acme/v1/hello/<name>", hello)
    answer = requests.get(f"{sn.url}/api/x_acme/v1/hello/world", params={"lang": "en"},
                          auth=ADMIN, timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"result": {"greeting": "hello world"}}
    [request] = seen
    assert (request.method, request.path, request.query) == (
        "GET", "/api/x_acme/v1/hello/world", {"lang": "en"})
    assert request.user_sys_id == next(u["sys_id"] for u in sn.users if u["user_name"] == "admin")


def test_a_handler_sets_status_headers_and_reads_the_body(sn: StubServiceNow) -> None:
    def create(request: ScriptedRequest) -> ScriptedResponse:
        return ScriptedResponse(201, {"echo": request.json()}, {"X-Acme": "yes"})

    sn.route("/api/x_acme/v1/items", create, methods=["POST"])
    answer = requests.post(f"{sn.url}/api/x_acme/v1/items", json={"a": 1}, auth=ADMIN, timeout=5)
    assert (answer.status_code, answer.headers["X-Acme"]) == (201, "yes")
    assert answer.json() == {"result": {"echo": {"a": 1}}}
    wrong_method = requests.get(f"{sn.url}/api/x_acme/v1/items", auth=ADMIN, timeout=5)
    assert wrong_method.status_code == 405


def test_routes_need_authentication_fail_cleanly_and_go_on_reset(sn: StubServiceNow) -> None:
    def broken(request: ScriptedRequest) -> object:
        raise RuntimeError("bug in the handler")

    sn.route("/api/x_acme/v1/broken", broken)
    assert requests.get(f"{sn.url}/api/x_acme/v1/broken", timeout=5).status_code == 401
    failed = requests.get(f"{sn.url}/api/x_acme/v1/broken", auth=ADMIN, timeout=5)
    assert failed.status_code == 500 and failed.json()["status"] == "failure"
    sn.reset()
    gone = requests.get(f"{sn.url}/api/x_acme/v1/broken", auth=ADMIN, timeout=5)
    assert gone.status_code == 400
    with pytest.raises(ValueError):
        sn.route("/x_acme/v1/outside", broken)


def test_a_route_may_stand_in_for_a_platform_api(sn: StubServiceNow) -> None:
    sn.route("/api/now/table/incident", lambda request: ScriptedResponse(503, None))
    answer = requests.get(f"{sn.url}/api/now/table/incident", auth=ADMIN, timeout=5)
    assert answer.status_code == 503 and answer.content == b""
