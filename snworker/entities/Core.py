"""Core platform records. Field values are strings on the wire."""

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
    sys_created_on: str
    sys_updated_on: str
    sys_class_name: str


class User(BaseEntity, total=False):
    """sys_user."""

    user_name: str
    name: str
    first_name: str
    last_name: str
    email: str
    active: str


class Contact(User, total=False):
    """customer_contact (extends sys_user)."""

    account: Reference | str


class Task(BaseEntity, total=False):
    """task."""

    number: str
    short_description: str
    description: str
    state: str
    priority: str
    assigned_to: Reference | str
    comments: str


class Incident(Task, total=False):
    """incident (extends task)."""

    caller_id: Reference | str
    category: str
    impact: str
    urgency: str
