"""What every OS's hardening module shares: the report's shape and the refusal."""

from __future__ import annotations

Report = tuple[tuple[str, str], ...]

APPLIED = ""


class Refused(Exception):
    """The worker must not start (for example, it is being traced)."""
