"""The stub's Attachment API over a real socket: upload, list, metadata, download, delete."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import requests
from conftest import ADMIN

from snworker.testing import StubServiceNow

pytestmark = pytest.mark.servicenow(auth=("code", "basic"))


def call(sn: StubServiceNow, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{sn.url}{path}", auth=ADMIN, timeout=5, **kwargs)


def upload(sn: StubServiceNow, content: bytes, name: str = "notes.txt",
           kind: str = "text/plain", table: str = "incident", sys_id: str | None = None,
           version: str = "") -> requests.Response:
    target = sys_id or sn.records(table)[1]["sys_id"]
    return call(sn, "POST", f"/api/now/{version}attachment/file", data=content,
                headers={"Content-Type": kind},
                params={"table_name": table, "table_sys_id": target, "file_name": name})


def test_upload_then_read_metadata_and_content(sn: StubServiceNow) -> None:
    incident = sn.records("incident")[1]
    content = b"\x00\x01binary\xff" * 100
    answer = upload(sn, content, "dump.bin", "application/octet-stream")
    assert answer.status_code == 201
    meta = answer.json()["result"]
    assert answer.headers["Location"] == f"{sn.url}/api/now/attachment/{meta['sys_id']}"
    assert (meta["file_name"], meta["content_type"], meta["table_name"]) == (
        "dump.bin", "application/octet-stream", "incident")
    assert meta["table_sys_id"] == incident["sys_id"]
    assert meta["size_bytes"] == str(len(content))
    assert meta["hash"] == hashlib.sha256(content).hexdigest()
    assert meta["download_link"] == f"{sn.url}/api/now/attachment/{meta['sys_id']}/file"
    shown = call(sn, "GET", f"/api/now/v1/attachment/{meta['sys_id']}")
    assert shown.status_code == 200 and shown.json()["result"] == meta
    downloaded = call(sn, "GET", f"/api/now/attachment/{meta['sys_id']}/file")
    assert downloaded.status_code == 200 and downloaded.content == content
    assert downloaded.headers["Content-Type"] == "application/octet-stream"
    assert json.loads(downloaded.headers["X-Attachment-Metadata"])["sys_id"] == meta["sys_id"]
    stored = next(r for r in sn.records("sys_attachment") if r["sys_id"] == meta["sys_id"])
    assert stored["hash"] == meta["hash"]


def test_a_large_file_is_sent_whole_as_stored_and_the_same_connection_serves_on(
        sn: StubServiceNow) -> None:
    # Over a MiB the stub sends the stored bytes as the socket takes them (no copy first).
    content = bytes(range(256)) * (3 * 4096 + 7)
    meta = upload(sn, content, "big.bin", "application/octet-stream").json()["result"]
    with requests.Session() as session:
        session.auth = ADMIN
        url = f"{sn.url}/api/now/attachment/{meta['sys_id']}/file"
        got = session.get(url, timeout=5)
        assert got.status_code == 200 and got.content == content
        assert got.headers["Content-Length"] == str(len(content))
        with session.get(url, stream=True, timeout=5) as streamed:
            first = next(streamed.iter_content(1000))
        assert first == content[:1000]  # closed early: that connection is not reused
        head = session.head(url, timeout=5)
        assert head.status_code == 200 and head.content == b""
        again = session.get(url, timeout=5)
        assert again.content == content


def test_multipart_upload(sn: StubServiceNow) -> None:
    problem = sn.records("problem")[0]
    answer = call(sn, "POST", "/api/now/attachment/upload",
                  data={"table_name": "problem", "table_sys_id": problem["sys_id"]},
                  files={"uploadFile": ("trace.log", b"line 1\nline 2\n", "text/plain")})
    assert answer.status_code == 201, answer.text
    meta = answer.json()["result"]
    assert (meta["file_name"], meta["content_type"], meta["size_bytes"]) == (
        "trace.log", "text/plain", "14")
    content = call(sn, "GET", f"/api/now/attachment/{meta['sys_id']}/file").content
    assert content == b"line 1\nline 2\n"
    missing = call(sn, "POST", "/api/now/attachment/upload",
                   data={"table_name": "problem", "table_sys_id": problem["sys_id"]})
    assert missing.status_code == 400 and missing.json()["status"] == "failure"


def test_list_filters_with_an_encoded_query_and_pages(sn: StubServiceNow) -> None:
    incident = sn.records("incident")[4]["sys_id"]
    for index in range(3):
        assert upload(sn, f"{index}".encode(), f"file-{index}.txt",
                      sys_id=incident, version="v1/").status_code == 201
    listed = call(sn, "GET", "/api/now/attachment", params={
        "sysparm_query": f"table_name=incident^table_sys_id={incident}^ORDERBYfile_name",
        "sysparm_limit": 2})
    assert listed.status_code == 200
    assert [m["file_name"] for m in listed.json()["result"]] == ["file-0.txt", "file-1.txt"]
    assert listed.headers["X-Total-Count"] == "3"
    assert 'rel="next"' in listed.headers["Link"]
    everything = call(sn, "GET", "/api/now/v1/attachment").json()["result"]
    assert len(everything) == 4  # and the seed's own attachment
    assert "mail-queue.log" in {m["file_name"] for m in everything}


def test_delete_removes_record_and_content(sn: StubServiceNow) -> None:
    meta = upload(sn, b"gone soon").json()["result"]
    deleted = call(sn, "DELETE", f"/api/now/attachment/{meta['sys_id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    for path in (f"/api/now/attachment/{meta['sys_id']}",
                 f"/api/now/attachment/{meta['sys_id']}/file"):
        answer = call(sn, "GET", path)
        assert answer.status_code == 404 and answer.json()["status"] == "failure"
    assert call(sn, "DELETE", f"/api/now/attachment/{meta['sys_id']}").status_code == 404


def test_deleting_a_record_deletes_its_attachments(sn: StubServiceNow) -> None:
    incident = sn.insert("incident", {"short_description": "with a file"})
    meta = upload(sn, b"attached", sys_id=incident["sys_id"]).json()["result"]
    assert call(sn, "DELETE", f"/api/now/table/incident/{incident['sys_id']}").status_code == 204
    assert call(sn, "GET", f"/api/now/attachment/{meta['sys_id']}").status_code == 404


@pytest.mark.parametrize("params", [
    {"table_name": "incident", "file_name": "x.txt"},
    {"table_name": "incident", "table_sys_id": "0" * 32, "file_name": "x.txt"},
    {"table_name": "no_such_table", "table_sys_id": "0" * 32, "file_name": "x.txt"},
])
def test_uploads_that_name_no_record_are_refused(
    sn: StubServiceNow, params: dict[str, str]
) -> None:
    answer = call(sn, "POST", "/api/now/attachment/file", data=b"x", params=params)
    assert answer.status_code == 400
    assert answer.json()["status"] == "failure"
    assert len(sn.records("sys_attachment")) == 1


def test_attachments_need_authentication(sn: StubServiceNow) -> None:
    answer = requests.get(f"{sn.url}/api/now/attachment", timeout=5)
    assert answer.status_code == 401


@pytest.mark.parametrize("accept, status", [
    ("application/xml", 406),
    ("text/xml, application/xhtml+xml", 406),
    ("application/json", 200),
    ("application/xml;q=1, application/json;q=0.5", 200),
    ("*/*", 200),
    (None, 200),
])
def test_an_accept_header_without_json_is_refused_not_answered_in_json(
        sn: StubServiceNow, accept: str | None, status: int) -> None:
    for path in ("/api/now/table/incident?sysparm_limit=1", "/api/now/attachment"):
        answer = requests.get(f"{sn.url}{path}", auth=ADMIN, timeout=5,
                              headers={"Accept": accept})  # None: no Accept header at all
        assert answer.status_code == status, (path, answer.text)
        assert answer.headers["Content-Type"].startswith("application/json")
        if status == 406:
            assert answer.json()["error"]["message"] == "Not Acceptable"
            assert "JSON only" in answer.json()["error"]["detail"]
    # An attachment's bytes are served whatever the Accept header names.
    meta = upload(sn, b"plain text").json()["result"]
    content = call(sn, "GET", f"/api/now/attachment/{meta['sys_id']}/file",
                   headers={"Accept": "application/xml"})
    assert (content.status_code, content.content) == (200, b"plain text")
