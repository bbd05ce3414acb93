"""The broker half of the Python SDK: topics, event subscriptions, publishing and reading events.

Results are the server's JSON as plain ``dict``/``list`` values, shaped like Azure's ARM
resources (SPEC §4 and §12), so code written against Azure's documents reads them unchanged:

* a topic: ``{"id", "name", "type", "etag", "properties": {"endpoint", "inputSchema",
  "resourceGroup", "retentionInDays", "provisioningState", ...}}``;
* an event subscription: ``{"id", "name", "type", "etag", "properties": {"topic",
  "provisioningState", "destination", "filter", "eventDeliverySchema", "retryPolicy",
  "deadLetterDestination", "labels", "expirationTimeUtc"}}``;
* an event: the stored envelope (Event Grid or CloudEvents), with JSON numbers read exactly
  (fractions as :class:`decimal.Decimal`, as the filters compare them).

Every failure raises :class:`~mlgrid.client.http.ApiError` with the server's code and message;
a source that names no topic raises :class:`ValueError` before any request is made.

A *source* names what a subscription hangs off, in any of the forms ``az`` users paste:
``mytopic`` (a custom topic), ``/topics/mytopic``, ``/systemTopics/ws``, ``/workspaces/ws`` or an
Azure resource id (``/subscriptions/…/providers/Microsoft.EventGrid/topics/t``,
``…/Microsoft.EventGrid/systemTopics/ws``, ``…/Microsoft.MachineLearningServices/workspaces/ws``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlsplit

from mlgrid.client.filters import AdvancedFilter, filter_json
from mlgrid.client.http import Transport
from mlgrid.client.records import (
    DeadLetterRecord,
    DeliveryRecord,
    EventSubscription,
    FilterVerdict,
    RedeliveryResult,
    ReplayResult,
    TopicInfo,
    TopicKeys,
)
from mlgrid.domain.endpoints import ENDPOINT_TYPES
from mlgrid.domain.schemas import DELIVERY_SCHEMAS, INPUT_SCHEMAS
from mlgrid.events.jsoncodec import dumps

__all__ = [
    "EventsClient",
    "Source",
    "SubscriptionsClient",
    "TopicsClient",
    "delivery_attribute_mapping",
    "event_subscription_properties",
    "input_schema_mapping",
    "parse_source",
]

MAPPED_FIELDS: Final = ("id", "topic", "eventTime", "eventType", "subject", "dataVersion")
CLOUD_EVENTS_BATCH: Final = "application/cloudevents-batch+json; charset=utf-8"

Records = list[dict[str, Any]]  # a list of JSON objects (an alias: the clients have a ``list`` method)
Topics = list[TopicInfo]
EventSubscriptions = list[EventSubscription]
Deliveries = list[DeliveryRecord]
DeadLetters = list[DeadLetterRecord]

_KINDS: Final = {"topics": "topics", "systemtopics": "systemTopics", "workspaces": "workspaces"}
_ARM_KINDS: Final = {
    ("microsoft.eventgrid", "topics"): "topics",
    ("microsoft.eventgrid", "systemtopics"): "systemTopics",
    ("microsoft.machinelearningservices", "workspaces"): "workspaces",
}


def canonical_choice(value: str, choices: Sequence[str], what: str) -> str:
    """``value`` spelled as in ``choices`` (letter case ignored), or ``ValueError``."""
    for choice in choices:
        if choice.lower() == value.lower():
            return choice
    raise ValueError(f"{value!r} is not a valid {what}; expected one of {', '.join(choices)}")


# ---------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class Source:
    """What an event subscription hangs off: a custom topic, a system topic or a workspace."""

    kind: str  # "topics" | "systemTopics" | "workspaces"
    name: str

    @property
    def path(self) -> str:
        """The REST prefix: ``/topics/t``, ``/systemTopics/ws`` or ``/workspaces/ws``."""
        return f"/{self.kind}/{quote(self.name, safe='')}"

    @property
    def events_path(self) -> str:
        """Retained events live on the topic; a workspace's are on its system topic."""
        kind = "topics" if self.kind == "topics" else "systemTopics"
        return f"/{kind}/{quote(self.name, safe='')}/events"

    def subscription_path(self, name: str | None = None) -> str:
        base = f"{self.path}/eventSubscriptions"
        return base if name is None else f"{base}/{quote(name, safe='')}"


def parse_source(source: str | Source) -> Source:
    """Read a source in any accepted form (see the module docstring); ``ValueError`` otherwise."""
    if isinstance(source, Source):
        return source
    text = source.strip()
    problem = (
        f"{source!r} is not a topic name, /topics/<t>, /systemTopics/<ws>, /workspaces/<ws> or an "
        "Azure resource id of a topic or workspace"
    )
    if not text:
        raise ValueError(problem)
    if "/" not in text:
        return Source("topics", text)
    segments = text.strip("/").split("/")
    if any(not segment for segment in segments):
        raise ValueError(problem)
    lowered = [segment.lower() for segment in segments]
    if len(segments) == 2 and lowered[0] in _KINDS:
        return Source(_KINDS[lowered[0]], segments[1])
    if lowered[0] == "subscriptions" and "providers" in lowered:
        at = lowered.index("providers")
        if len(segments) == at + 4:
            kind = _ARM_KINDS.get((lowered[at + 1], lowered[at + 2]))
            if kind is not None:
                return Source(kind, segments[at + 3])
    raise ValueError(problem)


# ---------------------------------------------------------------------------------------------
# Request bodies


def input_schema_mapping(
    fields: Mapping[str, str] | None = None, default_values: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Azure's ``inputSchemaMapping`` JSON from ``field -> sourceField`` and ``field -> default``.

    Field names are matched ignoring case (``eventtype`` is ``eventType``), as ``az``'s
    ``--input-mapping-fields`` and ``--input-mapping-default-values`` write them.
    """
    properties: dict[str, dict[str, str]] = {}
    for source, key in ((fields or {}, "sourceField"), (default_values or {}, "defaultValue")):
        for name, value in source.items():
            canonical = canonical_choice(name, MAPPED_FIELDS, "mapped field")
            properties.setdefault(canonical, {})[key] = value
    return {"mappingType": "Json", "properties": properties}


def delivery_attribute_mapping(name: str, kind: str, value: str, is_secret: bool = False) -> dict[str, Any]:
    """One ``deliveryAttributeMappings`` entry: ``Static`` (a value) or ``Dynamic`` (an event path)."""
    canonical = canonical_choice(kind, ("Static", "Dynamic"), "delivery attribute mapping type")
    if canonical == "Static":
        return {"name": name, "type": "Static", "properties": {"value": value, "isSecret": is_secret}}
    if is_secret:
        raise ValueError("a Dynamic delivery attribute mapping cannot be secret")
    return {"name": name, "type": "Dynamic", "properties": {"sourceField": value}}


def event_subscription_properties(
    *,
    endpoint: str | None = None,
    endpoint_type: str | None = None,
    included_event_types: Sequence[str] | None = None,
    subject_begins_with: str | None = None,
    subject_ends_with: str | None = None,
    subject_case_sensitive: bool | None = None,
    advanced_filters: Sequence[AdvancedFilter | Mapping[str, Any]] | None = None,
    enable_advanced_filtering_on_arrays: bool | None = None,
    event_delivery_schema: str | None = None,
    max_delivery_attempts: int | None = None,
    event_ttl: int | None = None,
    deadletter_container: str | None = None,
    delivery_attribute_mappings: Sequence[Mapping[str, Any]] | None = None,
    labels: Sequence[str] | None = None,
    expiration: datetime | str | None = None,
    max_events_per_batch: int | None = None,
    preferred_batch_size_in_kilobytes: int | None = None,
    destination_properties: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``properties`` of an event subscription body, holding only the arguments given.

    ``None`` leaves a field out, so the same function builds a create body (the server fills
    defaults) and the changes of an update (``SubscriptionsClient.update`` keeps the rest).
    ``endpoint`` is the webhook URL, or the ``url`` of a Redis/NATS/RabbitMQ destination; other
    destination fields (``stream``, ``subject``, ``exchange``, ``routingKey``,
    ``receiveLockDurationInSeconds``, ``maxDeliveryCount``, ``signingSecret``) go in
    ``destination_properties``. ``advanced_filters`` are JSON objects or the filter objects of
    :mod:`mlgrid.client.filters` (``StringIn("data.ModelTags.key1", ["value1"])``).
    ``event_ttl`` is in minutes. ``deadletter_container`` is a blob
    container name.
    """
    properties: dict[str, Any] = {}
    destination: dict[str, Any] = {}
    kind = None if endpoint_type is None else canonical_choice(endpoint_type, ENDPOINT_TYPES, "endpoint type")
    if endpoint is not None:
        destination["endpointUrl" if kind in (None, "WebHook") else "url"] = endpoint
    if max_events_per_batch is not None:
        destination["maxEventsPerBatch"] = max_events_per_batch
    if preferred_batch_size_in_kilobytes is not None:
        destination["preferredBatchSizeInKilobytes"] = preferred_batch_size_in_kilobytes
    if delivery_attribute_mappings is not None:
        destination["deliveryAttributeMappings"] = [dict(m) for m in delivery_attribute_mappings]
    destination.update(destination_properties or {})
    if kind is not None or destination:
        # No endpointType when none was given: create() means WebHook, update() keeps the type.
        properties["destination"] = {"properties": destination}
        if kind is not None:
            properties["destination"] = {"endpointType": kind, "properties": destination}

    event_filter: dict[str, Any] = {}
    if included_event_types is not None:
        event_filter["includedEventTypes"] = list(included_event_types)
    if subject_begins_with is not None:
        event_filter["subjectBeginsWith"] = subject_begins_with
    if subject_ends_with is not None:
        event_filter["subjectEndsWith"] = subject_ends_with
    if subject_case_sensitive is not None:
        event_filter["isSubjectCaseSensitive"] = subject_case_sensitive
    if enable_advanced_filtering_on_arrays is not None:
        event_filter["enableAdvancedFilteringOnArrays"] = enable_advanced_filtering_on_arrays
    if advanced_filters is not None:
        event_filter["advancedFilters"] = [filter_json(f) for f in advanced_filters]
    if event_filter:
        properties["filter"] = event_filter

    if event_delivery_schema is not None:
        properties["eventDeliverySchema"] = canonical_choice(
            event_delivery_schema, DELIVERY_SCHEMAS, "event delivery schema"
        )
    retry: dict[str, int] = {}
    if max_delivery_attempts is not None:
        retry["maxDeliveryAttempts"] = max_delivery_attempts
    if event_ttl is not None:
        retry["eventTimeToLiveInMinutes"] = event_ttl
    if retry:
        properties["retryPolicy"] = retry
    if deadletter_container is not None:
        properties["deadLetterDestination"] = {
            "endpointType": "StorageBlob",
            "properties": {"blobContainerName": deadletter_container},
        }
    if labels is not None:
        properties["labels"] = list(labels)
    if expiration is not None:
        properties["expirationTimeUtc"] = _iso(expiration)
    return properties


def _iso(moment: datetime | str) -> str:
    if isinstance(moment, str):
        return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def merge_subscription_update(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The ``PATCH`` properties that apply ``changes`` on top of the ``current`` properties.

    The server replaces each top-level property it is sent (Azure's update semantics), so
    changing one field of ``filter``, ``retryPolicy`` or ``destination`` means sending the
    whole object with that field changed - what ``az eventgrid event-subscription update``
    does. A destination of another ``endpointType`` replaces the current one; a new
    ``endpointUrl`` replaces the ``endpointBaseUrl`` a read returns. Other properties
    (``labels``, ``expirationTimeUtc``...) are sent as given.
    """
    merged: dict[str, Any] = {}
    for key, value in changes.items():
        existing = current.get(key)
        if key in ("filter", "retryPolicy") and isinstance(existing, Mapping) and isinstance(value, Mapping):
            merged[key] = {**existing, **value}
        elif key == "destination" and isinstance(existing, Mapping) and isinstance(value, Mapping):
            kind = value.get("endpointType") or existing.get("endpointType")
            props = dict(value.get("properties") or {})
            if kind == existing.get("endpointType"):
                props = {**(existing.get("properties") or {}), **props}
                if "endpointUrl" in value.get("properties", {}):
                    props.pop("endpointBaseUrl", None)
            merged[key] = {"endpointType": kind, "properties": props}
        else:
            merged[key] = value
    return merged


# ---------------------------------------------------------------------------------------------
# Topics


class TopicsClient:
    """Custom topics: ``client.topics.create("orders")``, ``keys``, ``regenerate_key``..."""

    def __init__(self, http: Transport) -> None:
        self._http = http

    @staticmethod
    def _path(name: str) -> str:
        source = parse_source(name)
        if source.kind != "topics":
            raise ValueError(f"{name!r} is not a custom topic")
        return source.path

    def create(
        self,
        name: str,
        input_schema: str | None = None,
        resource_group: str | None = None,
        retention_in_days: int | None = None,
        input_schema_mapping: Mapping[str, Any] | None = None,
    ) -> TopicInfo:
        """Create (or replace) a custom topic; ``None`` arguments take the server's defaults
        (``EventGridSchema``, resource group ``default``, 1 day of retention)."""
        properties: dict[str, Any] = {}
        if input_schema is not None:
            properties["inputSchema"] = canonical_choice(input_schema, INPUT_SCHEMAS, "input schema")
        if resource_group is not None:
            properties["resourceGroup"] = resource_group
        if retention_in_days is not None:
            properties["retentionInDays"] = retention_in_days
        if input_schema_mapping is not None:
            properties["inputSchemaMapping"] = dict(input_schema_mapping)
        return TopicInfo.from_json(self._http.call("PUT", self._path(name), {"properties": properties}))

    def get(self, name: str) -> TopicInfo:
        return TopicInfo.from_json(self._http.call("GET", self._path(name)))

    def list(self) -> Topics:
        body = self._http.call("GET", "/topics") or {}
        return [TopicInfo.from_json(t) for t in body.get("value", [])]

    def delete(self, name: str) -> None:
        """Delete the topic with its subscriptions and retained events."""
        self._http.request("DELETE", self._path(name))

    def keys(self, name: str) -> TopicKeys:
        """``key1`` and ``key2``: the keys publishers put in ``aeg-sas-key``."""
        return TopicKeys.from_json(self._http.call("POST", self._path(name) + "/listKeys"))

    def regenerate_key(self, name: str, key_name: str) -> TopicKeys:
        """Replace ``key1`` or ``key2``; returns both keys."""
        return TopicKeys.from_json(
            self._http.call("POST", self._path(name) + "/regenerateKey", {"keyName": key_name})
        )


# ---------------------------------------------------------------------------------------------
# Event subscriptions


class SubscriptionsClient:
    """Event subscriptions on a custom topic, a system topic or a workspace (see ``parse_source``).

    ``create``/``update`` take the ``properties`` of the ARM body; build them with
    :func:`event_subscription_properties` or pass JSON copied from Azure's documents.
    """

    def __init__(self, http: Transport) -> None:
        self._http = http

    def create(self, source: str | Source, name: str, properties: Mapping[str, Any]) -> EventSubscription:
        """Create or replace (``PUT``); a destination without ``endpointType`` is a WebHook.
        A webhook is validated before anything is created, so this can take a while."""
        body = dict(properties)
        destination = body.get("destination")
        if isinstance(destination, Mapping) and "endpointType" not in destination:
            body["destination"] = {"endpointType": "WebHook", **destination}
        path = parse_source(source).subscription_path(name)
        return EventSubscription.from_json(self._http.call("PUT", path, {"properties": body}, exact=True))

    def update(
        self, source: str | Source, name: str, properties: Mapping[str, Any], *, merge: bool = True
    ) -> EventSubscription:
        """Change the given properties (``PATCH``), keeping everything else.

        With ``merge`` (the default) the current subscription is read first so that a change
        to one field of ``filter``, ``retryPolicy`` or ``destination`` keeps the object's other
        fields (see :func:`merge_subscription_update`); ``merge=False`` sends ``properties``
        as they are, replacing each top-level property given.
        """
        changes = dict(properties)
        if merge:
            current = self.get(source, name).properties
            changes = merge_subscription_update(current, changes)
        path = parse_source(source).subscription_path(name)
        answer = self._http.call("PATCH", path, {"properties": changes}, exact=True)
        return EventSubscription.from_json(answer)

    def get(self, source: str | Source, name: str) -> EventSubscription:
        path = parse_source(source).subscription_path(name)
        return EventSubscription.from_json(self._http.call("GET", path, exact=True))

    def list(self, source: str | Source) -> EventSubscriptions:
        pages = self._http.pages(parse_source(source).subscription_path(), {}, exact=True)
        return [EventSubscription.from_json(s) for s in pages]

    def delete(self, source: str | Source, name: str) -> None:
        self._http.request("DELETE", parse_source(source).subscription_path(name))

    def full_url(self, source: str | Source, name: str) -> str:
        """The webhook URL with its query string (reads only return ``endpointBaseUrl``)."""
        path = parse_source(source).subscription_path(name) + "/getFullUrl"
        body = self._http.call("POST", path, exact=True)
        return str(body["endpointUrl"])

    def test(
        self, source: str | Source, name: str, event: Mapping[str, Any],
        event_filter: Mapping[str, Any] | None = None,
    ) -> FilterVerdict:
        """Would the subscription receive ``event``, and why: ``matches`` and one entry per
        condition of its filter (or of ``event_filter``, a filter being written)."""
        body: dict[str, Any] = {"event": dict(event)}
        if event_filter is not None:
            body["filter"] = dict(event_filter)
        path = parse_source(source).subscription_path(name) + ":test"
        return FilterVerdict.from_json(self._http.call("POST", path, body) or {})

    def deliveries(self, source: str | Source, name: str, state: str | None = None) -> Deliveries:
        """Delivery records, optionally only ``pending``/``delivered``/``deadLettered``/``dropped``."""
        path = parse_source(source).subscription_path(name) + "/deliveries"
        return [DeliveryRecord.from_json(d) for d in self._http.pages(path, {"state": state}, exact=True)]

    def delivery(self, source: str | Source, name: str, delivery_id: int) -> dict[str, Any]:
        """One delivery with ``attemptHistory``: every recorded attempt (outcome, status,
        error, time, duration, what the endpoint answered), oldest first."""
        path = parse_source(source).subscription_path(name) + f"/deliveries/{int(delivery_id)}"
        result: dict[str, Any] = self._http.call("GET", path, exact=True)
        return result

    def dead_letter_delivery(self, source: str | Source, name: str, delivery_id: int) -> dict[str, Any]:
        """End a pending delivery now: dead-lettered (``DeadLetteredByOperator``), or dropped
        when the subscription has no dead-letter destination; 409 once it has ended."""
        path = parse_source(source).subscription_path(name) + f"/deliveries/{int(delivery_id)}:deadLetter"
        result: dict[str, Any] = self._http.call("POST", path, None, exact=True)
        return result

    def dead_letters(self, source: str | Source, name: str) -> DeadLetters:
        """Dead-letter records: the event plus ``deadLetterReason``, ``deliveryAttempts``..."""
        path = parse_source(source).subscription_path(name) + "/deadLetters"
        return [DeadLetterRecord.from_json(d) for d in self._http.pages(path, {}, exact=True)]

    def redeliver(
        self, source: str | Source, name: str, ids: Sequence[str] | None = None
    ) -> RedeliveryResult:
        """Deliver dead-lettered events again: the given ids, or all of them."""
        path = parse_source(source).subscription_path(name) + "/deadLetters/redeliver"
        body: dict[str, Any] = {} if ids is None else {"ids": list(ids)}
        return RedeliveryResult.from_json(self._http.call("POST", path, body, exact=True) or {})

    def replay(
        self, source: str | Source, name: str, start: datetime | str, end: datetime | str | None = None
    ) -> ReplayResult:
        """Match and deliver again the retained events published in ``[start, end)``.

        ``end=None`` leaves ``to`` out of the request, so the window ends at the *server's* now
        (a client clock running behind would otherwise miss the latest events).
        """
        path = parse_source(source).subscription_path(name) + "/replay"
        body = {"from": _iso(start)}
        if end is not None:
            body["to"] = _iso(end)
        return ReplayResult.from_json(self._http.call("POST", path, body, exact=True) or {})


# ---------------------------------------------------------------------------------------------
# Events


def is_cloud_event(event: Mapping[str, Any]) -> bool:
    return "specversion" in event


def complete_event(event: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The event with a fresh ``id`` and the current time filled in when missing.

    Only Event Grid (``eventType``) and CloudEvents (``specversion``) envelopes are touched;
    anything else is a custom-schema event and is sent as written.
    """
    result = dict(event)
    moment = _iso(now or datetime.now(UTC))
    if is_cloud_event(result):
        result.setdefault("id", str(uuid.uuid4()))
        result.setdefault("time", moment)
    elif "eventType" in result:
        result.setdefault("id", str(uuid.uuid4()))
        result.setdefault("eventTime", moment)
        result.setdefault("subject", "")
    return result


EventPredicate = Callable[[Mapping[str, Any]], bool]


def event_matcher(
    event_types: Sequence[str] | None = None,
    subject_begins_with: str | None = None,
    subject_ends_with: str | None = None,
) -> EventPredicate:
    """A predicate with the subscription rules of SPEC §5 for type and subject (case-insensitive)."""
    types = {t.lower() for t in event_types or ()}
    prefix = (subject_begins_with or "").lower()
    suffix = (subject_ends_with or "").lower()

    def matches(event: Mapping[str, Any]) -> bool:
        event_type = str(event.get("eventType", event.get("type", ""))).lower()
        if types and "all" not in types and event_type not in types:
            return False
        subject = str(event.get("subject") or "").lower()
        return subject.startswith(prefix) and subject.endswith(suffix)

    return matches


class EventsClient:
    """Publish events to custom topics and read the events a topic retains."""

    def __init__(self, http: Transport, sleep: Callable[[float], None] = time.sleep) -> None:
        self._http = http
        self._sleep = sleep

    def publish(
        self,
        topic: str,
        events: Mapping[str, Any] | Iterable[Mapping[str, Any]],
        key: str | None = None,
        *,
        complete: bool = True,
    ) -> None:
        """Publish one event or a list of them (all Event Grid or all CloudEvents).

        With ``key`` (``key1``/``key2`` of ``client.topics.keys``) the request carries
        ``aeg-sas-key``; without it the client's bearer token (which needs ``DataSender``).
        CloudEvents go to the namespace-style ``:publish`` endpoint, which also accepts them on
        an Event Grid schema topic. ``complete`` fills a missing ``id`` and time.
        """
        source = parse_source(topic)
        if source.kind != "topics":
            raise ValueError("only custom topics accept published events; a workspace publishes to its own")
        batch: Records = [dict(events)] if isinstance(events, Mapping) else [dict(e) for e in events]
        if complete:
            batch = [complete_event(e) for e in batch]
        headers: dict[str, str] = {}
        if key is not None:
            headers["aeg-sas-key"] = key
        if batch and all(is_cloud_event(e) for e in batch):
            headers["Content-Type"] = CLOUD_EVENTS_BATCH
            path = source.path + ":publish"
        else:
            headers["Content-Type"] = "application/json; charset=utf-8"
            path = source.path + "/api/events"
        # Idempotent when every event has its id (SPEC §3): a retry cannot deliver twice.
        with_ids = all(isinstance(e.get("id"), str) and e.get("id") for e in batch)
        self._http.request("POST", path, content=dumps(batch), headers=headers, idempotent=with_ids)

    def list(
        self,
        topic: str | Source,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        event_type: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Retained events, oldest first, published in ``[since, until)``, over every page."""
        params = {
            "since": None if since is None else _iso(since),
            "until": None if until is None else _iso(until),
            "eventType": event_type,
            "top": page_size,
        }
        return self._http.pages(parse_source(topic).events_path, params, exact=True)

    def server_time(self, topic: str | Source) -> datetime:
        """The server's clock (its ``Date`` header), read while checking the topic exists."""
        source = parse_source(topic)
        path = source.path if source.kind != "workspaces" else f"/systemTopics/{quote(source.name, safe='')}"
        response = self._http.request("GET", path)
        header = response.headers.get("date")
        if header:
            try:
                return parsedate_to_datetime(header).astimezone(UTC)
            except (TypeError, ValueError):
                pass
        return datetime.now(UTC)

    def tail(
        self,
        topic: str | Source,
        *,
        since: datetime | str | None = None,
        event_types: Sequence[str] | None = None,
        subject_begins_with: str | None = None,
        subject_ends_with: str | None = None,
        poll_interval: float = 1.0,
        timeout: float | None = None,
        max_events: int | None = None,
        page_size: int = 100,
    ) -> Iterator[dict[str, Any]]:
        """Follow a topic's (or workspace's) events as they are published, like ``tail -f``.

        Starts at ``since`` (default: now, so only events published after the first poll show)
        and polls the retained events with the server's opaque paging cursor, so an event is
        yielded once even when it arrives between two polls. Stops after ``max_events``
        matching events or ``timeout`` seconds, whichever comes first (never, without them).
        A single ``event_types`` entry is filtered by the server; several, and the subject
        filters, here.
        """
        source = parse_source(topic)
        start = self.server_time(source) if since is None else since
        matches = event_matcher(event_types, subject_begins_with, subject_ends_with)
        params: dict[str, Any] = {"since": _iso(start), "top": page_size}
        if event_types and len(event_types) == 1 and event_types[0].lower() != "all":
            params["eventType"] = event_types[0]
        deadline = None if timeout is None else time.monotonic() + timeout
        cursor = _TailCursor(self._http, source.events_path, params)
        if since is None:
            # The Date header has one-second resolution: skip what is already there.
            for _ in cursor.poll():
                pass
        emitted = 0
        while True:
            for event in cursor.poll():
                if matches(event):
                    yield event
                    emitted += 1
                    if max_events is not None and emitted >= max_events:
                        return
            if deadline is not None and time.monotonic() >= deadline:
                return
            pause = poll_interval if deadline is None else min(poll_interval, deadline - time.monotonic())
            if pause > 0:
                self._sleep(pause)


class _TailCursor:
    """Reads a topic's retained events page by page, never returning the same one twice.

    The server only hands out a cursor (``skipToken`` in ``nextLink``) when more events follow,
    so after the last page the position is pinned by asking for that page again with one event
    fewer: its ``nextLink`` points just before the newest event, which the next poll returns
    again and is skipped by id. Events already returned after the current cursor are
    remembered by id, which also covers a page that cannot be pinned (a lone event).
    """

    def __init__(self, http: Transport, path: str, params: Mapping[str, Any]) -> None:
        self._http = http
        self._path = path
        self._params = dict(params)
        self._token: str | None = None
        self._seen: set[str] = set()

    def _page(self, token: str | None, top: int) -> tuple[list[dict[str, Any]], str | None]:
        query = dict(self._params, top=top)
        if token is not None:
            query["skipToken"] = token
        page = self._http.call("GET", self._path, params=query, exact=True) or {}
        next_token = None
        if page.get("nextLink"):
            next_token = dict(parse_qsl(urlsplit(page["nextLink"]).query)).get("skipToken")
        return list(page.get("value", [])), next_token

    def poll(self) -> Iterator[dict[str, Any]]:
        """The events published since the previous poll (every page of them)."""
        top = int(self._params.get("top") or 100)
        while True:
            start = self._token
            events, next_token = self._page(start, top)
            yield from (e for e in events if str(e.get("id")) not in self._seen)
            if next_token is not None:
                self._token, self._seen = next_token, set()
                continue
            pinned = self._page(start, len(events) - 1)[1] if len(events) >= 2 else None
            if pinned is not None:
                self._token, self._seen = pinned, {str(events[-1].get("id"))}
            else:
                self._seen = {str(e.get("id")) for e in events}
            return
