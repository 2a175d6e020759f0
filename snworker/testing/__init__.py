"""A stubbed ServiceNow instance to test applications against, and browser stand-ins.

    from snworker.testing import StubServiceNow, approve

    with StubServiceNow() as sn:
        conn = snworker.connect(sn.url, sn.client_id, redirect_uri=sn.redirect_uri,
                                open_browser=approve)

The server needs the `testing` extra (werkzeug, waitress); it is imported on first use, so
importing this package (or its pytest plugin) costs nothing. `table_columns(name)` reads the
shipped table definitions (column names and types) without the server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from snworker.testing.browser import approve, deny, ignore
    from snworker.testing.plugin import ConnectionFactory
    from snworker.testing.remote import RemoteStub, StubControlError
    from snworker.testing.schema import table_columns
    from snworker.testing.scripted_api import ScriptedRequest, ScriptedResponse
    from snworker.testing.server import StubServiceNow

__all__ = [
    "ConnectionFactory",
    "RemoteStub",
    "ScriptedRequest",
    "ScriptedResponse",
    "StubControlError",
    "StubServiceNow",
    "approve",
    "deny",
    "ignore",
    "table_columns",
]

_HOMES = {
    "ConnectionFactory": "snworker.testing.plugin",
    "RemoteStub": "snworker.testing.remote",
    "ScriptedRequest": "snworker.testing.scripted_api",
    "ScriptedResponse": "snworker.testing.scripted_api",
    "StubControlError": "snworker.testing.remote",
    "StubServiceNow": "snworker.testing.server",
    "approve": "snworker.testing.browser",
    "deny": "snworker.testing.browser",
    "ignore": "snworker.testing.browser",
    "table_columns": "snworker.testing.schema",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
