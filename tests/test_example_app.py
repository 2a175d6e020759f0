"""The example application, tested as its authors would: with the plugin's fixtures."""

from __future__ import annotations

import pytest
from example_app.incidents import (
    add_comment,
    changed_since_yesterday,
    close_incident,
    comments,
    my_open_incidents,
    open_incident_numbers,
    resolve_incident,
)

import snworker
from snworker.testing import StubServiceNow


def test_open_incident_numbers(
    servicenow_stub: StubServiceNow, servicenow_connection: snworker.ServiceNowConnection
) -> None:
    expected = sorted(
        r["number"] for r in servicenow_stub.records("incident") if r["active"] == "true"
    )
    assert open_incident_numbers(servicenow_connection) == expected


def test_my_incidents_follow_the_signed_in_user(
    servicenow_stub: StubServiceNow, servicenow_connection: snworker.ServiceNowConnection
) -> None:
    me = servicenow_connection.current_user
    assert me is not None
    assert my_open_incidents(servicenow_connection) == []
    mine = servicenow_stub.insert(
        "incident",
        {"short_description": "Badge reader broken", "assigned_to": me["sys_id"], "active": True},
    )
    assert [i["number"] for i in my_open_incidents(servicenow_connection)] == [mine["number"]]


def test_resolving_an_incident_changes_the_instance(
    servicenow_stub: StubServiceNow, servicenow_connection: snworker.ServiceNowConnection
) -> None:
    target = open_incident_numbers(servicenow_connection)[0]
    record = next(r for r in servicenow_stub.records("incident") if r["number"] == target)
    resolve_incident(servicenow_connection, record["sys_id"], "Replaced the cable")
    stored = next(r for r in servicenow_stub.records("incident") if r["number"] == target)
    assert (stored["state"], stored["active"], stored["close_notes"]) == (
        "6", "false", "Replaced the cable")
    assert target not in open_incident_numbers(servicenow_connection)


def test_the_app_survives_a_brief_outage(
    servicenow_stub: StubServiceNow, servicenow_connection: snworker.ServiceNowConnection
) -> None:
    servicenow_stub.inject(status=503, times=1, retry_after=0)
    assert len(open_incident_numbers(servicenow_connection)) > 0
    statuses = [r["status"] for r in servicenow_stub.requests
                if r["path"] == "/api/now/table/incident"]
    assert statuses[-2:] == [503, 200]


def test_an_expired_session_is_renewed_without_the_user(
    servicenow_stub: StubServiceNow, servicenow_connection: snworker.ServiceNowConnection
) -> None:
    servicenow_stub.expire_access_tokens()
    assert open_incident_numbers(servicenow_connection)
    assert servicenow_stub.grant_counts["refresh_token"] == 1


def test_a_revoked_grant_means_signing_in_again(
    servicenow_stub: StubServiceNow, servicenow_connection: snworker.ServiceNowConnection
) -> None:
    servicenow_stub.revoke_refresh_tokens()
    with pytest.raises(snworker.AuthTokenExpiredError):
        open_incident_numbers(servicenow_connection)


def test_closing_an_incident_takes_it_off_the_open_list(
    servicenow_stub: StubServiceNow, servicenow_connection: snworker.ServiceNowConnection
) -> None:
    target = open_incident_numbers(servicenow_connection)[0]
    record = next(r for r in servicenow_stub.records("incident") if r["number"] == target)
    close_incident(servicenow_connection, record["sys_id"], "Rebooted the server")
    stored = next(r for r in servicenow_stub.records("incident") if r["number"] == target)
    assert (stored["state"], stored["active"], stored["close_code"]) == (
        "7", "false", "Solution provided")
    assert stored["closed_at"] and target not in open_incident_numbers(servicenow_connection)


def test_comments_are_kept_as_journal_entries(
    servicenow_stub: StubServiceNow, servicenow_connection: snworker.ServiceNowConnection
) -> None:
    incident = servicenow_stub.insert("incident", {"short_description": "Noisy fan"})
    add_comment(servicenow_connection, incident["sys_id"], "Is it still noisy?")
    add_comment(servicenow_connection, incident["sys_id"], "Fan replaced.")
    assert comments(servicenow_connection, incident["sys_id"]) == [
        "Is it still noisy?", "Fan replaced."]
    stored = next(r for r in servicenow_stub.records("incident")
                  if r["sys_id"] == incident["sys_id"])
    assert stored["comments"] == ""


def test_an_incremental_sync_follows_the_stubs_clock(
    servicenow_stub: StubServiceNow, servicenow_connection: snworker.ServiceNowConnection
) -> None:
    assert changed_since_yesterday(servicenow_connection) == []
    fresh = servicenow_stub.insert("incident", {"short_description": "Keyboard missing keys"})
    assert changed_since_yesterday(servicenow_connection) == [fresh["number"]]
    servicenow_stub.advance(2 * 86400)
    assert changed_since_yesterday(servicenow_connection) == []


@pytest.mark.servicenow(access_lifespan=120)
def test_short_lived_tokens_are_renewed(
    servicenow_stub: StubServiceNow, servicenow_connection: snworker.ServiceNowConnection
) -> None:
    servicenow_stub.advance(121)
    assert open_incident_numbers(servicenow_connection)
    assert servicenow_stub.grant_counts["refresh_token"] == 1
