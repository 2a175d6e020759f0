"""The pytest plugin: fixtures `servicenow_stub` and `servicenow_connection`.

Registered through the `pytest11` entry point. The stub's server is imported when a fixture is
first used, so the plugin loads in any environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from snworker.testing.server import StubServiceNow


@pytest.fixture
def servicenow_stub() -> Iterator[StubServiceNow]:
    """A fresh stub instance, started for the test and stopped after it."""
    from snworker.testing.server import StubServiceNow

    with StubServiceNow() as stub:
        yield stub


@pytest.fixture
def servicenow_connection(servicenow_stub: StubServiceNow) -> Iterator[Any]:
    """A connection to `servicenow_stub`, consent given by a stand-in user; disconnected after."""
    import snworker
    from snworker.testing.browser import approve

    connection = snworker.connect(
        servicenow_stub.url,
        servicenow_stub.client_id,
        redirect_uri=servicenow_stub.redirect_uri,
        open_browser=approve,
    )
    try:
        yield connection
    finally:
        connection.disconnect()
