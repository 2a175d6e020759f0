"""What the stub knows about the ServiceNow platform: statuses, messages, tables, defaults.

Every fact the stub answers with lives here, so that a fact found wrong is corrected in one
place. Facts the platform documents are marked as such; the rest are the stub's best reading.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Final

# --- OAuth -------------------------------------------------------------------------------------

AUTHORIZE_PATH: Final = "/oauth_auth.do"
TOKEN_PATH: Final = "/oauth_token.do"
REVOKE_PATH: Final = "/oauth_revoke_token.do"

DEFAULT_ACCESS_LIFESPAN: Final = 1800  # documented platform default, seconds
DEFAULT_REFRESH_LIFESPAN: Final = 8_640_000  # documented platform default (100 days)
AUTHORIZATION_CODE_LIFESPAN: Final = 60.0
TOKEN_SCOPE: Final = "useraccount"
TOKEN_TYPE: Final = "Bearer"

# The platform answers every refused token request alike, not with RFC 6749's `invalid_grant`;
# a body that is not form-urlencoded is refused the same way.
TOKEN_FAILURE_STATUS: Final = 401
TOKEN_FAILURE_BODY: Final = {"error_description": "access_denied", "error": "server_error"}

MISSING_STATE_MESSAGE: Final = "Missing State parameter in request"
INVALID_CLIENT_MESSAGE: Final = "Invalid client_id"
INVALID_REDIRECT_MESSAGE: Final = "Invalid redirect_uri"
CONSENT_HEADLINE: Final = "{app_name} would like to connect to your ServiceNow account"

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})

# --- REST envelope and messages ----------------------------------------------------------------

NOT_AUTHENTICATED: Final = ("User Not Authenticated", "Required to provide Auth information")
NO_RECORD: Final = (
    "No Record found",
    "Record doesn't exist or ACL restricts the record retrieval",
)
NO_RECORDS_MATCHING: Final = (
    "No Record found",
    "Records matching query not found. Check query parameter or offset parameter",
)
INVALID_TABLE_STATUS: Final = 400  # not pinned down: the platform is seen answering 400
INVALID_TABLE_MESSAGE: Final = "Invalid table {table}"
BAD_PAYLOAD: Final = ("Exception while reading request", "The payload is not valid JSON.")
PAYLOAD_NOT_OBJECT: Final = (
    "Exception while reading request",
    "The payload must be a JSON object.",
)
EMPTY_PAYLOAD: Final = ("Exception while reading request", "Empty request body")
NO_RESOURCE: Final = ("Requested URI does not represent any resource", None)
METHOD_NOT_SUPPORTED: Final = ("Method not Supported", "Method not supported by the resource")
RATE_LIMITED_MESSAGE: Final = "Rate limit exceeded"
RATE_LIMIT_RULE: Final = "stub-rate-limit-rule"
INJECTED_DETAIL: Final = "Fault injected by the stub instance"

JSON_TYPE: Final = "application/json;charset=UTF-8"


def error_body(message: str, detail: str | None) -> bytes:
    """The platform's failure envelope, encoded."""
    envelope = {"error": {"message": message, "detail": detail}, "status": "failure"}
    return json.dumps(envelope, separators=(",", ":")).encode()


# --- Table API -----------------------------------------------------------------------------------

# The unversioned path answers as the latest version does.
DEFAULT_TABLE_API_VERSION: Final = "v2"
DEFAULT_LIMIT: Final = 10_000
DATETIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"

# Each table's parent; a list of a parent table includes the records of its extensions.
TABLE_PARENTS: Final[Mapping[str, str | None]] = {
    "sys_user": None,
    "task": None,
    "incident": "task",
    "sn_customerservice_case": "task",
    "sn_bom_financial_service": "sn_customerservice_case",
    "customer_account": None,
    "customer_contact": None,
}

# Reference fields defined on each table (inherited by its extensions), and their target table.
REFERENCE_FIELDS: Final[Mapping[str, Mapping[str, str]]] = {
    "task": {"assigned_to": "sys_user", "opened_by": "sys_user"},
    "incident": {"caller_id": "sys_user"},
    "sn_customerservice_case": {"account": "customer_account", "contact": "customer_contact"},
    "customer_contact": {"account": "customer_account"},
}

# The field whose value is shown for a reference to a record of the table.
DISPLAY_FIELDS: Final[Mapping[str, str]] = {
    "sys_user": "name",
    "customer_account": "name",
    "customer_contact": "name",
    "task": "number",
}

# Labels of choice fields, by table (inherited unless an extension has its own).
CHOICES: Final[Mapping[str, Mapping[str, Mapping[str, str]]]] = {
    "task": {
        "state": {
            "-5": "Pending",
            "1": "Open",
            "2": "Work in Progress",
            "3": "Closed Complete",
            "4": "Closed Incomplete",
            "7": "Closed Skipped",
        },
        "priority": {
            "1": "1 - Critical",
            "2": "2 - High",
            "3": "3 - Moderate",
            "4": "4 - Low",
            "5": "5 - Planning",
        },
    },
    "incident": {
        "state": {
            "1": "New",
            "2": "In Progress",
            "3": "On Hold",
            "6": "Resolved",
            "7": "Closed",
            "8": "Canceled",
        },
    },
    "sn_customerservice_case": {
        "state": {
            "1": "New",
            "10": "Open",
            "18": "Awaiting Info",
            "6": "Resolved",
            "3": "Closed",
            "7": "Cancelled",
        },
    },
}

NUMBER_PREFIXES: Final[Mapping[str, str]] = {
    "task": "TASK",
    "incident": "INC",
    "sn_customerservice_case": "CS",
    "sn_bom_financial_service": "FSC",
    "customer_account": "ACC",
}

SYSTEM_FIELDS: Final = (
    "sys_id",
    "sys_class_name",
    "sys_created_on",
    "sys_created_by",
    "sys_updated_on",
    "sys_updated_by",
    "sys_mod_count",
)

SIGNED_IN_USER_NAME: Final = "admin"
CURRENT_USER_EXPRESSION: Final = "javascript:gs.getUserID()"


def sys_id_for(*names: str) -> str:
    """A fixed 32-hex sys_id derived from names, so seed data is the same on every run."""
    return hashlib.md5(":".join(names).encode(), usedforsecurity=False).hexdigest()


def ancestry(table: str) -> list[str]:
    """The table and its ancestors, nearest first."""
    chain = [table]
    parent = TABLE_PARENTS.get(table)
    while parent is not None:
        chain.append(parent)
        parent = TABLE_PARENTS.get(parent)
    return chain


def reference_target(table: str, field: str) -> str | None:
    """The table a reference field of `table` points at, or None for a plain field."""
    for name in ancestry(table):
        target = REFERENCE_FIELDS.get(name, {}).get(field)
        if target is not None:
            return target
    return None


def choice_label(table: str, field: str, value: str) -> str | None:
    """The label of a choice value, or None when the field has no choices."""
    for name in ancestry(table):
        choices = CHOICES.get(name, {}).get(field)
        if choices is not None:
            return choices.get(value, value)
    return None


def display_field(table: str) -> str:
    """The field shown for a reference to a record of `table`."""
    for name in ancestry(table):
        if name in DISPLAY_FIELDS:
            return DISPLAY_FIELDS[name]
    return "sys_id"
