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
    ("EXCH-SD-05", "Email server", "Dell Inc.", "Service Desk", "cmdb_ci_win_server"),
    ("lnux100", "Linux application server", "Dell Inc.", "Hardware", "cmdb_ci_linux_server"),
    ("VPN-GW-01", "VPN gateway", "Cisco Systems", "Network", "cmdb_ci_netgear"),
    ("PRN-F3-01", "Printer on floor 3", "ACME North America", "Hardware", "cmdb_ci_printer"),
    ("SALES-PORTAL", "Sales portal web farm", "Dell Inc.", "Service Desk", "cmdb_ci_service"),
    ("CORE-SW-A", "Core switch A", "Cisco Systems", "Network", "cmdb_ci_netgear"),
    ("Email", "Email for every employee", "", "Service Desk", "cmdb_ci_service"),
    ("Exchange 2019", "Mail server software", "", "Service Desk", "cmdb_ci_appl"),
    ("LT-ABEL-01", "Abel Tuter's laptop", "Dell Inc.", "Hardware", "cmdb_ci_computer"),
)
CI_DETAILS: Final[Mapping[str, Mapping[str, str]]] = {
    "EXCH-SD-05": {"os": "Windows 2019 Standard", "ram": "32768", "cpu_count": "8",
                   "ip_address": "10.0.1.15", "host_name": "exch-sd-05", "os_domain": "corp"},
    "lnux100": {"os": "Linux Red Hat", "ram": "16384", "cpu_count": "4",
                "ip_address": "10.0.1.100", "host_name": "lnux100",
                "kernel_release": "5.14.0-362.el9.x86_64"},
    "VPN-GW-01": {"ports": "8", "can_route": "true", "firmware_version": "17.3.4",
                  "ip_address": "10.0.0.2"},
    "CORE-SW-A": {"ports": "48", "can_switch": "true", "firmware_version": "9.3.10",
                  "ip_address": "10.0.0.1"},
    "SALES-PORTAL": {"busines_criticality": "1 - most critical"},
    "Email": {"busines_criticality": "1 - most critical"},
    "Exchange 2019": {"version": "15.2", "running_process": "MSExchangeTransport.exe",
                      "tcp_port": "25"},
    "LT-ABEL-01": {"os": "Windows 11 Enterprise", "ram": "16384", "form_factor": "Laptop",
                   "assigned_to": "abel.tuter"},
}
CI_RELATIONS: Final = (
    ("Email", "Depends on::Used by", "EXCH-SD-05"),
    ("Email", "Depends on::Used by", "Exchange 2019"),
    ("Exchange 2019", "Runs on::Runs", "EXCH-SD-05"),
    ("SALES-PORTAL", "Depends on::Used by", "lnux100"),
    ("EXCH-SD-05", "Connects to::Connected by", "CORE-SW-A"),
    ("lnux100", "Connects to::Connected by", "CORE-SW-A"),
    ("VPN-GW-01", "Connects to::Connected by", "CORE-SW-A"),
)
ROLES: Final = (
    ("admin", "System administrator: every right", ("itil", "knowledge_admin", "catalog_admin")),
    ("itil", "Fulfiller: works on tasks", ("approver_user",)),
    ("approver_user", "Approves requests and changes", ()),
    ("knowledge_admin", "Manages knowledge bases", ("knowledge",)),
    ("knowledge", "Writes knowledge articles", ()),
    ("catalog_admin", "Manages the service catalog", ()),
    ("sn_customerservice_agent", "Works on customer service cases", ()),
)
USER_ROLES: Final = (("admin", "admin"), ("beth.anglin", "knowledge"))
GROUP_ROLES: Final = (
    ("Service Desk", "itil"), ("Network", "itil"), ("Hardware", "itil"),
    ("Customer Service", "sn_customerservice_agent"),
    ("Financial Services", "sn_customerservice_agent"),
)
KNOWLEDGE_BASES: Final = (
    ("IT", "How-to articles for employees", "admin",
     ("Email", "Network", "Network/VPN", "Hardware")),
    ("Customer Service", "Answers for customer service agents", "david.loo", ("Cards",)),
)
ARTICLES: Final = (
    ("IT", "Email", "How to set up email on a phone", "published"),
    ("IT", "Email", "Mailbox is full: what to do", "published"),
    ("IT", "Network/VPN", "Connect to the VPN from home", "published"),
    ("IT", "Network/VPN", "VPN client error 809", "draft"),
    ("IT", "Hardware", "Printer on floor 3: clearing a jam", "published"),
    ("IT", "Hardware", "Laptop battery replacement (old model)", "retired"),
    ("Customer Service", "Cards", "Why a card payment is declined", "published"),
)
UPDATE_SETS: Final = (
    ("Default", "The default update set", "in progress", True),
    ("Incident form layout", "New fields on the incident form", "complete", False),
    ("Change approvals", "Approval rules for normal changes", "in progress", False),
)
CUSTOMER_UPDATES: Final = (
    ("Incident form layout", "sys_ui_section_incident_default", "Form Sections", "incident"),
    ("Incident form layout", "sys_dictionary_incident_u_region", "Dictionary", "incident.u_region"),
    ("Change approvals", "sys_script_change_request_approvals", "Business Rule",
     "Request approvals when authorized"),
    ("Change approvals", "sys_properties_change_approval_mode", "System Property",
     "change.approval.mode"),
)
CATALOG_CATEGORIES: Final = (("Hardware", ""), ("Laptops", "Hardware"), ("Peripherals", "Hardware"))
CATALOG_CATEGORY: Final = {"Standard Laptop": "Laptops", "Wireless Mouse": "Peripherals",
                           "Developer Laptop": "Laptops"}
CATALOG_VARIABLES: Final = (
    ("Standard Laptop", "deliver_to", "Deliver to", "8", "sys_user", "true"),
    ("Standard Laptop", "additional_software", "Additional software", "2", "", "false"),
    ("Wireless Mouse", "color", "Color", "6", "", "false"),
    ("Developer Laptop", "operating_system", "Operating system", "5", "", "true"),
    ("Developer Laptop", "deliver_to", "Deliver to", "8", "sys_user", "true"),
)
PREFERENCES: Final = (
    ("admin", "rowcount", "50"), ("admin", "glide.ui.incident_activity.ascending", "true"),
    ("abel.tuter", "rowcount", "20"), ("beth.anglin", "timezone", "Europe/London"),
)
PROPERTIES: Final = (
    ("instance_name", "snworkerstub", "string", "The instance's name"),
    ("glide.product.name", "ServiceNow", "string", "The product name shown in the banner"),
    ("glide.sys.date_format", "yyyy-MM-dd", "string", "Date format"),
    ("glide.sys.time_format", "HH:mm:ss", "string", "Time format"),
    ("glide.ui.session_timeout", "30", "integer", "Minutes before an idle session ends"),
    ("glide.invalid_query.returns_no_rows", "false", "boolean",
     "A query on an unknown field returns no rows"),
    ("change.approval.mode", "any", "string", "One approval moves a change on"),
)
BUSINESS_RULES: Final = (
    ("incident", "Set priority from impact and urgency", "before", ("insert", "update"),
     "current.priority = new global.PriorityLookup().get(current.impact, current.urgency);"),
    ("task", "Close task: inactive", "before", ("update",),
     "current.active = false;"),
    ("change_request", "Request approvals when authorized", "after", ("insert", "update"),
     "new ChangeApprovals(current).request();"),
    ("sysapproval_approver", "Approval: move the record on", "after", ("update",),
     "new ApprovalEvents(current).apply();"),
)
CHANGE_TASKS: Final = (
    (0, "Order the disk", "planning", "3"),
    (0, "Install the disk and extend the volume", "implementation", "1"),
    (2, "Patch the staging servers first", "implementation", "2"),
    (2, "Check the applications after patching", "testing", "1"),
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
    ("Move the file shares to the new NAS", "normal", "-4"),
)
# The first is approved (and moves on to Scheduled), the second waits for its approvers.
APPROVAL_CHANGES: Final = (0, 4)
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

    def __init__(self, schema: Schema, snapshot: Snapshot) -> None:
        self.store = RecordStore(schema, snapshot)
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
    _roles(seed)
    _cmdb(seed)


def _roles(seed: _Seeder) -> None:
    contains = {name: included for name, _, included in ROLES}
    for name, description, included in ROLES:
        seed.add("sys_user_role", name, {"name": name, "description": description,
                                         "includes_roles": ",".join(included),
                                         "elevated_privilege": name == "admin"})
    for name, _, included in ROLES:
        for role in included:
            seed.add("sys_user_role_contains", f"{name}>{role}",
                     {"role": _id("sys_user_role", name), "contains": _id("sys_user_role", role)})

    def grant(user: str, role: str, group: str, via: str) -> None:
        key = f"{user}:{role}:{group}:{via}"
        seed.add("sys_user_has_role", key, {
            "user": user_sys_id(user), "role": _id("sys_user_role", role),
            "inherited": bool(group or via), "inh_count": "1" if group or via else "0",
            "granted_by": _id("sys_user_group", group) if group else "",
            "included_in_role": _id("sys_user_role", via) if via else "",
        })
        for contained in contains[role]:
            grant(user, contained, group, role)

    for user, role in USER_ROLES:
        grant(user, role, "", "")
    for group, role in GROUP_ROLES:
        seed.add("sys_group_has_role", f"{group}:{role}",
                 {"group": _id("sys_user_group", group), "role": _id("sys_user_role", role)})
        for member in GROUPS[group]:
            grant(member, role, group, "")


def _cmdb(seed: _Seeder) -> None:
    for name, description, maker, group, ci_class in CIS:
        details = dict(CI_DETAILS.get(name, {}))
        if "assigned_to" in details:
            details["assigned_to"] = user_sys_id(details["assigned_to"])
        seed.store.insert(ci_class, {
            "sys_id": _id("cmdb_ci", name), "name": name, "short_description": description,
            "manufacturer": _id("core_company", maker) if maker else "",
            "support_group": _id("sys_user_group", group),
            "serial_number": f"SN-{sys_id_for('serial', name)[:10].upper()}",
            **details,
        }, seed.caller())
    for relation in sorted({kind for _, kind, _ in CI_RELATIONS}):
        parent, child = relation.split("::")
        seed.add("cmdb_rel_type", relation,
                 {"name": relation, "parent_descriptor": parent, "child_descriptor": child})
    for parent, kind, child in CI_RELATIONS:
        seed.add("cmdb_rel_ci", f"{parent}>{child}", {
            "parent": _id("cmdb_ci", parent), "child": _id("cmdb_ci", child),
            "type": _id("cmdb_rel_type", kind),
        })


def _knowledge(seed: _Seeder) -> None:
    for title, description, owner, categories in KNOWLEDGE_BASES:
        base = seed.add("kb_knowledge_base", title, {
            "title": title, "description": description, "owner": user_sys_id(owner),
            "kb_managers": user_sys_id(owner),
        })
        for path in categories:
            parent, _, label = path.rpartition("/")
            seed.add("kb_category", f"{title}/{path}", {
                "label": label, "value": label.lower(), "kb_knowledge_base": base,
                "parent_table": "kb_category" if parent else "kb_knowledge_base",
                "parent_id": _id("kb_category", f"{title}/{parent}") if parent else base,
                "full_category": path.replace("/", " > "),
            })
    for index, (base, category, subject, state) in enumerate(ARTICLES):
        seed.add("kb_knowledge", subject, {
            "short_description": subject, "workflow_state": state,
            "text": f"<p>{subject}.</p><p>Written for the seed data.</p>",
            "kb_knowledge_base": _id("kb_knowledge_base", base),
            "kb_category": _id("kb_category", f"{base}/{category}"),
            "author": user_sys_id(USERS[index % len(USERS)][0]),
            "published": "" if state == "draft" else "2024-01-02",
            "active": state != "retired", "sys_view_count": str(10 * (len(ARTICLES) - index)),
            "meta": " ".join(subject.lower().split()[:3]),
        })


def _configuration(seed: _Seeder) -> None:
    for name, description, state, default in UPDATE_SETS:
        seed.add("sys_update_set", name, {"name": name, "description": description,
                                          "state": state, "is_default": default})
    for update_set, name, kind, target in CUSTOMER_UPDATES:
        seed.add("sys_update_xml", name, {
            "name": name, "update_set": _id("sys_update_set", update_set), "type": kind,
            "target_name": target, "payload": f'<?xml version="1.0"?><record_update>{name}'
                                              "</record_update>",
        })
    for user, name, value in PREFERENCES:
        seed.add("sys_user_preference", f"{user}:{name}",
                 {"user": user_sys_id(user), "name": name, "value": value})
    for name, value, kind, description in PROPERTIES:
        seed.add("sys_properties", name,
                 {"name": name, "value": value, "type": kind, "description": description})
    for table, name, when, actions, script in BUSINESS_RULES:
        seed.add("sys_script", name, {
            "name": name, "collection": table, "when": when, "advanced": True, "script": script,
            **{f"action_{action}": True for action in actions},
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
    _approvals(seed)
    for change, subject, kind, state in CHANGE_TASKS:
        seed.add("change_task", subject, {
            "short_description": subject, "change_task_type": kind, "state": state,
            "change_request": _id("change_request", CHANGES[change][0]),
            "parent": _id("change_request", CHANGES[change][0]),
            "assignment_group": _id("sys_user_group", "Hardware"),
        })
    for title, parent in CATALOG_CATEGORIES:
        seed.add("sc_category", title, {
            "title": title, "description": f"{title} you can order",
            "parent": _id("sc_category", parent) if parent else "",
        })
    for name, price in CATALOG:
        seed.add("sc_cat_item", name, {"name": name, "short_description": name, "price": price,
                                       "category": _id("sc_category", CATALOG_CATEGORY[name])})
    for order, (item, name, question, kind, reference, mandatory) in enumerate(
            CATALOG_VARIABLES, 1):
        seed.add("item_option_new", f"{item}:{name}", {
            "cat_item": _id("sc_cat_item", item), "name": name, "question_text": question,
            "type": kind, "reference": reference, "mandatory": mandatory,
            "order": str(100 * order),
        })
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


def _approvals(seed: _Seeder) -> None:
    """A change that asked for approval and was approved, one waiting for its approvers."""
    approved, waiting = (_id("change_request", CHANGES[n][0]) for n in APPROVAL_CHANGES)
    for change in (approved, waiting):
        seed.store.update("change_request", change, {"state": "-3"}, seed.caller())
    approver = next(
        r for r in seed.store.records.values()
        if r["sys_class_name"] == "sysapproval_approver" and r["sysapproval"] == approved
        and r["approver"] == user_sys_id("beth.anglin")
    )
    beth = Caller(user_sys_id("beth.anglin"), "beth.anglin", seed.caller().now)
    seed.store.update("sysapproval_approver", approver["sys_id"],
                      {"state": "approved", "comments": "Disk size checked."}, beth)


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
def _schema() -> Schema:
    """The shipped tables, resolved once for both snapshots (neither changes them)."""
    return Schema.shipped()


@cache
def schema_snapshot() -> Snapshot:
    """The schema tables' rows for the shipped tables, built once: a stub without seed data."""
    schema = _schema()
    store = RecordStore(schema)
    caller = Caller(user_sys_id(SIGNED_IN_USER_NAME), SIGNED_IN_USER_NAME, SEED_EPOCH.timestamp())
    for name in schema.names():
        store.describe(name, caller)
    return store.snapshot()


@cache
def seed_snapshot() -> Snapshot:
    """Every seed record of the shipped tables, built once."""
    schema = _schema()
    seed = _Seeder(schema, schema_snapshot())
    _people(seed)
    _tasks(seed)
    _cases(seed)
    _knowledge(seed)
    _configuration(seed)
    for choice in _choices(schema):
        key = f"{choice['name']}.{choice['element']}={choice['value']}"
        seed.store.insert("sys_choice", {"sys_id": _id("sys_choice", key), **choice},
                          seed.caller())
    number, file_name, content_type, content = ATTACHMENT
    incident = _id("incident", number)
    attach(seed.store, "incident", incident, file_name, content_type, content, seed.caller())
    return seed.store.snapshot()

