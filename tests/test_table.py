"""snworker.table.Table against the stub."""

from __future__ import annotations

import pytest

import snworker
from snworker.entities import Core
from snworker.table import Table, link_targets


def test_iter_pages_through_every_match(conn, stub):
    incidents = Table[Core.Incident](conn, "incident")
    numbers = [r["number"] for r in incidents.iter("ORDERBYnumber", fields=["number"],
                                                    page_size=7)]
    expected = sorted(r["number"] for r in stub.records("incident"))
    assert numbers == expected
    assert len(numbers) > 7 * 3
    offsets = [r["query"].get("sysparm_offset") for r in stub.requests
               if r["path"] == "/api/now/v2/table/incident"]
    assert offsets[:3] == ["0", "7", "14"]


def test_iter_honours_limit_and_query(conn, stub):
    incidents = Table[Core.Incident](conn, "incident")
    got = list(incidents.iter("ORDERBYnumber", limit=5, page_size=2))
    assert len(got) == 5
    assert list(incidents.iter("number=NOPE")) == []


def test_get_create_update_delete(conn):
    incidents = Table[Core.Incident](conn, "incident")
    created = incidents.create({"short_description": "via Table"})
    sys_id = created["sys_id"]
    assert incidents.get(sys_id, fields=["short_description"]) == {
        "short_description": "via Table"}
    assert incidents.update(sys_id, {"state": "2"})["state"] == "2"
    incidents.delete(sys_id)
    assert incidents.get(sys_id) is None


@pytest.mark.parametrize("bad", ["", "incident; drop", "../x"])
def test_bad_table_names_are_refused(conn, bad):
    with pytest.raises(snworker.InvalidRequestError):
        Table(conn, bad)


def test_bad_sys_ids_are_refused_before_sending(conn, stub):
    before = len(stub.requests)
    with pytest.raises(snworker.InvalidRequestError):
        Table(conn, "incident").get("../../oauth_token.do")
    assert len(stub.requests) == before


def paged_table(stub, records):
    for n in range(records):
        stub.insert("u_paged", {"number": f"P{n:03d}", "active": "true"})
    return [f"P{n:03d}" for n in range(records)]


def page_requests(stub):
    return [r for r in stub.requests if r["path"] == "/api/now/v2/table/u_paged"]


def test_iter_stops_on_a_last_full_page(conn, stub):
    expected = paged_table(stub, 70)
    numbers = [r["number"] for r in Table(conn, "u_paged").iter("ORDERBYnumber", page_size=7)]
    assert numbers == expected
    pages = page_requests(stub)
    assert len(pages) == 10  # the count from the first page ends the pages: no empty 11th
    assert "sysparm_no_count" not in pages[0]["query"]
    assert {p["query"]["sysparm_no_count"] for p in pages[1:]} == {"true"}


def test_iter_without_a_count_ends_where_the_link_header_does(conn, stub):
    expected = paged_table(stub, 7)
    stub.inject(status=None, times=1, path_prefix="/api/now/v2/table/u_paged",
                headers={"X-Total-Count": "unknown"})
    numbers = [r["number"] for r in Table(conn, "u_paged").iter("ORDERBYnumber", page_size=7)]
    assert numbers == expected
    assert len(page_requests(stub)) == 1  # a full page, but its Link header has no "next"


def test_iter_without_count_or_link_ends_on_a_short_page(conn, stub):
    expected = paged_table(stub, 70)
    stub.inject(status=None, times=1, path_prefix="/api/now/v2/table/u_paged",
                headers={"X-Total-Count": "unknown"})
    numbers = [r["number"] for r in Table(conn, "u_paged").iter("ORDERBYnumber", page_size=7)]
    assert numbers == expected
    # Later pages skip the count, and the stub then offers "next" after every full page.
    assert len(page_requests(stub)) == 11


def test_link_targets_keep_commas_inside_urls():
    header = ('<https://x.service-now.com/api/now/table/t?sysparm_fields=a,b&sysparm_offset=0>'
              ';rel="first",<https://x.service-now.com/api/now/table/t?sysparm_fields=a,b'
              '&sysparm_offset=10>; rel="next" , <https://x.service-now.com/last>;rel=last')
    assert link_targets(header) == {
        "first": "https://x.service-now.com/api/now/table/t?sysparm_fields=a,b&sysparm_offset=0",
        "next": "https://x.service-now.com/api/now/table/t?sysparm_fields=a,b&sysparm_offset=10",
        "last": "https://x.service-now.com/last",
    }
    assert link_targets("") == {}


@pytest.mark.parametrize("query, sent", [
    ("", "ORDERBYsys_id"),
    ("active=true", "active=true^ORDERBYsys_id"),
    ("active=true^ORDERBYDESCnumber", "active=true^ORDERBYDESCnumber"),
    ("ORDERBYnumber^active=true", "ORDERBYnumber^active=true"),
])
def test_iter_pages_in_a_fixed_order_when_the_query_gives_none(conn, stub, query, sent):
    paged_table(stub, 20)
    records = list(Table(conn, "u_paged").iter(query, page_size=6))
    assert {p["query"]["sysparm_query"] for p in page_requests(stub)} == {sent}
    if "ORDERBY" not in query:
        # sys_ids are random: in their order, pages cannot repeat or skip a record
        assert [r["sys_id"] for r in records] == sorted(r["sys_id"] for r in records)
        assert len({r["sys_id"] for r in records}) == 20


def test_attachments_added_listed_and_read_back(conn, stub):
    incidents = Table[Core.Incident](conn, "incident")
    incident = incidents.create({"short_description": "with files"})
    content = bytes(range(256)) * 4
    added = incidents.add_attachment(incident["sys_id"], "dump.bin", content)
    assert (added["file_name"], added["table_name"], added["table_sys_id"]) == (
        "dump.bin", "incident", incident["sys_id"])
    assert added["size_bytes"] == str(len(content)) and added["download_link"]
    note = incidents.add_attachment(incident["sys_id"], "notes.txt", b"hello", "text/plain")
    listed = incidents.attachments(incident["sys_id"])
    assert [a["sys_id"] for a in listed] == [added["sys_id"], note["sys_id"]]
    assert listed[1]["content_type"] == "text/plain"
    assert incidents.attachment_content(added["sys_id"]) == content
    other = incidents.create({"short_description": "without"})
    assert incidents.attachments(other["sys_id"]) == []


def test_a_bad_attachment_is_refused_before_sending(conn, stub):
    incidents = Table[Core.Incident](conn, "incident")
    sys_id = stub.records("incident")[0]["sys_id"]
    before = len(stub.requests)
    for name, content in (("../etc/passwd", b"x"), ("", b"x"), ("a.txt", "text")):
        with pytest.raises(snworker.InvalidRequestError):
            incidents.add_attachment(sys_id, name, content)  # type: ignore[arg-type]
    assert len(stub.requests) == before


def test_work_notes_and_closing_as_readme_shows_them(conn, stub):
    incidents = Table[Core.Incident](conn, "incident")
    sys_id = incidents.create({"short_description": "Printer on fire"})["sys_id"]
    incidents.update(sys_id, {"work_notes": "Replaced the toner"})
    notes = Table[Core.JournalEntry](conn, "sys_journal_field")
    assert [n["value"] for n in notes.iter(f"element_id={sys_id}^element=work_notes")] == [
        "Replaced the toner"]
    closed = incidents.update(sys_id, {"state": "7", "close_code": "Solution provided",
                                       "close_notes": "Toner replaced"})
    assert (closed["active"], closed["incident_state"]) == ("false", "7")
