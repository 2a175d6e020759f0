"""The example application's incident features: what a team's own code would look like."""

from __future__ import annotations

from typing import Any

import snworker


def open_incident_numbers(conn: snworker.ServiceNowConnection, limit: int = 100) -> list[str]:
    """Numbers of the incidents still active, oldest number first."""
    response = conn.execute_api_request(
        "/api/now/table/incident",
        "GET",
        params={
            "sysparm_query": "active=true^ORDERBYnumber",
            "sysparm_fields": "number",
            "sysparm_limit": limit,
        },
    )
    return [record["number"] for record in response.data]


def my_open_incidents(conn: snworker.ServiceNowConnection) -> list[dict[str, Any]]:
    """Active incidents assigned to the signed-in user."""
    response = conn.execute_api_request(
        "/api/now/table/incident",
        "GET",
        params={
            "sysparm_query": "assigned_to=javascript:gs.getUserID()^active=true",
            "sysparm_fields": "sys_id,number,short_description",
        },
    )
    return list(response.data)


def resolve_incident(conn: snworker.ServiceNowConnection, sys_id: str, note: str) -> None:
    """Mark an incident resolved with a closing note."""
    conn.execute_api_request(
        f"/api/now/table/incident/{sys_id}",
        "PATCH",
        {"state": "6", "active": False, "close_notes": note},
        True,
    )
