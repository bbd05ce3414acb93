"""Typed results of the SDK that were JSON dicts: topics, event subscriptions, deliveries,
dead letters, experiments, role assignments, pulled events and lock results. (Workspace
objects have their own records in ``workspace_records.py``.)

Each is a frozen dataclass built by ``from_json`` from one object of the API's answer, with
times as aware ``datetime`` values and the answer itself in ``raw``. They are also read-only
mappings over ``raw``: code written when these calls returned the JSON dict
(``topic["properties"]["endpoint"]``, ``sub.get("etag")``, ``dict(record)``, ``record == {...}``)
keeps working, so the typed attributes could be added without breaking a caller.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlgrid.client.workspace_records import parse_time

__all__ = [
    "DeadLetterRecord",
    "DeliveryRecord",
    "EventSubscription",
    "Experiment",
    "FilterVerdict",
    "JsonRecord",
    "LockResult",
    "PulledEvent",
    "RedeliveryResult",
    "ReplayResult",
    "RoleAssignment",
    "TopicInfo",
    "TopicKeys",
]


@dataclass(frozen=True, eq=False)
class JsonRecord(Mapping[str, Any]):
    """A typed record that reads as the JSON object it came from (``raw``)."""

    raw: dict[str, Any] = field(repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)


def _props(body: Mapping[str, Any]) -> Mapping[str, Any]:
    props = body.get("properties")
    return props if isinstance(props, Mapping) else {}


def _int(value: Any, default: int = 0) -> int:
    return int(value) if value is not None else default


@dataclass(frozen=True, eq=False)
class TopicInfo(JsonRecord):
    """A custom or system topic (``client.topics.get``/``list``/``create``)."""

    name: str
    id: str
    type: str
    etag: str
    endpoint: str
    input_schema: str
    resource_group: str
    retention_in_days: int

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> TopicInfo:
        props = _props(body)
        return cls(
            raw=dict(body),
            name=str(body.get("name", "")),
            id=str(body.get("id", "")),
            type=str(body.get("type", "")),
            etag=str(body.get("etag", "")),
            endpoint=str(props.get("endpoint", "")),
            input_schema=str(props.get("inputSchema", "")),
            resource_group=str(props.get("resourceGroup", "")),
            retention_in_days=_int(props.get("retentionInDays"), 1),
        )


@dataclass(frozen=True, eq=False)
class TopicKeys(JsonRecord):
    """A topic's two access keys (``client.topics.keys``/``regenerate_key``)."""

    key1: str
    key2: str

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> TopicKeys:
        return cls(raw=dict(body), key1=str(body.get("key1", "")), key2=str(body.get("key2", "")))


@dataclass(frozen=True, eq=False)
class EventSubscription(JsonRecord):
    """An event subscription in its ARM shape (``client.subscriptions.get``/``list``/...)."""

    name: str
    id: str
    etag: str
    topic: str
    provisioning_state: str
    endpoint_type: str
    destination: dict[str, Any]
    filter: dict[str, Any]
    event_delivery_schema: str
    properties: dict[str, Any]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> EventSubscription:
        props = dict(_props(body))
        destination = props.get("destination") if isinstance(props.get("destination"), Mapping) else {}
        event_filter = props.get("filter") if isinstance(props.get("filter"), Mapping) else {}
        return cls(
            raw=dict(body),
            name=str(body.get("name", "")),
            id=str(body.get("id", "")),
            etag=str(body.get("etag", "")),
            topic=str(props.get("topic", "")),
            provisioning_state=str(props.get("provisioningState", "")),
            endpoint_type=str((destination or {}).get("endpointType", "")),
            destination=dict(destination or {}),
            filter=dict(event_filter or {}),
            event_delivery_schema=str(props.get("eventDeliverySchema", "")),
            properties=props,
        )


@dataclass(frozen=True, eq=False)
class DeliveryRecord(JsonRecord):
    """One delivery of an event to a subscription (``client.subscriptions.deliveries``)."""

    id: int
    event_id: str
    event_type: str
    state: str
    delivery_attempts: int
    last_delivery_outcome: str | None
    last_http_status_code: int | None
    last_error: str | None
    last_delivery_attempt_time: datetime | None
    next_attempt_time: datetime | None
    created_time: datetime | None
    finished_time: datetime | None
    reason: str | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> DeliveryRecord:
        status = body.get("lastHttpStatusCode")
        return cls(
            raw=dict(body),
            id=_int(body.get("id")),
            event_id=str(body.get("eventId", "")),
            event_type=str(body.get("eventType", "")),
            state=str(body.get("state", "")),
            delivery_attempts=_int(body.get("deliveryAttempts")),
            last_delivery_outcome=body.get("lastDeliveryOutcome"),
            last_http_status_code=None if status is None else int(status),
            last_error=body.get("lastError"),
            last_delivery_attempt_time=parse_time(body.get("lastDeliveryAttemptTime")),
            next_attempt_time=parse_time(body.get("nextAttemptTime")),
            created_time=parse_time(body.get("createdTime")),
            finished_time=parse_time(body.get("finishedTime")),
            reason=body.get("reason"),
        )


@dataclass(frozen=True, eq=False)
class DeadLetterRecord(JsonRecord):
    """A dead-lettered event (``client.subscriptions.dead_letters``); ``record`` is what the
    dead-letter blob holds (the event with ``deadLetterReason``, ``deliveryAttempts``...)."""

    id: str
    event_id: str
    dead_letter_reason: str
    delivery_id: int | None
    blob_path: str | None
    dead_lettered_time: datetime | None
    redelivered_time: datetime | None
    record: dict[str, Any]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> DeadLetterRecord:
        delivery = body.get("deliveryId")
        record = body.get("record")
        return cls(
            raw=dict(body),
            id=str(body.get("id", "")),
            event_id=str(body.get("eventId", "")),
            dead_letter_reason=str(body.get("deadLetterReason", "")),
            delivery_id=None if delivery is None else int(delivery),
            blob_path=body.get("blobPath"),
            dead_lettered_time=parse_time(body.get("deadLetteredTime")),
            redelivered_time=parse_time(body.get("redeliveredTime")),
            record=dict(record) if isinstance(record, Mapping) else {},
        )


@dataclass(frozen=True, eq=False)
class RedeliveryResult(JsonRecord):
    """What ``client.subscriptions.redeliver`` queued: ``(dead letter id, event id, new
    delivery id)`` each, and the ids it could not (events no longer retained, unknown ids)."""

    redelivered: list[tuple[str, str, int]]
    not_retained: list[str]
    unknown_ids: list[str]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> RedeliveryResult:
        return cls(
            raw=dict(body),
            redelivered=[
                (str(v.get("id", "")), str(v.get("eventId", "")), _int(v.get("deliveryId")))
                for v in body.get("value") or []
                if isinstance(v, Mapping)
            ],
            not_retained=[str(i) for i in body.get("notRetained") or []],
            unknown_ids=[str(i) for i in body.get("unknownIds") or []],
        )


@dataclass(frozen=True, eq=False)
class ReplayResult(JsonRecord):
    """What ``client.subscriptions.replay`` did: events examined and queued again."""

    start: datetime | None
    end: datetime | None
    examined_events: int
    replayed_events: int

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ReplayResult:
        return cls(
            raw=dict(body),
            start=parse_time(body.get("from")),
            end=parse_time(body.get("to")),
            examined_events=_int(body.get("examinedEvents")),
            replayed_events=_int(body.get("replayedEvents")),
        )


@dataclass(frozen=True, eq=False)
class FilterVerdict(JsonRecord):
    """Whether a subscription's filter takes an event (``client.subscriptions.test``), with
    one entry per condition in ``conditions``."""

    matches: bool
    conditions: list[dict[str, Any]]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> FilterVerdict:
        conditions = body.get("conditions")
        listed = conditions if isinstance(conditions, list) else []
        return cls(
            raw=dict(body),
            matches=bool(body.get("matches")),
            conditions=[dict(c) for c in listed if isinstance(c, Mapping)],
        )


@dataclass(frozen=True, eq=False)
class Experiment(JsonRecord):
    """A workspace experiment (``workspace.experiments()``)."""

    experiment_id: str
    name: str
    created_time: datetime | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Experiment:
        return cls(
            raw=dict(body),
            experiment_id=str(body.get("experimentId", "")),
            name=str(body.get("name", "")),
            created_time=parse_time(body.get("createdTime")),
        )


@dataclass(frozen=True, eq=False)
class RoleAssignment(JsonRecord):
    """A principal's role on a topic or workspace (``scope`` only in a create's answer)."""

    principal: str
    role: str
    scope: str | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> RoleAssignment:
        scope = body.get("scope")
        return cls(
            raw=dict(body),
            principal=str(body.get("principal", "")),
            role=str(body.get("role", "")),
            scope=None if scope is None else str(scope),
        )


@dataclass(frozen=True, eq=False)
class PulledEvent(JsonRecord):
    """An event received from a ``Queue`` subscription with its lock
    (``{"brokerProperties": {"lockToken", "deliveryCount"}, "event": {...}}``)."""

    event: dict[str, Any]
    lock_token: str
    delivery_count: int

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> PulledEvent:
        broker = body.get("brokerProperties")
        props = broker if isinstance(broker, Mapping) else {}
        event = body.get("event")
        return cls(
            raw=dict(body),
            event=dict(event) if isinstance(event, Mapping) else {},
            lock_token=str(props.get("lockToken", "")),
            delivery_count=_int(props.get("deliveryCount")),
        )


@dataclass(frozen=True, eq=False)
class LockResult(JsonRecord):
    """The answer to acknowledge/release/reject: the lock tokens that succeeded, and those
    that failed with their error (``{"lockToken", "error": {"code", "message"}}``)."""

    succeeded_lock_tokens: list[str]
    failed_lock_tokens: list[dict[str, Any]]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> LockResult:
        return cls(
            raw=dict(body),
            succeeded_lock_tokens=[str(t) for t in body.get("succeededLockTokens") or []],
            failed_lock_tokens=[
                dict(f) for f in body.get("failedLockTokens") or [] if isinstance(f, Mapping)
            ],
        )
