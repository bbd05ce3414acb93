"""The exact HTTP request a webhook receives (SPEC §6.1), built without any IO.

``build_webhook_request`` turns a batch of events (already in the subscription's delivery
schema) into headers and body bytes; the dispatcher only POSTs them. Keeping it pure means
the wire format (content types, ``aeg-*`` headers, delivery attributes, Standard Webhooks
signature) is tested byte for byte without a server.

``parse_delivery_attribute_mappings`` validates a subscription's
``deliveryAttributeMappings`` when it is created or updated, so that building a request
later cannot fail on them.

Numbers stay exact: events are parsed with ``Decimal`` for floats (filters compare them
exactly, SPEC §5), and ``jsoncodec.dumps`` writes a ``Decimal`` back as the very digits it was
read from, so ``0.30000000000000001`` reaches the receiver unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import ConfigDict, PrivateAttr, TypeAdapter, ValidationError, model_validator

from mlgrid.body import Body, Invalid, Missing, as_invalid, case_insensitive, checker, openapi_schema, relay
from mlgrid.delivery.signing import sign
from mlgrid.domain.schemas import EventSchema
from mlgrid.events.jsoncodec import dumps

__all__ = [
    "CLOUD_EVENTS_BATCH_CONTENT_TYPE",
    "CLOUD_EVENTS_CONTENT_TYPE",
    "DELIVERY_ATTRIBUTE_MAPPINGS_SCHEMA",
    "JSON_CONTENT_TYPE",
    "MAX_HEADER_VALUE_BYTES",
    "MAX_MAPPINGS",
    "build_webhook_request",
    "parse_delivery_attribute_mappings",
    "resolve_source_field",
]

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
CLOUD_EVENTS_CONTENT_TYPE = "application/cloudevents+json"
CLOUD_EVENTS_BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"

MAX_MAPPINGS = 10
MAX_HEADER_VALUE_BYTES = 4096
MAX_HEADER_NAME_LENGTH = 256

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Control characters other than horizontal tab (RFC 9110 §5.5): CR/LF would inject headers,
#: and the HTTP client refuses every one of them, so no such value could ever be sent.
_FORBIDDEN_VALUE_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: Headers mlgrid sets (or the HTTP client owns); a mapping may not replace them, or a
#: receiver could no longer tell the format or check the signature.
_RESERVED_HEADER_NAMES = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
_MISSING = object()
_MAPPING_TYPES = ("Static", "Dynamic")


# -- delivery attribute mappings ----------------------------------------------------------


def _header_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise Invalid("must be a non-empty string")
    if len(name) > MAX_HEADER_NAME_LENGTH or not _TOKEN.fullmatch(name):
        raise Invalid(f"{name[:64]!r} is not a valid HTTP header name")
    if name.lower().startswith("aeg-"):
        raise Invalid("header names must not start with 'aeg-'")
    if name.lower() in _RESERVED_HEADER_NAMES:
        raise Invalid(f"{name!r} is set by mlgrid and cannot be mapped")
    return name


def _is_secret(raw: object) -> bool:
    if raw is None:
        return False
    if not isinstance(raw, bool):
        raise Invalid("must be a boolean")
    return raw


def _static_value(value: object) -> str:
    if not isinstance(value, str):
        raise Invalid("must be a string")
    if len(value.encode("utf-8")) > MAX_HEADER_VALUE_BYTES:
        raise Invalid(f"must be at most {MAX_HEADER_VALUE_BYTES} bytes")
    if _FORBIDDEN_VALUE_CHARS.search(value):
        raise Invalid("must not contain line breaks or other control characters")
    return value


def _source_field(source: object) -> str:
    if not isinstance(source, str) or not source.strip():
        raise Invalid("must be a non-empty string")
    if len(source) > MAX_HEADER_VALUE_BYTES:
        raise Invalid("is too long")
    return source.strip()


def _mapping_type(raw: object) -> str:
    if isinstance(raw, str):
        for kind in _MAPPING_TYPES:
            if raw.lower() == kind.lower():
                return kind
    raise Invalid("must be 'Static' or 'Dynamic'")


def _object(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise Invalid("must be an object")
    return raw


class _OpenBody(Body):
    """Mappings always ignored members they do not read (``value`` of a ``Dynamic`` one...)."""

    model_config = ConfigDict(extra="ignore")

    @classmethod
    def object_reason(cls) -> str:
        return "must be an object"


class StaticMappingProperties(_OpenBody):
    """``properties`` of a ``Static`` mapping: a fixed header value, write-only when secret."""

    is_secret: Annotated[Any, *checker(_is_secret, {"type": ["boolean", "null"], "default": False})] = False
    value: Annotated[Any, *checker(_static_value, {
        "type": "string", "maxLength": MAX_HEADER_VALUE_BYTES, "pattern": "^[^\\x00-\\x08\\x0a-\\x1f\\x7f]*$",
        "description": f"at most {MAX_HEADER_VALUE_BYTES} bytes; a read leaves it out when isSecret, and a "
        "body that echoes the read back keeps the stored value",
    }), Missing("must be a string")]


class DynamicMappingProperties(_OpenBody):
    """``properties`` of a ``Dynamic`` mapping: the header's value is read from the event."""

    source_field: Annotated[Any, *checker(_source_field, {
        "type": "string", "maxLength": MAX_HEADER_VALUE_BYTES, "pattern": "\\S",
        "description": "a path into the event, e.g. data.modelName",
    }), Missing("must be a non-empty string")]


_MAPPING_PROPERTIES: dict[str, type[Body]] = {"Static": StaticMappingProperties,
                                              "Dynamic": DynamicMappingProperties}


def _typed_properties(schema: dict[str, Any]) -> None:
    """One branch per mapping type, so the schema says which properties go with which."""
    schema["oneOf"] = [
        {"properties": {"type": {"pattern": case_insensitive([kind])}, "properties": openapi_schema(model)}}
        for kind, model in _MAPPING_PROPERTIES.items()
    ]


class DeliveryAttributeMappingBody(_OpenBody):
    """One delivery attribute mapping: a header ``name`` and where its value comes from."""

    model_config = ConfigDict(json_schema_extra=_typed_properties)

    name: Annotated[Any, *checker(_header_name, {
        "type": "string", "minLength": 1, "maxLength": MAX_HEADER_NAME_LENGTH,
        "pattern": f"^{_TOKEN.pattern}$",
        "description": "an HTTP header name, not aeg-* nor one mlgrid sets",
    }), Missing("must be a non-empty string")]
    type: Annotated[Any, *checker(_mapping_type, {
        "type": "string", "pattern": case_insensitive(_MAPPING_TYPES),
        "description": "Static or Dynamic (any letter case)",
    }), Missing("must be 'Static' or 'Dynamic'")]
    properties: Annotated[Any, *checker(_object, {"type": "object"}), Missing("must be an object")]

    @model_validator(mode="after")
    def _properties_of_the_type(self) -> DeliveryAttributeMappingBody:
        try:
            self._typed = _MAPPING_PROPERTIES[self.type].model_validate(self.properties)
        except ValidationError as exc:
            raise relay(exc, "properties") from None
        return self

    _typed: Body | None = PrivateAttr(default=None)

    def canonical(self) -> dict[str, Any]:
        """``{"name", "type": "Static", "properties": {"value", "isSecret"}}`` or
        ``{"name", "type": "Dynamic", "properties": {"sourceField"}}``."""
        assert self._typed is not None
        return {"name": self.name, "type": self.type, "properties": self._typed.model_dump(by_alias=True)}


def _mappings(raw: object) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise Invalid("must be an array")
    if len(raw) > MAX_MAPPINGS:
        raise Invalid(f"at most {MAX_MAPPINGS} delivery attribute mappings are allowed")
    seen: set[str] = set()
    parsed: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        try:
            mapping = DeliveryAttributeMappingBody.model_validate(item)
        except ValidationError as exc:
            raise relay(exc, f"[{index}]") from None
        if mapping.name.lower() in seen:
            raise Invalid(f"duplicate header name {mapping.name!r}", at=f"[{index}].name")
        seen.add(mapping.name.lower())
        parsed.append(mapping.canonical())
    return parsed


#: The schema of ``deliveryAttributeMappings`` (in the subscription body's), next to its rule.
DELIVERY_ATTRIBUTE_MAPPINGS_SCHEMA: dict[str, Any] = {
    "type": ["array", "null"], "maxItems": MAX_MAPPINGS,
    "items": openapi_schema(DeliveryAttributeMappingBody),
    "description": "HTTP headers added to each delivery; names unique (ignoring case)",
}
_MAPPINGS: TypeAdapter[list[dict[str, Any]]] = TypeAdapter(
    Annotated[Any, *checker(_mappings, DELIVERY_ATTRIBUTE_MAPPINGS_SCHEMA)]
)


def parse_delivery_attribute_mappings(raw: object, field_prefix: str) -> list[dict[str, Any]]:
    """Validate ``deliveryAttributeMappings`` and return them in canonical form.

    Canonical form: ``{"name", "type": "Static", "properties": {"value", "isSecret"}}`` or
    ``{"name", "type": "Dynamic", "properties": {"sourceField"}}``. ``type`` is accepted in
    any case. Rules (SPEC §4): at most 10; names are HTTP header names (tokens), not starting
    with ``aeg-``, unique (case-insensitive), and not one mlgrid sets itself (Content-Type,
    the ``webhook-*`` signature headers, framing headers); static values are strings of at
    most 4,096 bytes without line breaks or other control characters. Each error is an
    ``InvalidField`` naming the exact field, e.g. ``<field_prefix>[3].name``. ``None`` means no mappings.
    """
    if raw is None:
        return []
    try:
        return _MAPPINGS.validate_python(raw)
    except ValidationError as exc:
        raise as_invalid(exc, field_prefix) from None


def _lookup(container: object, key: str) -> Any:
    if not isinstance(container, Mapping):
        return _MISSING
    if key in container:
        return container[key]
    lowered = key.lower()
    for candidate, value in container.items():
        if isinstance(candidate, str) and candidate.lower() == lowered:
            return value
    return _MISSING


def resolve_source_field(event: Mapping[str, Any], source_field: str) -> str | None:
    """The header value a Dynamic mapping takes from ``event``, or ``None`` to omit it.

    ``source_field`` is a dotted path (``data.ModelName``, ``subject``); each segment is
    matched case-insensitively (an exact match wins). A missing path or a JSON null omits
    the header; strings are used as they are, other values as their compact JSON text
    (``true``, ``3.50``, ``{"a":1}``). A value with a line break (or any control character
    but tab) or over 4,096 bytes is omitted too: it cannot be a header, and an event must not inject headers.
    """
    current: Any = event
    for segment in source_field.split("."):
        current = _lookup(current, segment)
        if current is _MISSING:
            return None
    if current is None:
        return None
    text = current if isinstance(current, str) else dumps(current).decode("utf-8")
    if _FORBIDDEN_VALUE_CHARS.search(text) or len(text.encode("utf-8")) > MAX_HEADER_VALUE_BYTES:
        return None
    return text


# -- the request ------------------------------------------------------------------------------


def _data_version(event: Mapping[str, Any], cloud_events: bool) -> str:
    if cloud_events:
        # Event Grid → CloudEvents maps dataVersion to dataschema "#<dataVersion>" (SPEC §2.1).
        schema = event.get("dataschema")
        if isinstance(schema, str) and schema.startswith("#"):
            return schema[1:]
        return ""
    version = event.get("dataVersion", "")
    return "" if version is None else str(version)


def build_webhook_request(
    events: Sequence[Mapping[str, Any]],
    *,
    delivery_schema: str,
    subscription_name: str,
    delivery_count: int,
    mappings: Sequence[Mapping[str, Any]] = (),
    signing_secret: str | None = None,
    now_ts: int,
    batch_id: str | None = None,
    max_events_per_batch: int = 1,
) -> tuple[dict[str, str], bytes]:
    """Headers and body of the POST that delivers ``events`` (in ``delivery_schema``).

    Body. Event Grid and custom schemas: always a JSON array (one event unless batching),
    ``Content-Type: application/json; charset=utf-8``. CloudEvents: a single
    ``application/cloudevents+json`` object when the subscription does not batch
    (``max_events_per_batch == 1``) and an ``application/cloudevents-batch+json`` array when
    it does, *even for a batch of one*: a receiver that configured batching always gets an
    array, so its parsing never depends on how many events happened to be due.

    Headers. ``aeg-event-type: Notification``, ``aeg-subscription-name`` (upper-case),
    ``aeg-delivery-count`` (attempts made before this one), ``aeg-data-version`` (of the
    first event), ``aeg-metadata-version: 1``; then the delivery attribute mappings (Dynamic
    ones resolved from the first event, omitted when missing); then, with a
    ``signing_secret``, ``webhook-id`` (the event id for one event, else ``batch_id``, which
    the caller must keep the same across retries of the batch), ``webhook-timestamp``
    (``now_ts``) and ``webhook-signature`` over the exact body bytes.
    """
    if not events:
        raise ValueError("a webhook request needs at least one event")
    if delivery_count < 0:
        raise ValueError("delivery_count must not be negative")
    cloud_events = delivery_schema.lower() == EventSchema.CLOUD_EVENTS.lower()
    first = events[0]
    if cloud_events and len(events) == 1 and max_events_per_batch <= 1:
        body = dumps(first)
        content_type = CLOUD_EVENTS_CONTENT_TYPE
    else:
        body = dumps(list(events))
        content_type = CLOUD_EVENTS_BATCH_CONTENT_TYPE if cloud_events else JSON_CONTENT_TYPE

    headers: dict[str, str] = {
        "Content-Type": content_type,
        "aeg-event-type": "Notification",
        "aeg-subscription-name": subscription_name.upper(),
        "aeg-delivery-count": str(delivery_count),
        "aeg-data-version": _data_version(first, cloud_events),
        "aeg-metadata-version": "1",
    }
    taken = {name.lower() for name in headers} | _RESERVED_HEADER_NAMES
    for mapping in mappings:
        name = str(mapping.get("name", ""))
        if not name or name.lower() in taken or name.lower().startswith("aeg-"):
            continue  # validated at creation; never let a stored row override protocol headers
        properties = mapping.get("properties") or {}
        if str(mapping.get("type", "")).lower() == "dynamic":
            value = resolve_source_field(first, str(properties.get("sourceField", "")))
        else:
            raw_value = properties.get("value")
            value = raw_value if isinstance(raw_value, str) else None
        if value is None:
            continue
        headers[name] = value
        taken.add(name.lower())

    if signing_secret:
        event_id = first.get("id")
        if len(events) == 1 and event_id is not None and str(event_id):
            message_id = str(event_id)
        elif batch_id:
            message_id = batch_id
        else:
            raise ValueError("a signed request for several events (or without an id) needs a batch_id")
        headers["webhook-id"] = message_id
        headers["webhook-timestamp"] = str(now_ts)
        headers["webhook-signature"] = sign(signing_secret, message_id, now_ts, body)
    return headers, body
