"""The pytest plugin: a stubbed instance, and connections to it, for an application's tests.

    servicenow_stub         the test's stub: the session's shared stub, reset, or a stub of its
                            own when the test asks for other settings
    servicenow_settings     those settings: the keywords of the test's `servicenow` marker;
                            override the fixture to set them for a module or a directory
    servicenow_connect      connect(**kwargs) -> a connection to the stub, consent given by a
                            stand-in user; every connection it made is disconnected after the test
    servicenow_connection   a connection to the stub: on the shared stub, one for the whole
                            session, whose grant every reset takes back (a test costs no
                            worker start and no consent); else a new one, as the factory's
    servicenow_shared_stub  the session's stub, started on first use (not reset)

Registered through the `pytest11` entry point. The stub's server (and snworker's connection
code) is imported when a fixture is first used, so the plugin loads in any environment.
"""

from __future__ import annotations

import time
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


class SharedConnection:
    """The session's connection to the shared stub, made on first use, renewed when broken."""

    def __init__(self) -> None:
        self.connection: ServiceNowConnection | None = None

    def for_test(self, stub: StubServiceNow) -> ServiceNowConnection:
        """The connection, working, on a stub just reset with its grant taken back.

        A test may have broken it for the next one: disconnected it, met
        AuthTokenExpiredError (the worker then wiped its tokens), or ended its worker. An
        invalid path finds out without sending anything: the worker refuses it after the
        connection's own checks pass, so only a working connection answers InvalidRequestError.
        """
        import snworker

        if self.connection is not None:
            try:
                self.connection.execute_api_request("not a path")
            except snworker.InvalidRequestError:
                return self.connection
            except snworker.AuthTokenExpiredError:
                revoked = stub.revocation_count
                self.connection.reconnect()
                _await_revocation(stub, revoked)
                return self._kept(stub, self.connection)
            except snworker.ServiceNowError:
                self.connection.disconnect()
        self.connection = _connect(stub)
        return self._kept(stub, self.connection)

    @staticmethod
    def _kept(stub: StubServiceNow, connection: ServiceNowConnection) -> ServiceNowConnection:
        # Its consent is the newest grant; every test then starts from the same state.
        stub.keep_grant()
        stub.reset(keep_grant=True)
        return connection

    def close(self) -> None:
        """Disconnect the connection (it revokes its grant)."""
        if self.connection is not None:
            self.connection.disconnect()


# How long the plugin waits for a worker to revoke the grant a new consent replaced.
_REPLACED_REVOCATION_WAIT = 5.0


def _await_revocation(stub: StubServiceNow, seen: int) -> None:
    """Wait, bounded, for the revocation the worker sends after a reconnect.

    The worker revokes the grant a new consent replaced on a thread of its own; were it to land
    after the reset, the next test would find a request it never made.
    """
    deadline = time.monotonic() + _REPLACED_REVOCATION_WAIT
    while stub.revocation_count <= seen and time.monotonic() < deadline:
        time.sleep(0.005)


def _connect(stub: StubServiceNow, **settings: Any) -> ServiceNowConnection:
    import snworker
    from snworker.testing.browser import approve

    client_id = settings.pop("client_id", stub.client_id)
    settings.setdefault("redirect_uri", stub.redirect_uri)
    settings.setdefault("open_browser", approve)
    return snworker.connect(stub.url, client_id, **settings)


@pytest.fixture(scope="session")
def servicenow_shared_connection(
    servicenow_shared_stub: StubServiceNow,
) -> Iterator[SharedConnection]:
    """The session's connection to the shared stub (through `servicenow_connection`)."""
    shared = SharedConnection()
    try:
        yield shared
    finally:
        shared.close()


def _shares(settings: dict[str, Any]) -> bool:
    """True when a test with these settings gets the session's shared stub."""
    from snworker.testing.state import StubConfig

    return StubConfig(**settings) == StubConfig()


@pytest.fixture
def servicenow_stub(
    request: pytest.FixtureRequest, servicenow_settings: dict[str, Any]
) -> Iterator[StubServiceNow]:
    """A stub in the state its constructor makes, serving for the test.

    With the default settings it is the session's stub, reset; with others, a stub of its own,
    stopped after the test. A test that uses `servicenow_connection` finds that connection's
    grant in the reset stub, as its one consent.
    """
    from snworker.testing.server import StubServiceNow

    if _shares(servicenow_settings):
        shared: StubServiceNow = request.getfixturevalue("servicenow_shared_stub")
        shared.reset(keep_grant="servicenow_connection" in request.fixturenames)
        yield shared
        return
    with StubServiceNow(**servicenow_settings) as stub:
        yield stub


@pytest.fixture
def servicenow_connect(servicenow_stub: StubServiceNow) -> Iterator[ConnectionFactory]:
    """`connect(**kwargs)`: a connection to the stub; each is disconnected after the test."""
    opened: list[ServiceNowConnection] = []

    def connect(**settings: Any) -> ServiceNowConnection:
        connection = _connect(servicenow_stub, **settings)
        opened.append(connection)
        return connection

    try:
        yield connect
    finally:
        for connection in reversed(opened):
            connection.disconnect()


@pytest.fixture
def servicenow_connection(
    request: pytest.FixtureRequest, servicenow_settings: dict[str, Any],
    servicenow_stub: StubServiceNow, servicenow_connect: ConnectionFactory,
) -> ServiceNowConnection:
    """A connection to `servicenow_stub`, consent given by a stand-in user.

    On the session's shared stub it is one connection for the whole session: each reset takes
    its grant back, so a test pays neither a worker start nor a consent, and whatever a test
    did to the tokens, the clock or the connection is undone for the next. On a stub of the
    test's own, it is a new connection, disconnected after the test.
    """
    if not _shares(servicenow_settings):
        return servicenow_connect()
    holder: SharedConnection = request.getfixturevalue("servicenow_shared_connection")
    return holder.for_test(servicenow_stub)
