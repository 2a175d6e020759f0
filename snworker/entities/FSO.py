"""Financial Services Operations records."""

from __future__ import annotations

from snworker.entities.CSM import Case


class FinancialServicesCase(Case, total=False):
    """sn_bom_financial_service (extends sn_customerservice_case); state "3" is closed."""

    financial_account: str
    service_definition: str
    amount: str
    transaction_date: str


__all__ = ["FinancialServicesCase"]
