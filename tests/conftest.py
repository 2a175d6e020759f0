"""Shared helpers: connections to the stub through a real worker, browser recorders."""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import snworker
from snworker.testing import StubServiceNow, approve
from snworker.testing.platform import SEED_PASSWORD

ADMIN = ("admin", SEED_PASSWORD)  # the seed's administrator, for stubs that take basic auth


def agent_address(directory: Path) -> str:
    """A fresh agent address: a socket in `directory`, or a named pipe on Windows."""
    if sys.platform == "win32":
        return rf"\\.\pipe\snworker-test-{os.getpid()}-{directory.name}"
    return str(directory / "agent.sock")


def browser_command(action: str = "approve") -> str:
    """A BROWSER value that runs the stand-in with this Python.

    `webbrowser` splits BROWSER as a POSIX shell would, on Windows too, so the backslashes of a
    Windows path are written as the forward slashes Windows also takes.
    """
    python = sys.executable.replace("\\", "/") if sys.platform == "win32" else sys.executable
    return f"{python} -m snworker.testing.browser {action} %s"


class BrowserRecorder:
    """A browser stand-in that remembers the consent URLs it was asked to open."""

    def __init__(self, act: Callable[[str], Any] = approve) -> None:
        self.act = act
        self.urls: list[str] = []
        self.opened = threading.Event()

    def __call__(self, url: str) -> Any:
        self.urls.append(url)
        self.opened.set()
        return self.act(url)

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.urls[-1]).query).items()}

    @property
    def listener_port(self) -> int:
        port = urlsplit(self.query["redirect_uri"]).port
        assert port
        return port


def connect(sn: StubServiceNow, **kwargs: Any) -> snworker.ServiceNowConnection:
    """Connect to the stub through a worker, with the approve stand-in unless told otherwise."""
    kwargs.setdefault("open_browser", approve)
    kwargs.setdefault("authorization_timeout", 15)
    kwargs.setdefault("redirect_uri", sn.redirect_uri)
    return snworker.connect(sn.url, sn.client_id, **kwargs)


def port_is_free(port: int) -> bool:
    """True when 127.0.0.1:`port` can be bound again right now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def api_requests(sn: StubServiceNow) -> list[dict[str, Any]]:
    """What the stub received on its REST API (OAuth and control traffic left out)."""
    return [r for r in sn.requests if r["path"].startswith("/api/")]


@pytest.fixture
def sn(servicenow_stub: StubServiceNow) -> StubServiceNow:
    """The plugin's stub, reset or new for each test; the `servicenow` marker sets it up."""
    return servicenow_stub


@pytest.fixture
def stub() -> Iterator[StubServiceNow]:
    with StubServiceNow() as sn:
        yield sn


@pytest.fixture
def conn(stub: StubServiceNow) -> Iterator[snworker.ServiceNowConnection]:
    connection = connect(stub)
    yield connection
    connection.disconnect()
