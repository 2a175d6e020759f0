"""pysnc's asyncio client, unmodified, against the stub: with Basic auth, and through a worker.

The async counterpart of test_pysnc_conformance.py: each scenario runs with pysnc's
`AsyncServiceNowClient` given Basic auth straight to the stub, and given an `httpx.AsyncClient`
whose transport is `snworker.aio.httpx_transport(aconn)`. The same assertions hold both ways,
down to how the stub saw each request authenticated. The one shim is the sync test's: pysnc's
https-only URL check is given the stub's loopback URL as it is.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

pytest.importorskip("pysnc")
httpx = pytest.importorskip("httpx")

import pysnc.asyncio.client  # noqa: E402
from pysnc.asyncio import AsyncServiceNowClient  # noqa: E402

import snworker  # noqa: E402
import snworker.aio  # noqa: E402
from snworker.testing import StubServiceNow, approve  # noqa: E402
from snworker.testing.platform import SEED_PASSWORD  # noqa: E402

pytestmark = [pytest.mark.servicenow(auth=("code", "basic")), pytest.mark.timeout(60)]

Scenario = Callable[[StubServiceNow, Any], Awaitable[None]]


@pytest.fixture
def sn(servicenow_stub: StubServiceNow, monkeypatch: pytest.MonkeyPatch) -> StubServiceNow:
    def loopback_instance(instance: str) -> str:
        assert instance.startswith(("http://127.0.0.1:", "https://")), instance
        return instance.rstrip("/")

    monkeypatch.setattr(pysnc.asyncio.client, "get_instance", loopback_instance)
    return servicenow_stub


@pytest.fixture(params=["basic", "worker"])
def through(request: pytest.FixtureRequest, sn: StubServiceNow) -> Callable[[Scenario], None]:
    """Runs a scenario with a pysnc async client made the `request.param` way, then checks
    how every request the client sent was authenticated."""

    def run(scenario: Scenario) -> None:
        async def main() -> None:
            aconn = None
            if request.param == "basic":
                client = AsyncServiceNowClient(sn.url, ("admin", SEED_PASSWORD))
            else:
                aconn = await snworker.aio.connect(sn.url, sn.client_id,
                                                   redirect_uri=sn.redirect_uri,
                                                   open_browser=approve,
                                                   authorization_timeout=15)
                http = httpx.AsyncClient(base_url=aconn.instance_url,
                                         transport=snworker.aio.httpx_transport(aconn))
                client = AsyncServiceNowClient(aconn.instance_url, auth=http)
            sn.requests_before_client = len(sn.requests)  # type: ignore[attr-defined]
            try:
                await scenario(sn, client)
            finally:
                await client.close()
                if aconn is not None:
                    await aconn.disconnect()

        asyncio.run(main())
        sent = [r for r in client_requests(sn) if r["path"].startswith("/api/")]
        scheme = "Basic ***" if request.param == "basic" else "Bearer ***"
        assert sent and {r["headers"].get("Authorization") for r in sent} == {scheme}

    return run


def client_requests(sn: StubServiceNow) -> list[Any]:
    return sn.requests[getattr(sn, "requests_before_client", 0):]


def table_requests(sn: StubServiceNow, method: str = "GET") -> list[Any]:
    return [r for r in client_requests(sn)
            if r["method"] == method and r["path"] == "/api/now/table/incident"]


def test_an_encoded_query_pages_through_every_match(through: Callable[[Scenario], None]) -> None:
    async def scenario(sn: StubServiceNow, client: Any) -> None:
        expected = sorted(r["number"] for r in sn.records("incident") if r["active"] == "true")
        gr = await client.GlideRecord("incident", batch_size=4)
        gr.add_encoded_query("active=true^ORDERBYnumber")
        await gr.query()
        assert len(gr) == len(expected)
        assert [record.number async for record in gr] == expected
        pages = table_requests(sn)
        assert len(pages) == math.ceil(len(expected) / 4) > 1
        assert [p["query"]["sysparm_offset"] for p in pages[:3]] == ["0", "4", "8"]

    through(scenario)


def test_get_by_sys_id_and_by_field(through: Callable[[Scenario], None]) -> None:
    async def scenario(sn: StubServiceNow, client: Any) -> None:
        stored = sn.records("incident")[4]
        gr = await client.GlideRecord("incident")
        assert await gr.get(stored["sys_id"]) is True
        assert gr.number == stored["number"]
        other = await client.GlideRecord("incident")
        assert await other.get("number", "INC0010007") is True
        assert other.number == "INC0010007"
        missing = await client.GlideRecord("incident")
        assert await missing.get("0" * 32) is False

    through(scenario)


def test_insert_update_and_delete(through: Callable[[Scenario], None]) -> None:
    async def scenario(sn: StubServiceNow, client: Any) -> None:
        gr = await client.GlideRecord("incident")
        gr.initialize()
        gr.short_description = "Inserted by pysnc's asyncio client"
        sys_id = await gr.insert()
        assert sys_id and gr.state == "1"
        gr.state = "2"
        assert await gr.update() == sys_id
        stored = next(r for r in sn.records("incident") if r["sys_id"] == sys_id)
        assert stored["state"] == "2"
        assert gr.get_display_value("state") == "In Progress"
        assert await gr.delete() is True
        assert sys_id not in {r["sys_id"] for r in sn.records("incident")}

    through(scenario)


def test_concurrent_queries_share_one_client(through: Callable[[Scenario], None]) -> None:
    async def scenario(sn: StubServiceNow, client: Any) -> None:
        numbers = [r["number"] for r in sn.records("incident")][:8]

        async def fetch(number: str) -> str:
            gr = await client.GlideRecord("incident")
            assert await gr.get("number", number) is True
            return str(gr.number)

        assert await asyncio.gather(*[fetch(n) for n in numbers]) == numbers

    through(scenario)


def test_another_origin_is_refused_before_anything_is_sent(sn: StubServiceNow) -> None:
    async def main() -> None:
        async with await snworker.aio.connect(sn.url, sn.client_id,
                                              redirect_uri=sn.redirect_uri,
                                              open_browser=approve) as aconn:
            before = len(sn.requests)
            async with httpx.AsyncClient(transport=snworker.aio.httpx_transport(aconn)) as http:
                with pytest.raises(snworker.InvalidRequestError):
                    await http.get("http://127.0.0.1:9/api/now/table/incident")
                answer = await http.get(f"{aconn.instance_url}/api/now/table/incident/"
                                        + "0" * 32)
                assert answer.status_code == 404  # any status comes back as a response
            assert len(sn.requests) == before + 1

    asyncio.run(main())
