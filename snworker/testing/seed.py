"""The stub's seed data: the same records, sys_ids and timestamps on every run.

Seed records are written through the store like any other, so they carry every column, their
defaults and numbers, and the rules' effects. The result is built once per process and every
stub (and every reset) starts from that snapshot.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Final

from snworker.testing.attachments import attach
from snworker.testing.platform import SEED_PASSWORD, SIGNED_IN_USER_NAME, sys_id_for
from snworker.testing.schema import Schema
from snworker.testing.store import Caller, RecordStore, Snapshot

SEED_EPOCH: Final = datetime(2024, 1, 2, 9, 0, 0, tzinfo=UTC)

USERS: Final = (
    (SIGNED_IN_USER_NAME, "System", "Administrator", "System Administrator"),
    ("abel.tuter", "Abel", "Tuter", "Service Desk Agent"),
    ("beth.anglin", "Beth", "Anglin", "Network Engineer"),
    ("david.loo", "David", "Loo", "Customer Service Agent"),
    ("fred.luddy", "Fred", "Luddy", "Financial Services Agent"),
)
GROUPS: Final = {
    "Service Desk": (SIGNED_IN_USER_NAME, "abel.tuter"),
    "Network": ("beth.anglin",),
    "Hardware": ("beth.anglin", "abel.tuter"),
    "Customer Service": ("david.loo", "fred.luddy"),
    "Financial Services": ("fred.luddy",),
}
COMPANIES: Final = (("Dell Inc.", True), ("Cisco Systems", True), ("ACME North America", False))
ACCOUNTS: Final = ("Boxeo", "Cuvee Bank", "Northwind Savings")
CONTACTS: Final = (
    ("Julie", "Lewis", "Boxeo"),
    ("Rick", "Berzle", "Cuvee Bank"),
    ("Mia", "Davis", "Northwind Savings"),
    ("Omar", "Haddad", "Cuvee Bank"),
)
CIS: Final = (
    ("EXCH-SD-05", "Email server", "Dell Inc.", "Service Desk"),
    ("lnux100", "Linux application server", "Dell Inc.", "Hardware"),
    ("VPN-GW-01", "VPN gateway", "Cisco Systems", "Network"),
    ("PRN-F3-01", "Printer on floor 3", "ACME North America", "Hardware"),
    ("SALES-PORTAL", "Sales portal web farm", "Dell Inc.", "Service Desk"),
    ("CORE-SW-A", "Core switch A", "Cisco Systems", "Network"),
)
INCIDENT_SUBJECTS: Final = (
    ("Email server is down", "EXCH-SD-05"),
    ("Cannot connect to VPN", "VPN-GW-01"),
    ("Laptop battery swelling", ""),
    ("Printer on floor 3 jams", "PRN-F3-01"),
    ("Password reset needed", ""),
    ("Sales portal slow", "SALES-PORTAL"),
    ("Wi-Fi drops in meeting room", "CORE-SW-A"),
    ("Excel crashes on open", ""),
)
INCIDENT_STATES: Final = ("1", "2", "3", "6", "7")
INCIDENT_COUNT: Final = 30
PROBLEMS: Final = (
    ("Email server runs out of disk space", "103"),
    ("VPN gateway drops idle tunnels", "104"),
    ("Printer firmware jams on duplex", "106"),
    ("Sales portal connection pool exhausted", "107"),
)
CHANGES: Final = (
    ("Add disk to the email server", "normal", "-2"),
    ("Upgrade VPN gateway firmware", "normal", "-1"),
    ("Patch Linux servers", "standard", "3"),
    ("Replace core switch A power supply", "emergency", "-5"),
)
CATALOG: Final = (
    ("Standard Laptop", "1100"), ("Wireless Mouse", "25"), ("Developer Laptop", "2200"),
)
REQUESTED_ITEMS: Final = (("Standard Laptop", "2"), ("Wireless Mouse", "1"),
                          ("Developer Laptop", "3"), ("Wireless Mouse", "3"))
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
ATTACHMENT: Final = ("INC0010001", "mail-queue.log", "text/plain",
                     b"09:00:01 queue length 5231\n09:00:31 queue length 5388\n")


def user_sys_id(user_name: str) -> str:
    """The seeded sys_id of a user."""
    return sys_id_for("sys_user", user_name)


def _id(table: str, key: str) -> str:
    return sys_id_for(table, key)


class _Seeder:
    """Writes the seed through a store, each record at its own time on the seed clock."""

    def __init__(self, schema: Schema) -> None:
        self.store = RecordStore(schema)
        ids = (sys_id_for("seed", str(n)) for n in itertools.count())
        self.store.new_sys_id = lambda: next(ids)
        self.admin = user_sys_id(SIGNED_IN_USER_NAME)
        self.hours = itertools.count()

    def caller(self) -> Caller:
        moment = SEED_EPOCH + timedelta(hours=next(self.hours))
        return Caller(self.admin, SIGNED_IN_USER_NAME, moment.timestamp())

    def add(self, table: str, key: str, values: Mapping[str, object]) -> str:
        sys_id = _id(table, key)
        self.store.insert(table, {"sys_id": sys_id, **values}, self.caller())
        return sys_id


def _people(seed: _Seeder) -> None:
    for name, manufacturer in COMPANIES:
        seed.add("core_company", name, {"name": name, "manufacturer": manufacturer,
                                        "vendor": manufacturer, "city": "San Diego"})
    for user_name, first, last, title in USERS:
        seed.add("sys_user", user_name, {
            "user_name": user_name, "first_name": first, "last_name": last, "title": title,
            "email": f"{user_name}@example.com", "user_password": SEED_PASSWORD,
            "company": _id("core_company", "ACME North America"), "time_zone": "UTC",
        })
    for group, members in GROUPS.items():
        seed.add("sys_user_group", group, {
            "name": group, "email": f"{group.lower().replace(' ', '.')}@example.com",
            "manager": user_sys_id(members[0]),
        })
        for member in members:
            seed.add("sys_user_grmember", f"{group}:{member}",
                     {"user": user_sys_id(member), "group": _id("sys_user_group", group)})
    for name in ACCOUNTS:
        seed.add("customer_account", name, {"name": name, "city": "Boston"})
    for first, last, account in CONTACTS:
        seed.add("customer_contact", f"{first} {last}", {
            "first_name": first, "last_name": last,
            "user_name": f"{first.lower()}.{last.lower()}@example.com",
            "email": f"{first.lower()}.{last.lower()}@example.com",
            "account": _id("customer_account", account),
        })
    for name, description, maker, group in CIS:
        seed.add("cmdb_ci", name, {
            "name": name, "short_description": description,
            "manufacturer": _id("core_company", maker),
            "support_group": _id("sys_user_group", group),
            "serial_number": f"SN-{sys_id_for('serial', name)[:10].upper()}",
        })


def _assignee(index: int) -> str:
    return user_sys_id(USERS[1 + index % (len(USERS) - 1)][0]) if index % 4 else ""


def _tasks(seed: _Seeder) -> None:
    for index in range(INCIDENT_COUNT):
        number = f"INC{10001 + index:07d}"
        subject, ci = INCIDENT_SUBJECTS[index % len(INCIDENT_SUBJECTS)]
        seed.add("incident", number, {
            "number": number, "short_description": subject,
            "description": f"{subject}. Reported by the seed data.",
            "state": INCIDENT_STATES[index % 5], "priority": str(1 + index % 5),
            "assigned_to": _assignee(index), "caller_id": user_sys_id(USERS[index % 5][0]),
            "category": ("inquiry", "software", "hardware", "network")[index % 4],
            "assignment_group": _id("sys_user_group", "Service Desk") if index % 3 else "",
            "cmdb_ci": _id("cmdb_ci", ci) if ci else "",
            "comments": "Customer called about this." if index % 10 == 0 else "",
        })
    for index, subject in enumerate(("Rotate backup tapes", "Renew TLS certificate", "Audit")):
        number = f"TASK{10001 + index:07d}"
        seed.add("task", number, {"number": number, "short_description": subject,
                                  "state": ("1", "2", "3")[index], "assigned_to": _assignee(index)})
    for index, (subject, state) in enumerate(PROBLEMS):
        seed.add("problem", subject, {
            "short_description": subject, "state": state, "impact": "2", "urgency": "2",
            "assigned_to": _assignee(index + 1),
            "first_reported_by_task": _id("incident", f"INC{10001 + index:07d}"),
        })
    for index, (subject, kind, state) in enumerate(CHANGES):
        seed.add("change_request", subject, {
            "short_description": subject, "type": kind, "state": state,
            "assignment_group": _id("sys_user_group", ("Hardware", "Network")[index % 2]),
            "cmdb_ci": _id("cmdb_ci", CIS[index][0]),
        })
    for name, price in CATALOG:
        seed.add("sc_cat_item", name, {"name": name, "short_description": name,
                                       "price": price, "category": "Hardware"})
    for index in range(2):
        seed.add("sc_request", str(index), {"requested_for": user_sys_id(USERS[index + 1][0]),
                                            "short_description": "Equipment request"})
    for index, (item, quantity) in enumerate(REQUESTED_ITEMS):
        seed.add("sc_req_item", str(index), {
            "request": _id("sc_request", str(index % 2)), "cat_item": _id("sc_cat_item", item),
            "quantity": quantity, "short_description": item,
            "requested_for": user_sys_id(USERS[index % 2 + 1][0]),
            "state": ("1", "2", "3")[index % 3],
        })


def _cases(seed: _Seeder) -> None:
    for table, subjects, prefix, offset in (
        ("sn_customerservice_case", CASE_SUBJECTS, "CS", 0),
        ("sn_bom_financial_service", FINANCIAL_SERVICE_SUBJECTS, "FSC", 1),
    ):
        for index, subject in enumerate(subjects):
            number = f"{prefix}{1001 + index:07d}"
            first, last, account = CONTACTS[(index + offset) % len(CONTACTS)]
            seed.add(table, number, {
                "number": number, "short_description": subject,
                "description": f"{subject}. Reported by the seed data.",
                "state": CASE_STATES[index % 5], "priority": str(1 + (index + offset) % 4),
                "assigned_to": _assignee(index + offset),
                "account": _id("customer_account", account),
                "contact": _id("customer_contact", f"{first} {last}"),
            })


def _choices(schema: Schema) -> Iterator[dict[str, str]]:
    """The choice lists the table definitions give, as sys_choice records."""
    for table in schema.names():
        for column, spec in schema.definition(table).columns.items():
            for sequence, (value, label) in enumerate(spec.get("choices", {}).items(), 1):
                yield {"name": table, "element": column, "value": value, "label": label,
                       "sequence": str(sequence)}


@cache
def seed_snapshot() -> Snapshot:
    """Every seed record of the shipped tables, built once."""
    schema = Schema.shipped()
    seed = _Seeder(schema)
    _people(seed)
    _tasks(seed)
    _cases(seed)
    for choice in _choices(schema):
        key = f"{choice['name']}.{choice['element']}={choice['value']}"
        seed.store.insert("sys_choice", {"sys_id": _id("sys_choice", key), **choice},
                          seed.caller())
    number, file_name, content_type, content = ATTACHMENT
    incident = _id("incident", number)
    attach(seed.store, "incident", incident, file_name, content_type, content, seed.caller())
    return seed.store.snapshot()

