"""The entity TypedDicts and the stub's table definitions describe the same tables."""

from __future__ import annotations

import typing

import pytest

from snworker.entities import CSM, FSO, Core
from snworker.testing import table_columns

ENTITIES = {
    Core.Company: "core_company", Core.User: "sys_user", Core.Contact: "customer_contact",
    Core.Group: "sys_user_group", Core.ConfigurationItem: "cmdb_ci", Core.Task: "task",
    Core.Incident: "incident", Core.Problem: "problem", Core.ChangeRequest: "change_request",
    Core.RequestedItem: "sc_req_item", Core.Attachment: "sys_attachment",
    Core.JournalEntry: "sys_journal_field", CSM.Account: "customer_account",
    CSM.Case: "sn_customerservice_case", FSO.FinancialServicesCase: "sn_bom_financial_service",
}


@pytest.mark.parametrize("entity", list(ENTITIES), ids=lambda e: e.__name__)
def test_an_entity_has_exactly_its_tables_columns(entity):
    columns = table_columns(ENTITIES[entity])
    hints = typing.get_type_hints(entity)
    assert set(hints) == set(columns)
    for name, kind in columns.items():
        expected = Core.Reference | str if kind == "reference" else str
        assert hints[name] == expected, (name, kind)
    assert entity.__required_keys__ == frozenset()  # a write names only some fields


def test_the_current_user_has_its_three_fields():
    assert set(typing.get_type_hints(Core.CurrentUser)) == {"sys_id", "user_name", "name"}
