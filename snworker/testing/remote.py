"""A stub running elsewhere (another process, `snworker stub`), controlled over `/_stub/`."""

from __future__ import annotations

import subprocess
from types import TracebackType
from typing import Any

import requests

from snworker.testing.control import StubControls

CONTROL_TIMEOUT = 10.0


class StubControlError(RuntimeError):
    """The remote stub refused a control operation."""


class RemoteStub(StubControls):
    """Controls a running stub instance by its URL.

    Args:
        url: the stub's base URL, as `snworker stub` prints it.
        process: the stub's process when this object started it; `close()` stops it.
        ca_file: for an https stub, the PEM file of its certificate authority (printed by
            `snworker stub --tls`).
    """

    def __init__(self, url: str, process: subprocess.Popen[bytes] | None = None,
                 ca_file: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.ca_file = ca_file
        self._process = process
        self._session = requests.Session()
        settings = self._control("config")
        self.client_id: str = settings["client_id"]
        self.redirect_uri: str = settings["redirect_uri"]

    def _control(self, operation: str, **arguments: Any) -> Any:
        response = self._session.post(
            f"{self.url}/_stub/{operation.replace('_', '-')}",
            json=arguments,
            timeout=CONTROL_TIMEOUT,
            # Per request: requests prefers REQUESTS_CA_BUNDLE to a session's `verify`.
            verify=self.ca_file if self.ca_file is not None else True,
        )
        if response.status_code != 200:
            try:
                detail = response.json()["error"]["detail"]
            except (ValueError, KeyError, TypeError):
                detail = response.text
            raise StubControlError(f"{operation}: {response.status_code} {detail}")
        return response.json()["result"]

    def close(self, timeout: float = 5.0) -> None:
        """Stop the stub's process if this object started it: ask, then terminate, then kill."""
        self._session.close()
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()  # the stub exits when its stdin closes
        try:
            process.wait(timeout / 2)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout / 2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> RemoteStub:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
