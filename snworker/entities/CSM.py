"""Customer Service Management records."""

from __future__ import annotations

from snworker.entities.Core import Company, Reference, Task


class Account(Company, total=False):
    """customer_account (extends core_company)."""

    number: str
    primary_contact: Reference | str
    account_parent: Reference | str
    account_code: str


class Case(Task, total=False):
    """sn_customerservice_case (extends task)."""

    account: Reference | str
    contact: Reference | str
    category: str
    subcategory: str
    resolution_code: str
    cause: str
    resolved_by: Reference | str
    resolved_at: str
    follow_the_sun: str


__all__ = ["Account", "Case"]
