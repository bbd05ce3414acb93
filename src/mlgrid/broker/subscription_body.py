"""The ARM body of an event subscription (SPEC §4): validate it (writing it back without secrets
is ``subscription_render``).

``parse_subscription_body`` turns a ``PUT``/``PATCH`` body into a ``Subscription`` with every
default applied, or raises an ``InvalidField`` naming the exact path
(``properties.retryPolicy.maxDeliveryAttempts``). ``render_properties`` (in
``subscription_render``) is the opposite
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

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Final

from pydantic import ConfigDict, PrivateAttr, ValidationError, WithJsonSchema, model_validator

from mlgrid.body import (
    DATE_TIME_SCHEMA,
    ArmBody,
    Body,
    Invalid,
    Missing,
    case_insensitive,
    checker,
    echoed,
    members_of,
    openapi_schema,
    parse,
    relay,
    whole,
)
from mlgrid.broker.subscription_render import (
    STORAGE_BLOB,
    merge_secrets,
    redact_connection_url,
    render_properties,
    secrets_of,
)
from mlgrid.delivery.endpoint_safety import ENDPOINT_URL_FIELD, base_url, check_url
from mlgrid.delivery.queue_destinations.properties import (
    NatsJetStreamProperties,
    QueueDestinationProperties,
    RabbitMqProperties,
    RedisStreamProperties,
)
from mlgrid.delivery.signing import validate_signing_secret
from mlgrid.delivery.webhook_request import (
    DELIVERY_ATTRIBUTE_MAPPINGS_SCHEMA,
    parse_delivery_attribute_mappings,
)
from mlgrid.domain.endpoints import ENDPOINT_TYPES, EndpointType, ProvisioningState
from mlgrid.domain.schemas import DELIVERY_SCHEMAS, EventSchema, stored_schema
from mlgrid.domain.subscription import DeliveryAttributeMapping, Subscription
from mlgrid.errors import invalid
from mlgrid.events.timestamps import format_timestamp, parse_timestamp
from mlgrid.filters import EventFilter, parse_filter
from mlgrid.filters.parse import FilterBody

if TYPE_CHECKING:
    from mlgrid.broker.topics import Topic

__all__ = [
    "LIMITS",
    "MAX_LABELS",
    "MAX_LABEL_LENGTH",
    "STORAGE_BLOB",
    "parse_subscription_body",
    "subscription_schema",
]

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

_TLS_VERSIONS: Final = ("1.0", "1.1", "1.2")
_CONTAINER_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


# --- the body's shape (one definition: validation and the OpenAPI schema) ------------------


def _bounded(name: str) -> tuple[Any, ...]:
    """A bounded integer of SPEC §4 (``LIMITS``): null or absent is the default, an integral
    exact decimal (``5.0``) counts as an integer."""
    low, high, default = LIMITS[name]

    def check(raw: object) -> int:
        if raw is None:
            return default
        raw = whole(raw)
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise Invalid(f"must be an integer from {low} to {high}")
        if not low <= raw <= high:
            raise Invalid(f"must be from {low} to {high}, got {raw}")
        return raw

    return checker(check, {"type": ["integer", "null"], "minimum": low, "maximum": high, "default": default})


def _choice_of(choices: Sequence[str], *, required: bool = False) -> tuple[Any, ...]:
    """One of ``choices`` in any letter case, kept in its canonical spelling; null is absent
    (or, when ``required``, the error naming the choices)."""

    def check(raw: object) -> str | None:
        if raw is None:
            if required:
                raise Invalid(f"is required: one of {', '.join(choices)}")
            return None
        if isinstance(raw, str):
            for choice in choices:
                if raw.lower() == choice.lower():
                    return choice
        shown = raw if isinstance(raw, str) else type(raw).__name__
        raise Invalid(f"{str(shown)[:64]!r} is not one of {', '.join(choices)}")

    types = "string" if required else ["string", "null"]
    schema = {"type": types, "pattern": case_insensitive(list(choices)),
              "description": f"one of {', '.join(choices)} (any letter case)"}
    extra: tuple[Any, ...] = (Missing(f"is required: one of {', '.join(choices)}"),) if required else ()
    return (*checker(check, schema), *extra)


def _must_be_null(why: str) -> tuple[Any, ...]:
    def check(raw: object) -> None:
        if raw is not None:
            raise Invalid(f"must be null: {why}")

    return checker(check, {"type": "null", "description": f"accepted only as null: {why}"})


_NO_IDENTITY = "mlgrid delivers without managed identities"
_NO_ENTRA = "mlgrid does not sign webhook requests with Entra ID tokens (use signingSecret)"


def _url_or_echo(schema: dict[str, Any]) -> None:
    schema["anyOf"] = [{"required": ["endpointUrl"]}, {"required": ["endpointBaseUrl"]}]


class WebhookProperties(ArmBody):
    """``destination.properties`` of a ``WebHook`` destination."""

    model_config = ConfigDict(json_schema_extra=_url_or_echo)

    endpoint_url: Annotated[Any, WithJsonSchema(
        {"type": ["string", "null"], "format": "uri", "writeOnly": True,
         "description": "write-only; may be left out when endpointBaseUrl echoes the stored one"}
    )] = None
    endpoint_base_url: Annotated[Any, WithJsonSchema(
        {"type": ["string", "null"], "description": "what a read shows of endpointUrl"}
    )] = None
    max_events_per_batch: Annotated[Any, *_bounded("maxEventsPerBatch")] = None
    preferred_batch_size_in_kilobytes: Annotated[Any, *_bounded("preferredBatchSizeInKilobytes")] = None
    delivery_attribute_mappings: Annotated[Any, WithJsonSchema(DELIVERY_ATTRIBUTE_MAPPINGS_SCHEMA)] = None
    signing_secret: Annotated[Any, WithJsonSchema(
        {"type": ["string", "null"], "pattern": "^whsec_", "writeOnly": True,
         "description": "write-only; omitted keeps the stored one, null removes it"}
    )] = None
    minimum_tls_version_allowed: Annotated[Any, *_choice_of(_TLS_VERSIONS)] = None
    azure_active_directory_tenant_id: Annotated[Any, *_must_be_null(_NO_ENTRA)] = None
    azure_active_directory_application_id_or_uri: Annotated[Any, *_must_be_null(_NO_ENTRA)] = None


class QueueProperties(ArmBody):
    """``destination.properties`` of a ``Queue`` (pull delivery) destination."""

    receive_lock_duration_in_seconds: Annotated[Any, *_bounded("receiveLockDurationInSeconds")] = None
    max_delivery_count: Annotated[Any, *_bounded("maxDeliveryCount")] = None


DESTINATION_PROPERTIES: Final[dict[str, type[ArmBody]]] = {
    EndpointType.WEBHOOK: WebhookProperties,
    EndpointType.QUEUE: QueueProperties,
    EndpointType.REDIS_STREAM: RedisStreamProperties,
    EndpointType.NATS_JETSTREAM: NatsJetStreamProperties,
    EndpointType.RABBITMQ: RabbitMqProperties,
}


def _destination_schema(schema: dict[str, Any]) -> None:
    """One branch per endpoint type, so the schema says which properties go with which."""
    schema["oneOf"] = [
        {"properties": {
            "endpointType": {"pattern": case_insensitive([endpoint_type])},
            "properties": openapi_schema(model)
            if model.model_json_schema().get("required")
            else {"anyOf": [openapi_schema(model), {"type": "null"}]},
        }}
        for endpoint_type, model in DESTINATION_PROPERTIES.items()
    ]


class Destination(ArmBody):
    """``properties.destination``: the endpoint type and that type's properties."""

    model_config = ConfigDict(json_schema_extra=_destination_schema)

    endpoint_type: Annotated[Any, *_choice_of(ENDPOINT_TYPES, required=True)]
    properties: Annotated[Any, WithJsonSchema({"type": ["object", "null"]})] = None

    @model_validator(mode="after")
    def _properties_of_the_type(self) -> Destination:
        model = DESTINATION_PROPERTIES[self.endpoint_type]
        try:
            self._typed = model.model_validate({} if self.properties is None else self.properties)
        except ValidationError as exc:
            raise relay(exc, "properties") from None
        return self

    _typed: Body | None = PrivateAttr(default=None)

    @property
    def typed(self) -> Body:
        """The validated properties, as the model of the endpoint type."""
        assert self._typed is not None
        return self._typed


class RetryPolicy(ArmBody):
    max_delivery_attempts: Annotated[Any, *_bounded("maxDeliveryAttempts")] = None
    event_time_to_live_in_minutes: Annotated[Any, *_bounded("eventTimeToLiveInMinutes")] = None


_CONTAINER_RULE = ("must be 3-63 lowercase letters, digits and single hyphens, starting and ending with a "
                   "letter or digit (Azure's container name rule)")


def _container(raw: object) -> str:
    if not isinstance(raw, str) or not _CONTAINER_NAME.match(raw):
        raise Invalid(_CONTAINER_RULE)
    return raw


def _resource_id(raw: object) -> str | None:
    if raw is not None and not isinstance(raw, str):
        raise Invalid("must be a string (it is not used: dead letters go to this server's blob store)")
    return raw


class DeadLetterProperties(ArmBody):
    blob_container_name: Annotated[Any, *checker(_container, {
        "type": "string", "pattern": _CONTAINER_NAME.pattern, "minLength": 3, "maxLength": 63,
    }), Missing(_CONTAINER_RULE)]
    resource_id: Annotated[Any, *checker(_resource_id, {
        "type": ["string", "null"], "description": "not used: dead letters go to this server's blob store",
    })] = None


def _container_required(schema: dict[str, Any]) -> None:
    schema["required"] = ["endpointType", "properties"]
    schema["properties"]["properties"] = openapi_schema(DeadLetterProperties)


class DeadLetterDestination(ArmBody):
    model_config = ConfigDict(json_schema_extra=_container_required)

    endpoint_type: Annotated[Any, *_choice_of((STORAGE_BLOB,), required=True)]
    properties: Annotated[Any, WithJsonSchema(
        {"anyOf": [openapi_schema(DeadLetterProperties), {"type": "null"}]}
    )] = None

    @model_validator(mode="after")
    def _container_given(self) -> DeadLetterDestination:
        try:
            self._typed = DeadLetterProperties.model_validate(self.properties or {})
        except ValidationError as exc:
            raise relay(exc, "properties") from None
        return self

    _typed: DeadLetterProperties | None = PrivateAttr(default=None)

    @property
    def container(self) -> str:
        assert self._typed is not None
        return str(self._typed.blob_container_name)


def _labels_check(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise Invalid("must be an array of strings")
    if len(raw) > MAX_LABELS:
        raise Invalid(f"at most {MAX_LABELS} labels are allowed")
    for index, label in enumerate(raw):
        if not isinstance(label, str) or len(label) > MAX_LABEL_LENGTH:
            raise Invalid(f"must be a string of at most {MAX_LABEL_LENGTH} characters", at=f"[{index}]")
    return tuple(raw)


def _expiration_shape(raw: object) -> datetime | None:
    if raw is None:
        return None
    moment = parse_timestamp(raw) if isinstance(raw, str) else None
    if moment is None:
        raise Invalid("must be an ISO 8601 date-time, e.g. 2030-01-31T00:00:00Z")
    return moment


class SubscriptionProperties(ArmBody):
    """``properties`` of an event subscription (SPEC §4). Rules that need the topic, the
    stored subscription or the clock are checked by ``parse_subscription_body``."""

    destination: Destination | None = None
    # Validated by ``parse_filter`` (its keys depend on the topic's input schema), shown as its model.
    filter: Annotated[Any, WithJsonSchema({"anyOf": [openapi_schema(FilterBody), {"type": "null"}]})] = None
    event_delivery_schema: Annotated[Any, *_choice_of(DELIVERY_SCHEMAS)] = None
    retry_policy: RetryPolicy | None = None
    dead_letter_destination: DeadLetterDestination | None = None
    expiration_time_utc: Annotated[Any, *checker(
        _expiration_shape, {"anyOf": [DATE_TIME_SCHEMA, {"type": "null"}], "description": "in the future"}
    )] = None
    labels: Annotated[Any, *checker(_labels_check, {
        "type": ["array", "null"], "maxItems": MAX_LABELS,
        "items": {"type": "string", "maxLength": MAX_LABEL_LENGTH},
    })] = None
    # Read-only values of a response, accepted (and ignored) so that a read can be sent back.
    topic: Any = echoed()
    provisioning_state: Any = echoed()
    # Managed-identity delivery (azure-mgmt-eventgrid serialises these): accepted when null.
    delivery_with_resource_identity: Annotated[Any, *_must_be_null(_NO_IDENTITY)] = None
    dead_letter_with_resource_identity: Annotated[Any, *_must_be_null(_NO_IDENTITY)] = None


class SubscriptionBody(ArmBody):
    """An event subscription resource as ``PUT`` takes it (``properties`` is what counts)."""

    properties: Annotated[Any, WithJsonSchema(
        {"anyOf": [openapi_schema(SubscriptionProperties), {"type": "null"}]}
    )] = None
    id: Any = echoed()
    name: Any = echoed()
    type: Any = echoed()
    etag: Any = echoed()
    system_data: Any = echoed()

    @classmethod
    def object_reason(cls) -> str:
        return "must be a JSON object with properties"


# --- small validators -----------------------------------------------------------------------


def _kept_url(url: str, endpoint_type: str, existing: Subscription | None) -> str:
    """The URL is write-only (it may hold a password): a redacted URL sent back (a read
    echoed) keeps the stored one."""
    if existing is not None and existing.endpoint_type == endpoint_type:
        stored = existing.destination_properties.get("url")
        if isinstance(stored, str) and url == redact_connection_url(stored) and url != stored:
            return stored
    return url


# --- parsing --------------------------------------------------------------------------------


def subscription_schema(*, patch: bool) -> dict[str, Any]:
    """The OpenAPI schema of a ``PUT`` (``patch=False``: ``properties.destination`` required) or
    ``PATCH`` body (every property optional: the stored ones stay), from the body models."""
    body = openapi_schema(SubscriptionBody)
    props = openapi_schema(SubscriptionProperties)
    if not patch:
        destination = props["properties"]["destination"]
        props["properties"]["destination"] = next(
            branch for branch in destination.get("anyOf", [destination]) if branch.get("type") != "null"
        )
        props["required"] = ["destination"]
        body["properties"]["properties"] = props
        body["required"] = ["properties"]
    return body


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
    envelope = parse(SubscriptionBody, {} if body is None else body)
    raw_props = {} if envelope.properties is None else envelope.properties
    props = members_of(SubscriptionProperties, raw_props, _PROPS)
    if patch and existing is not None:
        merged = merge_secrets(render_properties(existing), secrets_of(existing))
        merged.update(props)
        props = merged
    parsed = parse(SubscriptionProperties, props, root=_PROPS)
    if parsed.destination is None:
        raise invalid(_DEST, "is required")
    schema = _delivery_schema(parsed.event_delivery_schema, topic, parsed.destination.endpoint_type)
    subscription = _destination(parsed.destination, existing)
    retry = parsed.retry_policy or RetryPolicy()
    expires_at = _expiration(parsed.expiration_time_utc, existing, now, trusted)
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
        max_delivery_attempts=_default("maxDeliveryAttempts", retry.max_delivery_attempts),
        event_ttl_minutes=_default("eventTimeToLiveInMinutes", retry.event_time_to_live_in_minutes),
        dead_letter_container=None
        if parsed.dead_letter_destination is None
        else parsed.dead_letter_destination.container,
        labels=parsed.labels or (),
        expires_at=expires_at,
        provisioning_state=ProvisioningState.CREATING,
        etag=existing.etag if existing is not None else "",
    )


def _default(name: str, value: int | None) -> int:
    """A bounded integer of a model built without validation (absent policy) gets its default."""
    return LIMITS[name][2] if value is None else value


def _delivery_schema(given: str | None, topic: Topic, endpoint_type: str) -> str:
    field = f"{_PROPS}.eventDeliverySchema"
    if given is None:
        # Pull delivery hands out CloudEvents unless asked otherwise (SPEC §7); push delivery
        # keeps the topic's schema, custom-schema events going out as Event Grid events.
        if endpoint_type == EndpointType.QUEUE:
            return EventSchema.CLOUD_EVENTS
        return stored_schema(topic.input_schema)
    schema = given
    if topic.input_schema == EventSchema.CLOUD_EVENTS and schema != EventSchema.CLOUD_EVENTS:
        raise invalid(
            field,
            f"events of a {EventSchema.CLOUD_EVENTS} topic are only delivered as "
            f"{EventSchema.CLOUD_EVENTS}, not {schema}",
        )
    if schema == EventSchema.CUSTOM_INPUT and topic.input_schema != EventSchema.CUSTOM_EVENT:
        raise invalid(field, f"{schema} is only for topics whose input schema is {EventSchema.CUSTOM_EVENT}")
    return schema


def _destination(destination: Destination, existing: Subscription | None) -> Subscription:
    """A blank subscription carrying the destination's fields (the caller fills the rest)."""
    endpoint_type = destination.endpoint_type
    typed = destination.typed
    blank = _blank(endpoint_type)
    if isinstance(typed, WebhookProperties):
        return _webhook(blank, typed, existing)
    if isinstance(typed, QueueProperties):
        return replace(
            blank,
            receive_lock_duration_seconds=_default("receiveLockDurationInSeconds",
                                                   typed.receive_lock_duration_in_seconds),
            max_delivery_count=_default("maxDeliveryCount", typed.max_delivery_count),
        )
    assert isinstance(typed, QueueDestinationProperties)
    target = typed.as_properties()
    target["url"] = _kept_url(target["url"], endpoint_type, existing)
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



def _webhook(blank: Subscription, props: WebhookProperties, existing: Subscription | None) -> Subscription:
    previous = existing if existing is not None and existing.endpoint_type == EndpointType.WEBHOOK else None
    url = props.endpoint_url
    if url is None:
        echoed = props.endpoint_base_url
        if previous is not None and previous.endpoint_url and echoed == base_url(previous.endpoint_url):
            url = previous.endpoint_url
        else:
            raise invalid(ENDPOINT_URL_FIELD, "is required for a WebHook destination")
    check_url(url)
    assert isinstance(url, str)
    if "signing_secret" not in props.model_fields_set:
        secret = previous.signing_secret if previous is not None else None
    elif props.signing_secret is None:
        secret = None
    else:
        secret = validate_signing_secret(props.signing_secret)
    mappings = parse_delivery_attribute_mappings(
        _with_kept_secret_values(props.delivery_attribute_mappings, previous), _MAPPINGS_FIELD
    )
    return replace(
        blank,
        endpoint_url=url,
        max_events_per_batch=_default("maxEventsPerBatch", props.max_events_per_batch),
        preferred_batch_size_kb=_default(
            "preferredBatchSizeInKilobytes", props.preferred_batch_size_in_kilobytes
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




def _expiration(
    moment: datetime | None, existing: Subscription | None, now: datetime | None, trusted: bool
) -> datetime | None:
    if moment is None:
        return None
    unchanged = existing is not None and existing.expires_at == moment
    if not trusted and not unchanged and now is not None and moment <= now:
        field = f"{_PROPS}.expirationTimeUtc"
        raise invalid(field, f"must be in the future (now is {format_timestamp(now)})")
    return moment
