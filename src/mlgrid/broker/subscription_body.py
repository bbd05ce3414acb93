"""The ARM body of an event subscription (SPEC §4): validate it, and write it back without secrets.

``parse_subscription_body`` turns a ``PUT``/``PATCH`` body into a ``Subscription`` with every
default applied, or raises an ``InvalidField`` naming the exact path
(``properties.retryPolicy.maxDeliveryAttempts``). ``render_properties`` is the opposite
direction for reads: the same shape with the write-only values left out (``endpointUrl``
becomes ``endpointBaseUrl``, secret header values and the signing secret disappear, connection
URLs lose their password). ``secrets_of`` is what those reads leave out; the service seals it.

Both directions meet in storage: the stored ``properties`` JSON is ``render_properties`` and a
stored subscription is rebuilt by merging its opened secrets back (``merge_secrets``) and
parsing again with ``trusted=True``, so there is one definition of the body, not two.

Write-only values may be omitted from a body that echoes a read back (GET, edit, PUT):

* ``endpointUrl`` may be left out when ``endpointBaseUrl`` equals the stored URL's base;
* a ``Static`` mapping with ``isSecret: true`` and no ``value`` keeps the stored value of the
  mapping with the same name;
* an omitted ``signingSecret`` keeps the stored one (send ``null`` to remove it);
* a connection ``url`` equal to its redacted read form keeps the stored URL.

Pure: no IO, no clock (``now`` is passed in).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

from mlgrid.delivery.endpoint_safety import ENDPOINT_URL_FIELD, base_url, check_url
from mlgrid.delivery.queue_destinations.properties import (
    parse_nats_jetstream_properties,
    parse_rabbitmq_properties,
    parse_redis_stream_properties,
)
from mlgrid.delivery.signing import validate_signing_secret
from mlgrid.delivery.webhook_request import parse_delivery_attribute_mappings
from mlgrid.domain.endpoints import ENDPOINT_TYPES, EndpointType, ProvisioningState
from mlgrid.domain.schemas import DELIVERY_SCHEMAS, EventSchema, stored_schema
from mlgrid.domain.subscription import DeliveryAttributeMapping, Subscription
from mlgrid.errors import invalid
from mlgrid.events.timestamps import format_timestamp, parse_timestamp
from mlgrid.filters import EventFilter, filter_to_json, parse_filter

if TYPE_CHECKING:
    from mlgrid.broker.topics import Topic

__all__ = [
    "LIMITS",
    "MAX_LABELS",
    "MAX_LABEL_LENGTH",
    "STORAGE_BLOB",
    "merge_secrets",
    "parse_subscription_body",
    "redact_connection_url",
    "render_properties",
    "secrets_of",
]

STORAGE_BLOB: Final = "StorageBlob"

# (minimum, maximum, default) of every bounded integer of SPEC §4.
LIMITS: Final[dict[str, tuple[int, int, int]]] = {
    "maxDeliveryAttempts": (1, 30, 30),
    "eventTimeToLiveInMinutes": (1, 1440, 1440),
    "maxEventsPerBatch": (1, 5000, 1),
    "preferredBatchSizeInKilobytes": (1, 1024, 64),
    "receiveLockDurationInSeconds": (60, 300, 60),
    "maxDeliveryCount": (1, 10, 10),
}
MAX_LABELS: Final = 100
MAX_LABEL_LENGTH: Final = 256

_PROPS = "properties"
_DEST = "properties.destination"
_DEST_PROPS = "properties.destination.properties"
_MAPPINGS_FIELD = f"{_DEST_PROPS}.deliveryAttributeMappings"

_TOP_LEVEL: Final = ("properties", "id", "name", "type", "etag", "systemData")
_PROPERTIES: Final = (
    "destination",
    "filter",
    "eventDeliverySchema",
    "retryPolicy",
    "deadLetterDestination",
    "expirationTimeUtc",
    "labels",
    # Read-only values of a response, accepted (and ignored) so that a read can be sent back.
    "topic",
    "provisioningState",
)
_DESTINATION_PROPERTIES: Final[dict[str, tuple[str, ...]]] = {
    EndpointType.WEBHOOK: (
        "endpointUrl",
        "endpointBaseUrl",
        "maxEventsPerBatch",
        "preferredBatchSizeInKilobytes",
        "deliveryAttributeMappings",
        "signingSecret",
    ),
    EndpointType.QUEUE: ("receiveLockDurationInSeconds", "maxDeliveryCount"),
    EndpointType.REDIS_STREAM: ("url", "stream"),
    EndpointType.NATS_JETSTREAM: ("url", "subject"),
    EndpointType.RABBITMQ: ("url", "exchange", "routingKey"),
}
_CONNECTION_SCHEMES: Final[dict[str, tuple[str, ...]]] = {
    EndpointType.REDIS_STREAM: ("redis", "rediss", "unix"),
    EndpointType.NATS_JETSTREAM: ("nats", "tls", "ws", "wss"),
    EndpointType.RABBITMQ: ("amqp", "amqps"),
}
_QUEUE_PROPERTY_PARSERS: Final[dict[str, Callable[[object, str], dict[str, Any]]]] = {
    EndpointType.REDIS_STREAM: parse_redis_stream_properties,
    EndpointType.NATS_JETSTREAM: parse_nats_jetstream_properties,
    EndpointType.RABBITMQ: parse_rabbitmq_properties,
}
_CONTAINER_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_ABSENT: Final = object()


# --- small validators -----------------------------------------------------------------------


def _object(raw: object, allowed: Sequence[str], field: str) -> dict[str, Any]:
    """The object's members under their canonical names (ARM ignores the case of names).

    Unknown names are a 400 naming the member; ``null`` members are kept (as ``None``) because
    for a few write-only values ``null`` and "absent" mean different things.
    """
    if not isinstance(raw, Mapping):
        raise invalid(field, "must be a JSON object")
    by_lower = {name.lower(): name for name in allowed}
    body: dict[str, Any] = {}
    for name, value in raw.items():
        canonical = by_lower.get(name.lower()) if isinstance(name, str) else None
        path = f"{field}.{name}" if field else str(name)
        if canonical is None:
            raise invalid(path, f"unknown property; expected one of {', '.join(allowed)}")
        if canonical in body:
            raise invalid(path, "given more than once (property names ignore case)")
        body[canonical] = value
    return body


def _bounded_int(raw: object, name: str, field: str) -> int:
    low, high, default = LIMITS[name]
    if raw is None:
        return default
    if isinstance(raw, Decimal) and raw == raw.to_integral_value() and raw.is_finite():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise invalid(field, f"must be an integer from {low} to {high}")
    if not low <= raw <= high:
        raise invalid(field, f"must be from {low} to {high}, got {raw}")
    return raw


def _choice(raw: object, choices: Sequence[str], field: str) -> str:
    """One of ``choices``, matched case-insensitively, returned in its canonical spelling."""
    if raw is None:
        raise invalid(field, f"is required: one of {', '.join(choices)}")
    if isinstance(raw, str):
        for choice in choices:
            if raw.lower() == choice.lower():
                return choice
    shown = raw if isinstance(raw, str) else type(raw).__name__
    raise invalid(field, f"{str(shown)[:64]!r} is not one of {', '.join(choices)}")


def redact_connection_url(url: str) -> str:
    """A connection URL as reads show it: the password masked and the query string dropped."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if has_password else f"{user}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _connection_url(raw: object, endpoint_type: str, existing: Subscription | None) -> str:
    field = f"{_DEST_PROPS}.url"
    schemes = _CONNECTION_SCHEMES[endpoint_type]
    if not isinstance(raw, str) or not raw:
        raise invalid(field, f"is required: a {'/'.join(schemes)} URL")
    if existing is not None and existing.endpoint_type == endpoint_type:
        stored = existing.destination_properties.get("url")
        if isinstance(stored, str) and raw == redact_connection_url(stored) and raw != stored:
            return stored  # a read echoed back: keep the stored URL with its password
    if len(raw) > 2048 or any(ch.isspace() for ch in raw):
        raise invalid(field, "must be a URL of at most 2048 characters without whitespace")
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise invalid(field, f"is not a valid URL ({exc})") from exc
    if parts.scheme.lower() not in schemes:
        raise invalid(field, f"must be a {' or '.join(s + '://' for s in schemes)} URL")
    if parts.scheme.lower() != "unix" and not parts.hostname:
        raise invalid(field, "must name a host")
    return raw


# --- parsing --------------------------------------------------------------------------------


def parse_subscription_body(
    body: object,
    *,
    topic: Topic,
    name: str = "",
    existing: Subscription | None = None,
    patch: bool = False,
    now: datetime | None = None,
    trusted: bool = False,
) -> Subscription:
    """Validate an ARM event subscription body for ``topic``; return the subscription it asks for.

    ``existing`` is the stored subscription (secrets opened) when the body replaces or updates
    one: write-only values omitted from the body are taken from it (see the module docstring),
    and with ``patch`` the body's top-level properties replace the existing ones while the
    others stay (Azure's update semantics; ``destination`` is replaced only when given).
    ``now`` is needed to refuse an ``expirationTimeUtc`` in the past; ``trusted`` skips that
    check when a stored body is decoded. The result has ``id`` and ``etag`` of ``existing``
    (empty for a new one) and provisioning state ``Creating``: the service decides the rest.
    """
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise invalid("body", "must be a JSON object with properties")
    top = _object(body, _TOP_LEVEL, "")
    raw_props = top.get("properties")
    if raw_props is None:
        raw_props = {}
    props = _object(raw_props, _PROPERTIES, _PROPS)
    if patch and existing is not None:
        merged = merge_secrets(render_properties(existing), secrets_of(existing))
        merged.update(props)
        props = merged
    schema = _delivery_schema(props.get("eventDeliverySchema"), topic, props.get("destination"))
    subscription = _destination(props.get("destination"), existing)
    retry = _retry_policy(props.get("retryPolicy"))
    expires_at = _expiration(props.get("expirationTimeUtc"), existing, now, trusted)
    stored = stored_schema(topic.input_schema)
    return replace(
        subscription,
        id=existing.id if existing is not None else "",
        name=existing.name if existing is not None else name,
        topic_key=topic.key,
        topic_name=topic.name,
        topic_kind=topic.kind,
        stored_schema=stored,
        input_schema=topic.input_schema,
        event_filter=parse_filter(props.get("filter"), input_schema=topic.input_schema),
        event_delivery_schema=schema,
        max_delivery_attempts=retry[0],
        event_ttl_minutes=retry[1],
        dead_letter_container=_dead_letter(props.get("deadLetterDestination")),
        labels=_labels(props.get("labels")),
        expires_at=expires_at,
        provisioning_state=ProvisioningState.CREATING,
        etag=existing.etag if existing is not None else "",
    )


def _endpoint_type_of(raw_destination: object) -> str | None:
    if isinstance(raw_destination, Mapping):
        for key, value in raw_destination.items():
            if isinstance(key, str) and key.lower() == "endpointtype" and isinstance(value, str):
                for known in ENDPOINT_TYPES:
                    if known.lower() == value.lower():
                        return known
    return None


def _delivery_schema(raw: object, topic: Topic, raw_destination: object) -> str:
    field = f"{_PROPS}.eventDeliverySchema"
    if raw is None:
        # Pull delivery hands out CloudEvents unless asked otherwise (SPEC §7); push delivery
        # keeps the topic's schema, custom-schema events going out as Event Grid events.
        if _endpoint_type_of(raw_destination) == EndpointType.QUEUE:
            return EventSchema.CLOUD_EVENTS
        return stored_schema(topic.input_schema)
    schema = _choice(raw, DELIVERY_SCHEMAS, field)
    if topic.input_schema == EventSchema.CLOUD_EVENTS and schema != EventSchema.CLOUD_EVENTS:
        raise invalid(
            field,
            f"events of a {EventSchema.CLOUD_EVENTS} topic are only delivered as "
            f"{EventSchema.CLOUD_EVENTS}, not {schema}",
        )
    if schema == EventSchema.CUSTOM_INPUT and topic.input_schema != EventSchema.CUSTOM_EVENT:
        raise invalid(field, f"{schema} is only for topics whose input schema is {EventSchema.CUSTOM_EVENT}")
    return schema


def _destination(raw: object, existing: Subscription | None) -> Subscription:
    """A blank subscription carrying the destination's fields (the caller fills the rest)."""
    if raw is None:
        raise invalid(_DEST, "is required")
    dest = _object(raw, ("endpointType", "properties"), _DEST)
    endpoint_type = _choice(dest.get("endpointType"), ENDPOINT_TYPES, f"{_DEST}.endpointType")
    raw_props = dest.get("properties")
    if raw_props is None:
        raw_props = {}
    props = _object(raw_props, _DESTINATION_PROPERTIES[endpoint_type], _DEST_PROPS)
    blank = _blank(endpoint_type)
    if endpoint_type == EndpointType.WEBHOOK:
        return _webhook(blank, props, existing)
    if endpoint_type == EndpointType.QUEUE:
        return replace(
            blank,
            receive_lock_duration_seconds=_bounded_int(
                props.get("receiveLockDurationInSeconds"),
                "receiveLockDurationInSeconds",
                f"{_DEST_PROPS}.receiveLockDurationInSeconds",
            ),
            max_delivery_count=_bounded_int(
                props.get("maxDeliveryCount"), "maxDeliveryCount", f"{_DEST_PROPS}.maxDeliveryCount"
            ),
        )
    # The URL is write-only (it may hold a password): a redacted URL sent back keeps the stored one.
    url = _connection_url(props.get("url"), endpoint_type, existing)
    parse_properties = _QUEUE_PROPERTY_PARSERS[endpoint_type]
    target: dict[str, Any] = parse_properties({**props, "url": url}, _DEST_PROPS)
    return replace(blank, destination_properties=target)


def _blank(endpoint_type: str) -> Subscription:
    return Subscription(
        id="",
        name="",
        topic_key="",
        topic_name="",
        topic_kind="",
        stored_schema=EventSchema.EVENT_GRID,
        input_schema=EventSchema.EVENT_GRID,
        endpoint_type=endpoint_type,
        event_filter=EventFilter(),
        event_delivery_schema=EventSchema.EVENT_GRID,
    )


def _webhook(blank: Subscription, props: dict[str, Any], existing: Subscription | None) -> Subscription:
    previous = existing if existing is not None and existing.endpoint_type == EndpointType.WEBHOOK else None
    url = props.get("endpointUrl")
    if url is None:
        echoed = props.get("endpointBaseUrl")
        if previous is not None and previous.endpoint_url and echoed == base_url(previous.endpoint_url):
            url = previous.endpoint_url
        else:
            raise invalid(ENDPOINT_URL_FIELD, "is required for a WebHook destination")
    check_url(url)
    assert isinstance(url, str)
    signing_secret = props.get("signingSecret", _ABSENT)
    if signing_secret is _ABSENT:
        secret = previous.signing_secret if previous is not None else None
    elif signing_secret is None:
        secret = None
    else:
        secret = validate_signing_secret(signing_secret)
    mappings = parse_delivery_attribute_mappings(
        _with_kept_secret_values(props.get("deliveryAttributeMappings"), previous), _MAPPINGS_FIELD
    )
    return replace(
        blank,
        endpoint_url=url,
        max_events_per_batch=_bounded_int(
            props.get("maxEventsPerBatch"), "maxEventsPerBatch", f"{_DEST_PROPS}.maxEventsPerBatch"
        ),
        preferred_batch_size_kb=_bounded_int(
            props.get("preferredBatchSizeInKilobytes"),
            "preferredBatchSizeInKilobytes",
            f"{_DEST_PROPS}.preferredBatchSizeInKilobytes",
        ),
        delivery_attribute_mappings=tuple(_mapping(m) for m in mappings),
        signing_secret=secret,
    )


def _with_kept_secret_values(raw: object, previous: Subscription | None) -> object:
    """Fill in the value of secret Static mappings a read echoed back without it."""
    if not isinstance(raw, list) or previous is None:
        return raw
    stored = {
        m.name.lower(): m.value
        for m in previous.delivery_attribute_mappings
        if m.is_secret and m.value is not None
    }
    if not stored:
        return raw
    result: list[object] = []
    for item in raw:
        if isinstance(item, Mapping) and str(item.get("type", "")).lower() == "static":
            props = item.get("properties")
            name = item.get("name")
            if (
                isinstance(props, Mapping)
                and props.get("isSecret") is True
                and props.get("value") is None
                and isinstance(name, str)
                and name.lower() in stored
            ):
                item = {**item, "properties": {**props, "value": stored[name.lower()]}}
        result.append(item)
    return result


def _mapping(canonical: Mapping[str, Any]) -> DeliveryAttributeMapping:
    props = canonical["properties"]
    if canonical["type"] == "Static":
        return DeliveryAttributeMapping(
            name=canonical["name"], type="Static", value=props["value"], is_secret=bool(props["isSecret"])
        )
    return DeliveryAttributeMapping(name=canonical["name"], type="Dynamic", source_field=props["sourceField"])


def _retry_policy(raw: object) -> tuple[int, int]:
    field = f"{_PROPS}.retryPolicy"
    if raw is None:
        raw = {}
    policy = _object(raw, ("maxDeliveryAttempts", "eventTimeToLiveInMinutes"), field)
    return (
        _bounded_int(
            policy.get("maxDeliveryAttempts"), "maxDeliveryAttempts", f"{field}.maxDeliveryAttempts"
        ),
        _bounded_int(
            policy.get("eventTimeToLiveInMinutes"),
            "eventTimeToLiveInMinutes",
            f"{field}.eventTimeToLiveInMinutes",
        ),
    )


def _dead_letter(raw: object) -> str | None:
    field = f"{_PROPS}.deadLetterDestination"
    if raw is None:
        return None
    dest = _object(raw, ("endpointType", "properties"), field)
    _choice(dest.get("endpointType"), (STORAGE_BLOB,), f"{field}.endpointType")
    props = _object(dest.get("properties") or {}, ("blobContainerName", "resourceId"), f"{field}.properties")
    container = props.get("blobContainerName")
    if not isinstance(container, str) or not _CONTAINER_NAME.match(container):
        raise invalid(
            f"{field}.properties.blobContainerName",
            "must be 3-63 lowercase letters, digits and single hyphens, starting and ending with a "
            "letter or digit (Azure's container name rule)",
        )
    resource_id = props.get("resourceId")
    if resource_id is not None and not isinstance(resource_id, str):
        raise invalid(f"{field}.properties.resourceId", "must be a string (it is not used: dead letters "
                      "go to this server's blob store)")
    return container


def _expiration(
    raw: object, existing: Subscription | None, now: datetime | None, trusted: bool
) -> datetime | None:
    field = f"{_PROPS}.expirationTimeUtc"
    if raw is None:
        return None
    moment = parse_timestamp(raw) if isinstance(raw, str) else None
    if moment is None:
        raise invalid(field, "must be an ISO 8601 date-time, e.g. 2030-01-31T00:00:00Z")
    unchanged = existing is not None and existing.expires_at == moment
    if not trusted and not unchanged and now is not None and moment <= now:
        raise invalid(field, f"must be in the future (now is {format_timestamp(now)})")
    return moment


def _labels(raw: object) -> tuple[str, ...]:
    field = f"{_PROPS}.labels"
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise invalid(field, "must be an array of strings")
    if len(raw) > MAX_LABELS:
        raise invalid(field, f"at most {MAX_LABELS} labels are allowed")
    for index, label in enumerate(raw):
        if not isinstance(label, str) or len(label) > MAX_LABEL_LENGTH:
            raise invalid(f"{field}[{index}]", f"must be a string of at most {MAX_LABEL_LENGTH} characters")
    return tuple(raw)


# --- writing back ---------------------------------------------------------------------------


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
