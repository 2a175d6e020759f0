"""Customer Service Management records."""

from __future__ import annotations

from snworker.entities.Core import BaseEntity, Reference, Task


class Account(BaseEntity, total=False):
    """customer_account."""

    name: str
    number: str
    customer: str


class Case(Task, total=False):
    """sn_customerservice_case (extends task)."""

    account: Reference | str
    contact: Reference | str
    task_effective_number: str


__all__ = ["Account", "Case"]
