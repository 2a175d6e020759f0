"""The pytest plugin: a stubbed instance, and connections to it, for an application's tests.

    servicenow_stub         the test's stub: the session's shared stub, reset, or a stub of its
                            own when the test asks for other settings
    servicenow_settings     those settings: the keywords of the test's `servicenow` marker;
                            override the fixture to set them for a module or a directory
    servicenow_connect      connect(**kwargs) -> a connection to the stub, consent given by a
                            stand-in user; every connection it made is disconnected after the test
    servicenow_connection   one such connection
    servicenow_shared_stub  the session's stub, started on first use (not reset)

Registered through the `pytest11` entry point. The stub's server (and snworker's connection
code) is imported when a fixture is first used, so the plugin loads in any environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from snworker import ServiceNowConnection
    from snworker.testing.server import StubServiceNow

MARKER = "servicenow"


class ConnectionFactory(Protocol):
    """What `servicenow_connect` is: `snworker.connect()` to the stub, keywords passed on."""

    def __call__(self, **settings: Any) -> ServiceNowConnection:
        """A new connection; `client_id` picks another registered application."""


def pytest_configure(config: pytest.Config) -> None:
    """Register the `servicenow` marker."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**settings): StubServiceNow settings for the test's servicenow_stub "
        "(a test with settings other than the defaults gets a stub of its own)",
    )


@pytest.fixture(scope="session")
def servicenow_shared_stub() -> Iterator[StubServiceNow]:
    """The session's stub with the default settings; `servicenow_stub` hands it out reset."""
    from snworker.testing.server import StubServiceNow

    with StubServiceNow() as stub:
        yield stub


@pytest.fixture
def servicenow_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings for `servicenow_stub`: the `servicenow` marker's keywords, or none."""
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        return {}
    if marker.args:
        raise TypeError(f"the {MARKER} marker takes StubServiceNow keywords only")
    return dict(marker.kwargs)


@pytest.fixture
def servicenow_stub(
    request: pytest.FixtureRequest, servicenow_settings: dict[str, Any]
) -> Iterator[StubServiceNow]:
    """A stub in the state its constructor makes, serving for the test.

    With the default settings it is the session's stub, reset; with others, a stub of its own,
    stopped after the test.
    """
    from snworker.testing.server import StubServiceNow
    from snworker.testing.state import StubConfig

    if StubConfig(**servicenow_settings) == StubConfig():
        shared: StubServiceNow = request.getfixturevalue("servicenow_shared_stub")
        shared.reset()
        yield shared
        return
    with StubServiceNow(**servicenow_settings) as stub:
        yield stub


@pytest.fixture
def servicenow_connect(servicenow_stub: StubServiceNow) -> Iterator[ConnectionFactory]:
    """`connect(**kwargs)`: a connection to the stub; each is disconnected after the test."""
    import snworker
    from snworker.testing.browser import approve

    opened: list[ServiceNowConnection] = []

    def connect(**settings: Any) -> ServiceNowConnection:
        client_id = settings.pop("client_id", servicenow_stub.client_id)
        settings.setdefault("redirect_uri", servicenow_stub.redirect_uri)
        settings.setdefault("open_browser", approve)
        connection = snworker.connect(servicenow_stub.url, client_id, **settings)
        opened.append(connection)
        return connection

    try:
        yield connect
    finally:
        for connection in reversed(opened):
            connection.disconnect()


@pytest.fixture
def servicenow_connection(servicenow_connect: ConnectionFactory) -> ServiceNowConnection:
    """A connection to `servicenow_stub`, consent given by a stand-in user; disconnected after."""
    return servicenow_connect()
