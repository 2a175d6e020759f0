"""TypedDicts for the records the reference integration reads, by namespace."""

from snworker.entities import CSM, FSO, Core

__all__ = ["CSM", "FSO", "Core"]
