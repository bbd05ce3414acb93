"""What the event catalog says about each event type: its JSON Schema, an example built by the
same code that emits it, a schema inferred from a custom topic's real events, and the AsyncAPI 3
document that carries it all (``GET /asyncapi.json``).

Pure functions: ``broker/catalog.py`` gathers the topics, retained samples and subscriptions.
The five ML events' schemas are written from the builders of ``events/ml.py``; the unit test
checks that every example the builders make validates against them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from mlgrid.events import ml
from mlgrid.events.timestamps import format_timestamp

ML: Final = "ml"
SYSTEM: Final = "system"
CUSTOM: Final = "custom"
VALIDATION_EVENT: Final = "Microsoft.EventGrid.SubscriptionValidationEvent"
JSON_SCHEMA: Final = "https://json-schema.org/draft/2020-12/schema"
EXAMPLE_TOPIC: Final = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/default/providers/"
    "Microsoft.MachineLearningServices/workspaces/ws1"
)

_STRING: Final = {"type": "string"}
_TAGS: Final = {"type": "object", "description": "tags: any JSON values"}
_STRINGS: Final = {"type": "object", "additionalProperties": {"type": "string"}}
_SEQUENCER: Final = {"type": "string", "pattern": "^[0-9]{20}$", "description": "orders the object's changes"}
_RUN: Final = {
    "ExperimentId": _STRING, "ExperimentName": _STRING, "RunId": _STRING,
    "RunType": {"type": ["string", "null"]}, "RunTags": _TAGS, "RunProperties": _STRINGS,
}

DESCRIPTIONS: Final = {
    ml.RUN_COMPLETED: "A run of the workspace reached Completed.",
    ml.RUN_STATUS_CHANGED: "A run's status changed (by default only to Failed; runStatusChangedEvents: all).",
    ml.MODEL_REGISTERED: "A model version was registered.",
    ml.MODEL_DEPLOYED: "A deployment of an endpoint became Healthy.",
    ml.DATASET_DRIFT_DETECTED: "A drift monitor's run found drift above its threshold.",
    VALIDATION_EVENT: "The handshake sent to a WebHook endpoint when its subscription is created "
    "or its URL changes (answer with data.validationCode).",
}


def _data_schema(properties: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": sorted(properties), "properties": dict(properties)}


ML_DATA_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    ml.RUN_COMPLETED: _data_schema({**_RUN, "ETag": _STRING, "Sequencer": _SEQUENCER}),
    ml.RUN_STATUS_CHANGED: _data_schema(
        {**_RUN, "RunStatus": {"type": "string", "description": "lower case: failed, completed, ..."},
         "ETag": _STRING, "Sequencer": _SEQUENCER}
    ),
    ml.MODEL_REGISTERED: _data_schema({
        "ModelName": _STRING, "ModelVersion": {"type": "string"}, "ModelTags": _TAGS,
        "ModelProperties": {"type": "object"}, "ETag": _STRING, "Sequencer": _SEQUENCER,
    }),
    ml.MODEL_DEPLOYED: _data_schema({
        "ServiceName": _STRING, "ServiceComputeType": _STRING,
        "ModelIds": {"type": "string", "description": "name:version, comma separated"},
        "ServiceTags": _TAGS, "ServiceProperties": {"type": "object"},
        "ETag": _STRING, "Sequencer": _SEQUENCER,
    }),
    ml.DATASET_DRIFT_DETECTED: {
        "type": "object",
        "required": ["DataDriftId", "DataDriftName", "RunId", "BaseDatasetId", "TargetDatasetId",
                     "DriftCoefficient", "StartTime", "EndTime", "ETag", "Sequencer"],
        "properties": {
            "DataDriftId": _STRING, "DataDriftName": _STRING, "RunId": _STRING,
            "BaseDatasetId": _STRING, "TargetDatasetId": _STRING,
            "DriftCoefficient": {"type": "number"},
            "StartTime": {"type": "string", "format": "date-time"},
            "EndTime": {"type": "string", "format": "date-time"},
            "ETag": _STRING, "Sequencer": _SEQUENCER,
        },
    },
}


def event_grid_schema(data: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON Schema of an Event Grid event whose ``data`` follows ``data``."""
    return {
        "$schema": JSON_SCHEMA,
        "type": "object",
        "required": ["id", "subject", "eventType", "eventTime", "data", "dataVersion"],
        "properties": {
            "id": _STRING, "topic": _STRING, "subject": _STRING, "eventType": _STRING,
            "eventTime": {"type": "string", "format": "date-time"},
            "data": dict(data), "dataVersion": _STRING, "metadataVersion": {"const": "1"},
        },
    }


def ml_examples(now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """One event of each ML type, made by the builders that emit them."""
    at = now or datetime(2030, 1, 1, tzinfo=UTC)
    run: dict[str, Any] = {
        "topic_id": EXAMPLE_TOPIC, "experiment_id": "0b5c4c6e-6b1d-4d0c-9f25-5e1c2f6c9a10",
        "experiment_name": "train", "run_id": "train_1893456000_0a1b2c3d", "run_type": "job",
        "run_tags": {"team": "a"}, "run_properties": {"git": "abc"}, "etag": "5d41402abc4b2a76",
        "sequencer": ml.sequencer(2), "event_time": at,
    }
    return {
        ml.RUN_COMPLETED: ml.run_completed(**run),
        ml.RUN_STATUS_CHANGED: ml.run_status_changed(**run, run_status="Failed"),
        ml.MODEL_REGISTERED: ml.model_registered(
            topic_id=EXAMPLE_TOPIC, model_name="churn", model_version=3, model_tags={"key1": "value1"},
            model_properties={"auc": "0.91"}, etag="7d793037a0760186", sequencer=ml.sequencer(3),
            event_time=at,
        ),
        ml.MODEL_DEPLOYED: ml.model_deployed(
            topic_id=EXAMPLE_TOPIC, service_name="churn-api", compute_type="Local", model_ids=["churn:3"],
            service_tags={"team": "ml"}, service_properties={}, etag="9e107d9d372bb682",
            sequencer=ml.sequencer(1), event_time=at,
        ),
        ml.DATASET_DRIFT_DETECTED: ml.dataset_drift_detected(
            topic_id=EXAMPLE_TOPIC, data_drift_id="7a2d2c6e-1f0b-4b7e-9d61-3c2b1a0f9e88",
            data_drift_name="sales-drift", run_id="sales-drift_1893456000",
            base_dataset_id="a1b2c3d4-0000-4000-8000-000000000001",
            target_dataset_id="a1b2c3d4-0000-4000-8000-000000000002", drift_coefficient=Decimal("0.83"),
            start_time=at, end_time=at, etag="c4ca4238a0b92382", sequencer=ml.sequencer(1), event_time=at,
        ),
    }


def infer_schema(value: Any) -> dict[str, Any]:
    """A JSON Schema that ``value`` (a real event) satisfies: the types of its fields, the
    properties of its objects, the first item of its arrays."""
    if value is None:
        return {"type": "null"}
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float | Decimal):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, Mapping):
        return {"type": "object", "properties": {str(k): infer_schema(v) for k, v in value.items()}}
    if isinstance(value, Sequence):
        return {"type": "array", "items": infer_schema(value[0]) if value else {}}
    return {}


@dataclass
class CatalogEntry:
    """One event type: where it comes from, its schema, a sample, who receives it."""

    event_type: str
    kind: str  # ml | system | custom
    schema: dict[str, Any]
    sample: dict[str, Any]
    sample_source: str  # "retained" (a real event of this server) | "example" (built by its emitter)
    description: str = ""
    topics: list[str] = field(default_factory=list)
    subscriptions: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "eventType": self.event_type, "kind": self.kind, "description": self.description,
            "topics": self.topics, "subscriptions": self.subscriptions, "schema": self.schema,
            "sample": self.sample, "sampleSource": self.sample_source,
        }


def _message_name(entry: CatalogEntry) -> str:
    topic = "" if entry.kind != CUSTOM or not entry.topics else entry.topics[0] + "."
    return re.sub(r"[^A-Za-z0-9_.-]", "_", topic + entry.event_type)


def asyncapi(entries: Sequence[CatalogEntry], base_url: str, version: str) -> dict[str, Any]:
    """The catalog as an AsyncAPI 3.0 document: one channel per custom topic (events published to
    ``/topics/{name}/api/events``), one for the workspaces' system topics, one for the WebHook
    handshake; each with the messages it carries and a ``receive`` operation."""
    host = re.sub(r"^[a-z]+://", "", base_url).rstrip("/")
    protocol = "https" if base_url.startswith("https") else "http"
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def channel(key: str, address: str, description: str, parameters: dict[str, Any] | None = None) -> None:
        channels.setdefault(key, {"address": address, "description": description, "messages": {}})
        if parameters:
            channels[key]["parameters"] = parameters

    for entry in entries:
        name = _message_name(entry)
        messages[name] = {
            "name": entry.event_type, "title": entry.event_type, "summary": entry.description,
            "contentType": "application/json", "payload": entry.schema,
            "examples": [{"name": entry.sample_source, "payload": entry.sample}],
            "x-subscriptions": entry.subscriptions,
        }
        if entry.kind == ML:
            key = "workspaceSystemTopic"
            channel(key, "/systemTopics/{workspace}", "The system topic of an ML workspace.",
                    {"workspace": {"description": "the workspace's name"}})
        elif entry.kind == SYSTEM:
            key = "webhookHandshake"
            channel(key, "/{webhook}", "Sent to a WebHook endpoint by the validation handshake.",
                    {"webhook": {"description": "the endpoint URL of the subscription"}})
        else:
            key = "topic-" + re.sub(r"[^A-Za-z0-9_-]", "_", entry.topics[0])
            channel(key, f"/topics/{entry.topics[0]}/api/events", f"The custom topic {entry.topics[0]}.")
        channels[key]["messages"][name] = {"$ref": f"#/components/messages/{name}"}
    for key, value in channels.items():
        operations[f"receive-{key}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{name}"} for name in value["messages"]],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "mlgrid events",
            "version": version,
            "description": "Every event type this mlgrid server emits or has seen on its custom "
            "topics, with its JSON Schema, a sample and the subscriptions that receive it "
            f"(generated {format_timestamp(datetime.now(UTC))}).",
        },
        "servers": {"mlgrid": {"host": host, "protocol": protocol}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }
