"""Resource names and Azure-style resource ids (SPEC §1)."""

from __future__ import annotations

import re

from mlgrid.errors import invalid

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{3,64}$")
RESOURCE_GROUP_PATTERN = re.compile(r"^[-\w._()]{1,90}$")
#: ``check_resource_group``'s rule as one JSON Schema pattern (it also refuses a final ".").
RESOURCE_GROUP_SCHEMA_PATTERN = r"^[-\w._()]{0,89}[-\w()]$"


def check_name(value: str, field_name: str = "name") -> str:
    """Names are 3–64 characters of ``[A-Za-z0-9-_]``; uniqueness is case-insensitive."""
    if not NAME_PATTERN.match(value):
        raise invalid(field_name, f"{value!r} must be 3-64 characters of letters, digits, '-' and '_'")
    return value


def check_resource_group(value: object, field_name: str = "properties.resourceGroup") -> str:
    if not isinstance(value, str) or not RESOURCE_GROUP_PATTERN.match(value) or value.endswith("."):
        raise invalid(field_name, "must be 1-90 characters of letters, digits, '-', '_', '.', '(' and ')'")
    return value


def topic_resource_id(subscription_id: str, resource_group: str, topic: str) -> str:
    return (
        f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.EventGrid/topics/{topic}"
    )


def workspace_resource_id(subscription_id: str, resource_group: str, workspace: str) -> str:
    return (
        f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{workspace}"
    )


def system_topic_arm_id(subscription_id: str, resource_group: str, workspace: str) -> str:
    """The ARM id of the system topic resource itself (not the ``topic`` field of events)."""
    return (
        f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.EventGrid/systemTopics/{workspace}"
    )
