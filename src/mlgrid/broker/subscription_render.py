"""An event subscription as reads show it (SPEC §4): its ARM ``properties`` without the
write-only values, those values apart (sealed at rest by the service), and the two put back
together into a full body again (what ``subscription_body`` parses when a stored subscription
is re-read). The other half of ``subscription_body``, which validates what comes in."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from mlgrid.delivery.endpoint_safety import base_url
from mlgrid.domain.endpoints import EndpointType
from mlgrid.domain.subscription import DeliveryAttributeMapping, Subscription
from mlgrid.events.timestamps import format_timestamp
from mlgrid.filters import filter_to_json

STORAGE_BLOB: Final = "StorageBlob"


def redact_connection_url(url: str) -> str:
    """A connection URL as reads show it: the password masked and the query string dropped."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if has_password else f"{user}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))



def render_properties(sub: Subscription) -> dict[str, Any]:
    """The ``properties`` of a read, without write-only values (and without ``topic`` and
    ``provisioningState``, which the service adds)."""
    return {
        "destination": _render_destination(sub),
        "filter": filter_to_json(sub.event_filter),
        "eventDeliverySchema": sub.event_delivery_schema,
        "retryPolicy": {
            "maxDeliveryAttempts": sub.max_delivery_attempts,
            "eventTimeToLiveInMinutes": sub.event_ttl_minutes,
        },
        "deadLetterDestination": None
        if sub.dead_letter_container is None
        else {"endpointType": STORAGE_BLOB, "properties": {"blobContainerName": sub.dead_letter_container}},
        "expirationTimeUtc": None if sub.expires_at is None else format_timestamp(sub.expires_at),
        "labels": list(sub.labels),
    }


def _render_destination(sub: Subscription) -> dict[str, Any]:
    props: dict[str, Any]
    if sub.endpoint_type == EndpointType.WEBHOOK:
        props = {
            "endpointBaseUrl": base_url(sub.endpoint_url or ""),
            "maxEventsPerBatch": sub.max_events_per_batch,
            "preferredBatchSizeInKilobytes": sub.preferred_batch_size_kb,
            "deliveryAttributeMappings": [_render_mapping(m) for m in sub.delivery_attribute_mappings],
        }
    elif sub.endpoint_type == EndpointType.QUEUE:
        props = {
            "receiveLockDurationInSeconds": sub.receive_lock_duration_seconds,
            "maxDeliveryCount": sub.max_delivery_count,
        }
    else:
        props = dict(sub.destination_properties)
        props["url"] = redact_connection_url(str(props.get("url", "")))
    return {"endpointType": sub.endpoint_type, "properties": props}


def _render_mapping(m: DeliveryAttributeMapping) -> dict[str, Any]:
    if m.type == "Dynamic":
        return {"name": m.name, "type": "Dynamic", "properties": {"sourceField": m.source_field}}
    if m.is_secret:
        return {"name": m.name, "type": "Static", "properties": {"isSecret": True}}
    return {"name": m.name, "type": "Static", "properties": {"value": m.value, "isSecret": False}}


def secrets_of(sub: Subscription) -> dict[str, Any]:
    """The write-only values ``render_properties`` leaves out, to be sealed at rest."""
    secrets: dict[str, Any] = {}
    if sub.endpoint_url is not None:
        secrets["endpointUrl"] = sub.endpoint_url
    if sub.signing_secret is not None:
        secrets["signingSecret"] = sub.signing_secret
    values = {m.name.lower(): m.value for m in sub.delivery_attribute_mappings if m.is_secret}
    if values:
        secrets["mappingValues"] = values
    url = sub.destination_properties.get("url")
    if isinstance(url, str):
        secrets["url"] = url
    return secrets


def merge_secrets(properties: Mapping[str, Any], secrets: Mapping[str, Any]) -> dict[str, Any]:
    """``properties`` (a rendered read) with the write-only values put back: a full body again."""
    merged = copy.deepcopy(dict(properties))
    destination = merged.get("destination")
    if not isinstance(destination, dict):
        return merged
    props = destination.get("properties")
    if not isinstance(props, dict):
        return merged
    if "endpointUrl" in secrets:
        props["endpointUrl"] = secrets["endpointUrl"]
        props.pop("endpointBaseUrl", None)
    if destination.get("endpointType") == EndpointType.WEBHOOK:
        # Explicit: a stored body without a signing secret must not inherit one when re-parsed.
        props["signingSecret"] = secrets.get("signingSecret")
    if "url" in secrets:
        props["url"] = secrets["url"]
    values = secrets.get("mappingValues") or {}
    for mapping in props.get("deliveryAttributeMappings") or []:
        inner = mapping.get("properties") if isinstance(mapping, dict) else None
        name = mapping.get("name") if isinstance(mapping, dict) else None
        if (
            isinstance(inner, dict)
            and inner.get("isSecret") is True
            and isinstance(name, str)
            and name.lower() in values
        ):
            inner["value"] = values[name.lower()]
    return merged
