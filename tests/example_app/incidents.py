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


def close_incident(conn: snworker.ServiceNowConnection, sys_id: str, note: str) -> None:
    """Close an incident with a closing note."""
    conn.execute_api_request(
        f"/api/now/table/incident/{sys_id}",
        "PATCH",
        {"state": "7", "close_code": "Solution provided", "close_notes": note},
        True,
    )


def add_comment(conn: snworker.ServiceNowConnection, sys_id: str, text: str) -> None:
    """Add a comment the caller can see."""
    conn.execute_api_request(f"/api/now/table/incident/{sys_id}", "PATCH", {"comments": text}, True)


def comments(conn: snworker.ServiceNowConnection, sys_id: str) -> list[str]:
    """The comments on an incident, oldest first."""
    response = conn.execute_api_request(
        "/api/now/table/sys_journal_field",
        "GET",
        params={
            "sysparm_query": f"element_id={sys_id}^element=comments^ORDERBYsys_created_on",
            "sysparm_fields": "value",
        },
    )
    return [entry["value"] for entry in response.data]


def changed_since_yesterday(conn: snworker.ServiceNowConnection) -> list[str]:
    """Numbers of the incidents updated since yesterday began: an incremental sync."""
    response = conn.execute_api_request(
        "/api/now/table/incident",
        "GET",
        params={
            "sysparm_query": "sys_updated_on>=javascript:gs.daysAgoStart(1)^ORDERBYnumber",
            "sysparm_fields": "number",
        },
    )
    return [record["number"] for record in response.data]
