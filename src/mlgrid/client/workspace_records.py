"""The typed results of the workspace SDK: what the server's JSON becomes.

Each is a frozen dataclass built by ``from_json`` from one object of the API's answer, with
times as aware ``datetime`` values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Canceled"})


def parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None


def segment(value: str) -> str:
    return quote(value, safe="")


@dataclass(frozen=True)
class WorkspaceInfo:
    name: str
    id: str
    resource_group: str
    run_status_changed_events: str
    etag: str
    system_topic: str
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> WorkspaceInfo:
        props = body.get("properties") or {}
        return cls(
            name=body["name"],
            id=body["id"],
            resource_group=props.get("resourceGroup", "default"),
            run_status_changed_events=props.get("runStatusChangedEvents", "failed"),
            etag=body.get("etag", ""),
            system_topic=props.get("systemTopic", f"/systemTopics/{body['name']}"),
            raw=dict(body),
        )


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    experiment_id: str
    experiment_name: str
    status: str
    run_type: str | None
    tags: dict[str, Any]
    properties: dict[str, str]
    etag: str
    start_time: datetime | None
    end_time: datetime | None
    error: str | None
    raw: dict[str, Any] = field(repr=False)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def exit_code(self) -> int | None:
        """A submitted job's exit code (None while running, and for other runs)."""
        job = self.raw.get("job") or {}
        code = job.get("exitCode")
        return None if code is None else int(code)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> RunInfo:
        return cls(
            run_id=body["runId"],
            experiment_id=body["experimentId"],
            experiment_name=body["experimentName"],
            status=body["status"],
            run_type=body.get("runType"),
            tags=dict(body.get("tags") or {}),
            properties=dict(body.get("properties") or {}),
            etag=body.get("etag", ""),
            start_time=parse_time(body.get("startTime")),
            end_time=parse_time(body.get("endTime")),
            error=body.get("error"),
            raw=dict(body),
        )


@dataclass(frozen=True)
class Metric:
    name: str
    value: float | int
    step: int
    time: datetime | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Metric:
        return cls(body["name"], body["value"], int(body.get("step", 0)), parse_time(body.get("time")))


@dataclass(frozen=True)
class Artifact:
    path: str
    size: int
    sha256: str

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Artifact:
        return cls(body["path"], int(body["size"]), body["sha256"])


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    tags: dict[str, Any]
    properties: dict[str, Any]
    description: str
    etag: str
    created_time: datetime | None
    run_id: str | None
    artifact_path: str | None
    is_directory: bool
    raw: dict[str, Any] = field(repr=False)

    @property
    def id(self) -> str:
        """``name:version``, as ModelDeployed's ``ModelIds`` lists models."""
        return f"{self.name}:{self.version}"

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ModelVersion:
        return cls(
            name=body["name"],
            version=str(body["version"]),
            tags=dict(body.get("tags") or {}),
            properties=dict(body.get("properties") or {}),
            description=body.get("description") or "",
            etag=body.get("etag", ""),
            created_time=parse_time(body.get("createdTime")),
            run_id=body.get("runId"),
            artifact_path=body.get("artifactPath"),
            is_directory=bool(body.get("isDirectory")),
            raw=dict(body),
        )


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str


@dataclass(frozen=True)
class Dataset:
    id: str
    name: str
    version: int
    columns: list[Column]
    row_count: int
    timestamp_column: str | None
    etag: str
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Dataset:
        return cls(
            id=body["id"],
            name=body["name"],
            version=int(body["version"]),
            columns=[Column(c["name"], c["dtype"]) for c in body.get("columns") or []],
            row_count=int(body["rowCount"]),
            timestamp_column=body.get("timestampColumn"),
            etag=body.get("etag", ""),
            raw=dict(body),
        )


@dataclass(frozen=True)
class SubscriptionInfo:
    name: str
    id: str
    provisioning_state: str
    endpoint_type: str | None
    properties: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> SubscriptionInfo:
        props = dict(body.get("properties") or {})
        destination = props.get("destination") or {}
        return cls(
            name=body.get("name", ""),
            id=body.get("id", ""),
            provisioning_state=props.get("provisioningState", ""),
            endpoint_type=destination.get("endpointType"),
            properties=props,
        )


# --- clients ------------------------------------------------------------------------------
