"""Core platform records, one TypedDict per table, inheriting as the tables do.

The fields are the columns of the stub's table definitions (`snworker/testing/tables/`), which
a test keeps equal to these. Values are strings on the wire; a reference is a `Reference`, or
its sys_id with `sysparm_exclude_reference_link=true`. Every field is optional (`total=False`):
a record written needs only some, and `sysparm_fields` leaves others out of one read.
"""

from __future__ import annotations

from typing import TypedDict


class Reference(TypedDict):
    """A reference field as the Table API returns it (without sysparm_exclude_reference_link)."""

    link: str
    value: str


class CurrentUser(TypedDict):
    """The signed-in user, as `ServiceNowConnection.current_user` gives it."""

    sys_id: str
    user_name: str
    name: str


class BaseEntity(TypedDict, total=False):
    """Fields every record has."""

    sys_id: str
    sys_class_name: str
    sys_created_on: str
    sys_created_by: str
    sys_updated_on: str
    sys_updated_by: str
    sys_mod_count: str


class Company(BaseEntity, total=False):
    """core_company."""

    name: str
    street: str
    city: str
    state: str
    zip: str
    country: str
    phone: str
    website: str
    notes: str
    stock_symbol: str
    num_employees: str
    parent: Reference | str
    customer: str
    vendor: str
    manufacturer: str


class User(BaseEntity, total=False):
    """sys_user."""

    user_name: str
    first_name: str
    last_name: str
    name: str
    email: str
    title: str
    phone: str
    mobile_phone: str
    department: str
    company: Reference | str
    manager: Reference | str
    location: str
    employee_number: str
    active: str
    locked_out: str
    user_password: str
    password_needs_reset: str
    web_service_access_only: str
    internal_integration_user: str
    vip: str
    time_zone: str
    preferred_language: str
    notification: str
    last_login_time: str


class Contact(User, total=False):
    """customer_contact (extends sys_user)."""

    account: Reference | str


class Group(BaseEntity, total=False):
    """sys_user_group."""

    name: str
    description: str
    manager: Reference | str
    email: str
    active: str
    parent: Reference | str
    default_assignee: Reference | str
    type: str
    exclude_manager: str
    include_members: str


class ConfigurationItem(BaseEntity, total=False):
    """cmdb_ci."""

    name: str
    short_description: str
    asset_tag: str
    serial_number: str
    manufacturer: Reference | str
    model_number: str
    category: str
    subcategory: str
    operational_status: str
    install_status: str
    environment: str
    used_for: str
    ip_address: str
    mac_address: str
    fqdn: str
    dns_domain: str
    assigned_to: Reference | str
    managed_by: Reference | str
    owned_by: Reference | str
    support_group: Reference | str
    company: Reference | str
    location: str
    comments: str
    monitor: str
    unverified: str
    discovery_source: str
    first_discovered: str
    last_discovered: str


class Task(BaseEntity, total=False):
    """task."""

    number: str
    task_effective_number: str
    short_description: str
    description: str
    state: str
    impact: str
    urgency: str
    priority: str
    active: str
    approval: str
    assigned_to: Reference | str
    assignment_group: Reference | str
    opened_by: Reference | str
    opened_at: str
    closed_by: Reference | str
    closed_at: str
    close_notes: str
    comments: str
    work_notes: str
    comments_and_work_notes: str
    contact_type: str
    company: Reference | str
    cmdb_ci: Reference | str
    parent: Reference | str
    due_date: str
    expected_start: str
    work_start: str
    work_end: str
    sla_due: str
    activity_due: str
    follow_up: str
    business_duration: str
    calendar_duration: str
    time_worked: str
    escalation: str
    reassignment_count: str
    order: str
    knowledge: str
    made_sla: str
    upon_approval: str
    upon_reject: str
    watch_list: str
    work_notes_list: str
    additional_assignee_list: str
    correlation_id: str
    correlation_display: str
    location: Reference | str
    sys_domain: Reference | str
    sys_domain_path: str


class Incident(Task, total=False):
    """incident (extends task)."""

    caller_id: Reference | str
    category: str
    subcategory: str
    hold_reason: str
    close_code: str
    resolved_by: Reference | str
    resolved_at: str
    reopen_count: str
    severity: str
    problem_id: Reference | str
    rfc: Reference | str
    caused_by: Reference | str
    parent_incident: Reference | str
    child_incidents: str
    business_stc: str
    calendar_stc: str
    incident_state: str
    notify: str
    business_service: Reference | str
    service_offering: Reference | str
    business_impact: str
    origin_table: str
    origin_id: str


class Problem(Task, total=False):
    """problem (extends task)."""

    category: str
    subcategory: str
    known_error: str
    first_reported_by_task: Reference | str
    related_incidents: str
    cause_notes: str
    fix_notes: str
    workaround: str
    resolution_code: str
    duplicate_of: Reference | str
    resolved_by: Reference | str
    resolved_at: str


class ChangeRequest(Task, total=False):
    """change_request (extends task)."""

    type: str
    category: str
    risk: str
    requested_by: Reference | str
    start_date: str
    end_date: str
    justification: str
    implementation_plan: str
    backout_plan: str
    test_plan: str
    risk_impact_analysis: str
    cab_required: str
    on_hold: str
    on_hold_reason: str
    phase: str
    conflict_status: str
    close_code: str


class RequestedItem(Task, total=False):
    """sc_req_item (extends task)."""

    request: Reference | str
    cat_item: Reference | str
    requested_for: Reference | str
    quantity: str
    price: str
    stage: str
    backordered: str
    estimated_delivery: str


class Attachment(BaseEntity, total=False):
    """sys_attachment: a file's record (its bytes come from the Attachment API)."""

    file_name: str
    content_type: str
    size_bytes: str
    size_compressed: str
    compressed: str
    hash: str
    table_name: str
    table_sys_id: str
    state: str
    image_width: str
    image_height: str
    average_image_color: str
    chunk_size_bytes: str
    encryption_context: str


class AttachmentMetadata(Attachment, total=False):
    """An attachment as the Attachment API answers: its record and where to download it."""

    download_link: str


class JournalEntry(BaseEntity, total=False):
    """sys_journal_field: one work note or comment on a record (`element_id`, a sys_id)."""

    element_id: str
    name: str
    element: str
    value: str
