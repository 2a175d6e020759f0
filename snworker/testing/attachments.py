"""Attachments: files on records, kept as `sys_attachment` rows and their content."""

from __future__ import annotations

import hashlib

from snworker.testing import platform
from snworker.testing.store import ApiError, Caller, Record, RecordStore


def attach(
    store: RecordStore,
    table_name: str,
    table_sys_id: str,
    file_name: str,
    content_type: str,
    content: bytes,
    caller: Caller,
) -> Record:
    """Store a file attached to a record; returns its `sys_attachment` record."""
    store.table(table_name)
    if store.get(table_name, table_sys_id) is None:
        message, detail = platform.ATTACHMENT_TARGET_MISSING
        raise ApiError(400, message, detail.format(table=table_name, sys_id=table_sys_id))
    size = str(len(content))
    record = store.insert(
        platform.ATTACHMENT_TABLE,
        {
            "file_name": file_name,
            "content_type": content_type or platform.DEFAULT_CONTENT_TYPE,
            "size_bytes": size,
            "size_compressed": size,
            "hash": hashlib.new(platform.ATTACHMENT_HASH, content).hexdigest(),
            "table_name": table_name,
            "table_sys_id": table_sys_id,
        },
        caller,
    )
    store.files[record["sys_id"]] = content
    return record
