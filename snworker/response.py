"""ApiResponse: the instance's answer as the caller sees it, its JSON parsed on first use."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from snworker.messages import Pairs

T = TypeVar("T")


class ApiResponse(Generic[T]):
    """The instance's answer: status, headers, raw content, and `data` parsed on first use."""

    __slots__ = ("_data", "_header_pairs", "_headers", "content", "status")

    def __init__(self, status: int, header_pairs: Pairs, content: bytes) -> None:
        self.status = status
        self.content = content
        self._header_pairs = header_pairs
        self._headers: Mapping[str, str] | None = None
        self._data: Any = _UNPARSED

    @property
    def headers(self) -> Mapping[str, str]:
        """Response headers, case-insensitive."""
        if self._headers is None:
            from requests.structures import CaseInsensitiveDict

            self._headers = CaseInsensitiveDict(self._header_pairs)
        return self._headers

    @property
    def data(self) -> T:
        """The `result` of a ServiceNow envelope, else the parsed JSON, else None."""
        if self._data is _UNPARSED:
            self._data = _parse_body(self.content)
        return self._data  # type: ignore[no-any-return]

    def json(self) -> Any:
        """The whole parsed JSON body (envelope included); None when the body is not JSON."""
        try:
            return json.loads(self.content) if self.content else None
        except ValueError:
            return None

    def __repr__(self) -> str:
        return f"<ApiResponse [{self.status}] {len(self.content)} bytes>"


_UNPARSED: Any = object()


def _parse_body(content: bytes) -> Any:
    if not content:
        return None
    try:
        parsed = json.loads(content)
    except ValueError:
        return None
    if isinstance(parsed, dict) and "result" in parsed:
        return parsed["result"]
    return parsed
