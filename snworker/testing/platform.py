"""What the stub knows about the ServiceNow platform: statuses, messages, formats, choices.

Every fact the stub answers with lives here (the tables themselves are data, in `tables/`), so
that a fact found wrong is corrected in one place. Facts the platform documents are marked as
such; lines marked "choice" are the stub's reading where the platform is not pinned down, each
with its reason.
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

# How clients may sign in. "code" is the authorization-code flow with PKCE (and its refresh
# grant); "basic" is HTTP Basic auth with a sys_user's user name and password on REST calls;
# "password" and "client_credentials" are those grants on the token endpoint, for a client
# registered with a secret. Choice: only "code" unless a stub is told otherwise, so an
# application built for the authorization-code flow sees no other way in.
AUTH_METHODS: Final = ("code", "basic", "password", "client_credentials", "jwt")
DEFAULT_AUTH: Final = ("code",)
# Choice: the password grant issues a refresh token and the client-credentials grant does not
# (RFC 6749 4.4.3); a client-credentials token acts for the signed-in (admin) user, as an
# OAuth entity's "OAuth Application User" would.
GRANT_TYPES: Final = ("authorization_code", "refresh_token", "password", "client_credentials",
                       "jwt_bearer")
# The grant counted for each sign-in method of the token endpoint.
GRANT_OF_METHOD: Final = {"code": "authorization_code", "password": "password",
                          "client_credentials": "client_credentials", "jwt": "jwt_bearer"}
JWT_BEARER_GRANT: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# The client-credentials grant is off unless this property is true; in the stub, "client_
# credentials" among the sign-in methods is the property set.
CLIENT_CREDENTIALS_PROPERTY: Final = "glide.oauth.inbound.client.credential.grant_type.enabled"
# Documented: JWT assertions are signed RS256-512 or ES256-512 with a verifier map entry's
# certificate, or HS256-512 with its shared key (Zurich on); the entity's user field is one of:
JWT_USER_FIELDS: Final = ("user_name", "email", "sys_id")
JWT_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "HS256", "HS384",
                         "HS512")
# Choice: the platform's texts for these refusals are not pinned down. Each is a 401 with
# {"error": ..., "error_description": ...}; the descriptions name the setting at fault.
UNATTENDED_REFUSALS: Final = {
    "grant_disabled": ("unsupported_grant_type",
                       "The client_credentials grant type is not enabled on this instance "
                       f"({CLIENT_CREDENTIALS_PROPERTY} is false)"),
    "no_application_user": ("invalid_client",
                            "No OAuth Application User is configured for this OAuth application"),
    "unknown_key": ("invalid_grant", "No JWT verifier map entry has this kid"),
    "unknown_subject": ("invalid_grant", "The JWT subject matches no user"),
    "bad_signature": ("invalid_grant", "The JWT signature does not verify"),
    "assertion_expired": ("invalid_grant", "The JWT has expired"),
    "assertion_replayed": ("invalid_grant", "The JWT id (jti) was already used"),
    "malformed": ("invalid_grant", "The assertion is not a valid JWT"),
    "invalid_client": ("invalid_client", "Client authentication failed"),
}
# Choice: every seed user signs in with this password (Basic auth, password grant).
SEED_PASSWORD: Final = "snworker-stub"

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
INJECTED_DETAIL: Final = "Fault injected by the stub instance"
SCRIPT_FAILED: Final = ("Script Evaluation Exception", "The scripted REST handler raised {error}")

JSON_TYPE: Final = "application/json;charset=UTF-8"
# Choice: the stub answers the REST APIs in JSON only. The platform also serves XML
# (`Accept: application/xml`); rather than answer such a client in JSON without a word, the
# stub refuses an Accept header that admits no JSON with 406 and this message, so a client
# that depends on XML finds out in its tests. An attachment's content is served whatever the
# Accept header says, as the platform does.
SERVED_TYPES: Final = ("application/json",)
NOT_ACCEPTABLE: Final = (
    "Not Acceptable",
    "The stub instance answers in JSON only (application/json); the platform would answer "
    "this Accept header in XML",
)
ANY_ACCEPT_ENDPOINTS: Final = frozenset({"attachment.content"})


def error_body(message: str, detail: str | None) -> bytes:
    """The platform's failure envelope, encoded."""
    envelope = {"error": {"message": message, "detail": detail}, "status": "failure"}
    return json.dumps(envelope, separators=(",", ":")).encode()


# --- Records -----------------------------------------------------------------------------------

# The unversioned path answers as the latest version does.
DEFAULT_TABLE_API_VERSION: Final = "v2"
DEFAULT_LIMIT: Final = 10_000
DATETIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
DATE_FORMAT: Final = "%Y-%m-%d"
NUMBER_DIGITS: Final = 7

# Columns every table has, with their types.
SYSTEM_COLUMNS: Final[Mapping[str, str]] = {
    "sys_id": "GUID",
    "sys_class_name": "sys_class_name",
    "sys_created_on": "glide_date_time",
    "sys_created_by": "string",
    "sys_updated_on": "glide_date_time",
    "sys_updated_by": "string",
    "sys_mod_count": "integer",
}
# Choice: a table without a display column shows references to it by sys_id.
DEFAULT_DISPLAY_COLUMN: Final = "sys_id"
# Journal fields append an entry (a sys_journal_field record) and read back as "".
JOURNAL_TYPES: Final = frozenset({"journal_input", "journal", "journal_list"})
JOURNAL_TABLE: Final = "sys_journal_field"
# Choice: password fields are stored for sign-in and read back as "" (the platform never
# returns the clear text).
HIDDEN_TYPES: Final = frozenset({"password", "password2"})
# Choice: an incident's priority follows the lookup on impact and urgency when either is
# written, or on insert when no priority is given; a priority written alone is kept.
PRIORITY_INPUTS: Final = ("impact", "urgency")
# Business rules on `state`, as each table's data gives its close and resolve states: entering
# a close state sets `active` false and stamps the close columns; leaving the close states sets
# `active` true again; entering a resolve state stamps the resolve columns.
CLOSE_STAMPS: Final = {"closed_at": "javascript:gs.nowDateTime()",
                       "closed_by": "javascript:gs.getUserID()"}
RESOLVE_STAMPS: Final = {"resolved_at": "javascript:gs.nowDateTime()",
                         "resolved_by": "javascript:gs.getUserID()"}
# Choice: the max_length a column's sys_dictionary row gives when its definition gives none, by
# type (the platform's defaults for new columns of these types); others 40.
MAX_LENGTHS: Final[Mapping[str, str]] = {
    "GUID": "32", "reference": "32", "sys_class_name": "80", "table_name": "80",
    "string": "255", "email": "100", "url": "1024", "document_id": "32", "glide_list": "4000",
    "journal_input": "4000", "journal": "4000", "journal_list": "4000", "html": "65000",
    "xml": "65000", "script": "65000", "conditions": "4000", "password": "255",
    "password2": "255",
}


def max_length(kind: str) -> str:
    """The max_length of a column of this type whose definition gives none."""
    return MAX_LENGTHS.get(kind, "40")


# Choice: with sysparm_input_display_value, a reference is matched on its target's display
# column (case-insensitively), then taken as a sys_id; a value matching neither is left empty.
# A choice label is matched case-insensitively; an unknown one is kept as given.
# Choice: a record entering its approval state asks every member of its assignment group (the
# group's manager when it has no members, the caller when there is no group); the first answer
# decides (a rejected change goes back to New), as the "anyone approves" policy does.
SIGNED_IN_USER_NAME: Final = "admin"
SCRIPT_PREFIX: Final = "javascript:"
CURRENT_USER_EXPRESSION: Final = "javascript:gs.getUserID()"


def sys_id_for(*names: str) -> str:
    """A fixed 32-hex sys_id derived from names, so seed data is the same on every run."""
    return hashlib.md5(":".join(names).encode(), usedforsecurity=False).hexdigest()


# --- Queries -----------------------------------------------------------------------------------

# Dynamic filter options by sys_id (the platform's shipped "Me" and "One of My Groups").
DYNAMIC_FILTERS: Final[Mapping[str, str]] = {
    "90d1921e5f510100a9ad2572f2b477fe": "javascript:gs.getUserID()",
    "d6435e965f510100a9ad2572f2b47744": "javascript:getMyGroups()",
}
# Choice: a query naming a field the table does not have, or with a term the stub cannot read
# (an operator, keyword or `javascript:` value it does not implement), is refused with 400 and
# this message, rather than answered too widely. A stub built with queries="lenient" does what
# the platform does by default with an unknown field (ignores the term, which widens the
# result), and ignores the terms it cannot read too.
UNSUPPORTED_QUERY_MESSAGE: Final = "Query not supported by the stub"
UNSUPPORTED_QUERY_DETAIL: Final = (
    "The stub does not support {problems} in a query on {table}; "
    "StubServiceNow(queries='lenient') ignores such terms as the platform does an unknown field"
)
QUERY_MODES: Final = ("strict", "lenient")
# Choice: in `JOINtable.field=other.field!condition` the condition is the one term after `!`
# (pysnc's form); the terms after it belong to the main query. `,m2m` in an RLQUERY is accepted
# and changes nothing (the related table named is the many-to-many table itself).
# Choice: `=`, `!=`, `IN`, `NOT IN`, the text operators and text orderings compare
# case-insensitively, as the platform's database collation does.
# Choice: `LIKE`, `NOT LIKE`, `STARTSWITH` and `ENDSWITH` on a reference compare its display
# value, and `ORDERBY` on a reference sorts by display value, as list filters do.
# Choice: weeks start on Monday (gs.beginningOfThisWeek()); beginningOfLast7Days() is the start
# of the day seven days ago and endOfLast7Days() the end of today.
# Choice: `RELATIVEGT@<unit>@ago@<n>` compares with exactly n units before the stub's clock
# (minute, hour, dayofweek = day, week, month, quarter, year).

# --- Attachment API ----------------------------------------------------------------------------

ATTACHMENT_TABLE: Final = "sys_attachment"
# Choice: `hash` is the SHA-256 hex digest of the content, as current releases store.
ATTACHMENT_HASH: Final = "sha256"
DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"
# Choice: an upload naming no existing record is refused with 400 and this message.
ATTACHMENT_TARGET_MISSING: Final = (
    "Invalid table or sys_id",
    "The record to attach to does not exist: {table} {sys_id}",
)
MISSING_PARAMETER: Final = "Missing required parameter: {name}"
ATTACHMENT_NO_FILE: Final = (
    "Failed to create the attachment. File part might be missing in the request.",
    None,
)

# --- Batch API ---------------------------------------------------------------------------------

# Choice: response headers are included unless a request sets exclude_response_headers (pysnc
# reads X-Total-Count from a batched list); a request that is malformed or names another batch
# is answered in unserviced_requests.
BATCH_PATHS: Final = ("/api/now/batch", "/api/now/v1/batch")

# --- Aggregate API -----------------------------------------------------------------------------

# Choice: averages are written with 4 decimals, as the documented examples show; a group's
# `groupby_fields` entry is {"field", "value"}, plus "display_value" when sysparm_display_value
# asks for it (with "true", "value" is the display value too). Groups come in value order.
AVERAGE_DECIMALS: Final = 4

# --- Import Set API ----------------------------------------------------------------------------

IMPORT_SET_TABLE: Final = "sys_import_set"
IMPORT_ROW_TABLE: Final = "sys_import_set_row"
# Choice: a staging table without a transform map keeps the row and answers an empty result.

# --- Rate limits -------------------------------------------------------------------------------

# The rule's sys_id goes in X-RateLimit-Rule on every response the rule covers.
RATE_LIMIT_RULE: Final = sys_id_for("sys_rate_limit_rules", "stub")
