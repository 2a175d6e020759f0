"""enable_logging(): one call to see what both processes do."""

from __future__ import annotations

import logging


def enable_logging(level: int | str = "DEBUG") -> logging.Logger:
    """Send snworker's log records, the worker's included, to stderr at `level`.

    The worker's records arrive through the pipe, already redacted, and are re-emitted by the
    parent's "snworker" loggers. Connections made afterwards log at this level.
    """
    logger = logging.getLogger("snworker")
    logger.setLevel(level if isinstance(level, int) else level.upper())
    if not any(getattr(h, "_snworker", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        handler._snworker = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    return logger
