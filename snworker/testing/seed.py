"""The stub's seed data: the same records, sys_ids and timestamps on every run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from snworker.testing.platform import DATETIME_FORMAT, SIGNED_IN_USER_NAME, sys_id_for

Record = dict[str, str]

SEED_EPOCH: Final = datetime(2024, 1, 2, 9, 0, 0, tzinfo=UTC)

USERS: Final = (
    (SIGNED_IN_USER_NAME, "System", "Administrator", "System Administrator"),
    ("abel.tuter", "Abel", "Tuter", "Service Desk Agent"),
    ("beth.anglin", "Beth", "Anglin", "Network Engineer"),
    ("david.loo", "David", "Loo", "Customer Service Agent"),
    ("fred.luddy", "Fred", "Luddy", "Financial Services Agent"),
)
ACCOUNTS: Final = ("Boxeo", "Cuvee Bank", "Northwind Savings")
CONTACTS: Final = (
    ("Julie", "Lewis", "Boxeo"),
    ("Rick", "Berzle", "Cuvee Bank"),
    ("Mia", "Davis", "Northwind Savings"),
    ("Omar", "Haddad", "Cuvee Bank"),
)
INCIDENT_SUBJECTS: Final = (
    "Email server is down",
    "Cannot connect to VPN",
    "Laptop battery swelling",
    "Printer on floor 3 jams",
    "Password reset needed",
    "Sales portal slow",
    "Wi-Fi drops in meeting room",
    "Excel crashes on open",
)
INCIDENT_STATES: Final = ("1", "2", "3", "6", "7")
CASE_SUBJECTS: Final = (
    "Card payment declined",
    "Statement shows duplicate fee",
    "Request for account closure",
    "Online banking locked",
    "Address change not applied",
    "Wire transfer delayed",
)
CASE_STATES: Final = ("1", "10", "18", "6", "3")
FINANCIAL_SERVICE_SUBJECTS: Final = (
    "Dispute a card transaction",
    "Replace a lost debit card",
    "Increase the credit limit",
    "Stop a recurring payment",
    "Open a savings account",
)
INCIDENT_COUNT: Final = 30


def _timestamp(hours: int) -> str:
    return (SEED_EPOCH + timedelta(hours=hours)).strftime(DATETIME_FORMAT)


def _system_fields(table: str, key: str, hours: int) -> Record:
    stamp = _timestamp(hours)
    return {
        "sys_id": sys_id_for(table, key),
        "sys_class_name": table,
        "sys_created_on": stamp,
        "sys_created_by": SIGNED_IN_USER_NAME,
        "sys_updated_on": stamp,
        "sys_updated_by": SIGNED_IN_USER_NAME,
        "sys_mod_count": "0",
    }


def user_sys_id(user_name: str) -> str:
    """The seeded sys_id of a user."""
    return sys_id_for("sys_user", user_name)


def _users() -> list[Record]:
    records = []
    for index, (user_name, first, last, title) in enumerate(USERS):
        record = _system_fields("sys_user", user_name, index)
        record.update(
            user_name=user_name,
            first_name=first,
            last_name=last,
            name=f"{first} {last}",
            email=f"{user_name}@example.com",
            title=title,
            active="true",
        )
        records.append(record)
    return records


def _accounts_and_contacts() -> list[Record]:
    records = []
    for index, name in enumerate(ACCOUNTS):
        record = _system_fields("customer_account", name, index)
        record.update(name=name, number=f"ACC{index + 1:07d}", customer="true")
        records.append(record)
    for index, (first, last, account) in enumerate(CONTACTS):
        record = _system_fields("customer_contact", f"{first} {last}", index)
        record.update(
            first_name=first,
            last_name=last,
            name=f"{first} {last}",
            email=f"{first.lower()}.{last.lower()}@example.com",
            account=sys_id_for("customer_account", account),
        )
        records.append(record)
    return records


def _task_fields(number: str, subject: str, state: str, index: int) -> Record:
    assignee = USERS[1 + index % (len(USERS) - 1)][0] if index % 4 else ""
    return {
        "number": number,
        "task_effective_number": number,
        "short_description": subject,
        "description": f"{subject}. Reported by the seed data.",
        "state": state,
        "priority": str(1 + index % 5),
        "active": "false" if state in ("3", "7") else "true",
        "assigned_to": user_sys_id(assignee) if assignee else "",
        "opened_by": user_sys_id(SIGNED_IN_USER_NAME),
        "comments": "",
    }


def _tasks() -> list[Record]:
    records = []
    for index in range(INCIDENT_COUNT):
        number = f"INC{10001 + index:07d}"
        subject = INCIDENT_SUBJECTS[index % len(INCIDENT_SUBJECTS)]
        record = _system_fields("incident", number, 24 + index)
        record.update(_task_fields(number, subject, INCIDENT_STATES[index % 5], index))
        record.update(
            caller_id=user_sys_id(USERS[index % len(USERS)][0]),
            category=("inquiry", "software", "hardware", "network")[index % 4],
        )
        records.append(record)
    for index, subject in enumerate(("Rotate backup tapes", "Renew TLS certificate", "Audit")):
        number = f"TASK{10001 + index:07d}"
        record = _system_fields("task", number, 12 + index)
        record.update(_task_fields(number, subject, ("1", "2", "3")[index], index))
        records.append(record)
    for index, subject in enumerate(CASE_SUBJECTS):
        number = f"CS{1001 + index:07d}"
        record = _system_fields("sn_customerservice_case", number, 72 + index)
        record.update(_task_fields(number, subject, CASE_STATES[index % 5], index))
        record.update(_case_parties(index))
        records.append(record)
    for index, subject in enumerate(FINANCIAL_SERVICE_SUBJECTS):
        number = f"FSC{1001 + index:07d}"
        record = _system_fields("sn_bom_financial_service", number, 96 + index)
        record.update(_task_fields(number, subject, CASE_STATES[index % 5], index + 1))
        record.update(_case_parties(index + 1))
        records.append(record)
    return records


def _case_parties(index: int) -> Record:
    first, last, account = CONTACTS[index % len(CONTACTS)]
    return {
        "account": sys_id_for("customer_account", account),
        "contact": sys_id_for("customer_contact", f"{first} {last}"),
    }


def seed_records() -> list[Record]:
    """Every seed record, each with its `sys_class_name`, referenced records first."""
    return _users() + _accounts_and_contacts() + _tasks()
