"""Section 9: the stub's own speed, the figures a test suite built on it pays for.

Both comparisons run in this process against stubs of its own (`StubServiceNow`, served on a
background thread), and the reference and the stub's side share a server, so the ratio is what
the stub's own work adds:

- a list of 1,000 incidents (`sysparm_limit=1000`, every column) against the very same bytes
  downloaded as an attachment of the same stub: same socket, same authentication, no query,
  no rendering, no JSON;
- a fresh stub per test (start, one request, stop) against one shared stub reset between tests
  (`reset()`, one request), what the `servicenow` fixture does;
- the `servicenow_connection` fixture per test: the session's connection kept across resets
  (`reset(keep_grant=True)`, the fixture's check that the connection still works, one GET
  through the worker) against a new connection per test (`reset()`, `connect()` with a consent
  by the approve stand-in, one GET, `disconnect()`), what the fixture did before.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import requests

import snworker
from benchmarks import baseline
from benchmarks.measure import Block, alternate, timed_loop
from benchmarks.sections import Bench, comparison
from snworker.testing import StubServiceNow, approve
from snworker.testing.plugin import SharedConnection

LIST_RECORDS = 1000
LIST_PATH = f"/api/now/table/incident?sysparm_limit={LIST_RECORDS}"
PROBE_PATH = "/api/now/table/incident?sysparm_limit=1"


def _download(session: requests.Session, url: str, size: int) -> None:
    response = session.get(url, timeout=30.0)
    if response.status_code != 200 or len(response.content) != size:
        raise RuntimeError(f"{url} answered {response.status_code}, {len(response.content)} B")


def _list_figures(bench: Bench) -> dict[str, Any]:
    """1,000 records listed by the Table API against the same body as an attachment."""
    with StubServiceNow() as sn:
        for index in range(LIST_RECORDS - len(sn.records("incident"))):
            sn.insert("incident", {"short_description": f"benchmark {index}", "state": "2"})
        token = baseline.authorize(sn.url, sn.client_id, sn.redirect_uri)
        session = baseline.session_factory(sn.url, token)()
        try:
            listed = session.get(sn.url + LIST_PATH, timeout=30.0)
            listed.raise_for_status()
            body = listed.content
            if len(listed.json()["result"]) != LIST_RECORDS:
                raise RuntimeError("the stub did not list every record")
            record = sn.records("incident")[0]
            stored = session.post(
                f"{sn.url}/api/now/attachment/file",
                params={"table_name": "incident", "table_sys_id": record["sys_id"],
                        "file_name": "list.json"},
                data=body, headers={"Content-Type": "application/json"}, timeout=30.0,
            )
            stored.raise_for_status()
            attachment = stored.json()["result"]["sys_id"]
            reference = partial(_download, session,
                                f"{sn.url}/api/now/attachment/{attachment}/file", len(body))
            ours = partial(_download, session, sn.url + LIST_PATH, len(body))
            warmup = max(2, bench.scale.warmup // 5)
            for _ in range(warmup):
                reference()
                ours()
            count = bench.scale.stub_list_per_block
            blocks_a, blocks_b = alternate(
                bench.scale.blocks, partial(timed_loop, reference, count),
                partial(timed_loop, ours, count),
            )
        finally:
            session.close()
    figures = comparison(blocks_a, blocks_b)
    figures["records"] = LIST_RECORDS
    figures["body_bytes"] = len(body)
    return figures


def _fresh_stub(session: requests.Session) -> None:
    with StubServiceNow() as sn:
        _probe(session, sn)


def _probe(session: requests.Session, sn: StubServiceNow) -> None:
    # Unauthenticated on purpose: the request each side makes is the same, and cheap.
    status = session.get(sn.url + PROBE_PATH, timeout=10.0).status_code
    if status != 401:
        raise RuntimeError(f"the stub answered {status}, not 401")


def _shared_stub(session: requests.Session, sn: StubServiceNow) -> None:
    sn.reset()
    _probe(session, sn)


def _lifecycle_figures(bench: Bench) -> dict[str, Any]:
    """A stub started and stopped for one request against a shared stub reset for it."""
    StubServiceNow().start().stop()  # the seed data and the routes are built once per process
    count = bench.scale.stub_starts_per_block
    with StubServiceNow() as shared, requests.Session() as session:
        reference: Callable[[], Block] = partial(
            timed_loop, partial(_shared_stub, session, shared), count)
        ours: Callable[[], Block] = partial(timed_loop, partial(_fresh_stub, session), count)
        reference()
        ours()
        blocks_a, blocks_b = alternate(bench.scale.blocks, reference, ours)
    return comparison(blocks_a, blocks_b)


def _get_one(conn: snworker.ServiceNowConnection) -> None:
    status = conn.execute_api_request(PROBE_PATH.split("?")[0], params={"sysparm_limit": 1}).status
    if status != 200:
        raise RuntimeError(f"the stub answered {status}, not 200")


def _kept_connection_test(sn: StubServiceNow, shared: SharedConnection) -> None:
    sn.reset(keep_grant=True)  # what servicenow_stub does for a test with the connection
    _get_one(shared.for_test(sn))


def _new_connection_test(sn: StubServiceNow) -> None:
    sn.reset()
    conn = snworker.connect(sn.url, sn.client_id, redirect_uri=sn.redirect_uri,
                            open_browser=approve)
    try:
        _get_one(conn)
    finally:
        conn.disconnect()


def _fixture_figures(bench: Bench) -> dict[str, Any]:
    """A test with `servicenow_connection`: the kept connection against a new one per test."""
    count = bench.scale.fixture_tests_per_block
    with StubServiceNow() as sn:
        shared = SharedConnection()
        try:
            reference: Callable[[], Block] = partial(
                timed_loop, partial(_kept_connection_test, sn, shared), count)
            ours: Callable[[], Block] = partial(
                timed_loop, partial(_new_connection_test, sn), count)
            reference()
            ours()
            blocks_a, blocks_b = alternate(bench.scale.blocks, reference, ours)
        finally:
            shared.close()
    return comparison(blocks_a, blocks_b)


def stub(bench: Bench) -> dict[str, Any]:
    """Section 9: listing 1,000 records, a fresh stub per test, and the connection fixture's
    cost per test, each against its reference."""
    return {"list_1000": _list_figures(bench), "fresh_per_test": _lifecycle_figures(bench),
            "connection_per_test": _fixture_figures(bench)}
