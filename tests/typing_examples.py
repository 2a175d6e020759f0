"""README's examples as an application checked with `mypy --strict` would write them.

`tests/test_typing.py` type-checks this file; nothing here runs. The `type: ignore` lines are
mistakes the types must catch: should one stop being an error, mypy reports the ignore unused.
"""

from __future__ import annotations

import snworker
from snworker.entities import Core
from snworker.table import Table
from snworker.testing import ConnectionFactory, StubServiceNow


def read_and_write(conn: snworker.ServiceNowConnection) -> None:
    user = conn.current_user
    if user is not None:
        print(user["name"], user["user_name"], user["sys_id"])
    resp = conn.execute_api_request(
        "/api/now/table/incident", "GET",
        params={"sysparm_limit": 10, "sysparm_query": "active=true^ORDERBYDESCsys_updated_on"},
        result_type=list[Core.Incident],
    )
    for incident in resp.data:
        print(incident["number"], incident["short_description"], resp.status, resp.headers)
    created = conn.execute_api_request("/api/now/table/incident", "POST",
                                       {"short_description": "Printer on fire"})
    print(created.status, created.headers["Location"])


def tables(conn: snworker.ServiceNowConnection) -> None:
    incidents = Table[Core.Incident](conn, "incident")
    for incident in incidents.iter("active=true^ORDERBYnumber", fields=["number", "state"]):
        print(incident["number"], incident["state"])
    created = incidents.create({"short_description": "Printer on fire", "urgency": "1"})
    incidents.update(created["sys_id"], {"state": "2"})
    cases = Table[snworker.entities.FSO.FinancialServicesCase](conn, "sn_bom_financial_service")
    print([case["number"] for case in cases.iter("state!=3")])


def errors(conn: snworker.ServiceNowConnection) -> list[Core.Incident]:
    try:
        return conn.execute_api_request("/api/now/table/incident",
                                        result_type=list[Core.Incident]).data
    except snworker.AuthTokenExpiredError:
        conn.reconnect()
        return conn.execute_api_request("/api/now/table/incident",
                                        result_type=list[Core.Incident]).data
    except snworker.AuthorizationError as error:
        print(error.reason)
        raise


def connecting() -> None:
    policy = snworker.RetryPolicy(attempts=4, backoff_initial=0.5, refresh_margin=60.0)
    with snworker.connect("dev12345", "CLIENT_ID", retry=policy, request_timeout=30.0,
                          redirect_uri=["http://127.0.0.1:8765/callback",
                                        "http://127.0.0.1:8766/callback"],
                          proxy="http://proxy.corp.example:3128", agent=True) as conn:
        print(conn.worker_hardening.applied, conn.instance_url)
    with snworker.attach() as attached:
        attached.disconnect()


def mistakes_the_types_catch(conn: snworker.ServiceNowConnection) -> None:
    incidents = Table[Core.Incident](conn, "incident")
    incidents.create({"short_descriptoin": "a typo"})  # type: ignore[typeddict-unknown-key]
    print(incidents.add_attachment("0" * 32, "a.txt", "text"))  # type: ignore[arg-type]
    print(conn.current_user["name"])  # type: ignore[index]
    incidents.update("0" * 32, {"state": 2})  # type: ignore[typeddict-item]


def test_a_typed_test(servicenow_stub: StubServiceNow,
                      servicenow_connect: ConnectionFactory) -> None:
    conn = servicenow_connect(request_timeout=5)
    assert conn.execute_api_request("/api/now/table/incident").status == 200
    with StubServiceNow.start_process(access_lifespan=60, seed=False) as remote:
        print(remote.url)
    StubServiceNow.start_process(acces_lifespan=60)  # type: ignore[call-arg]
