"""Parsing and validating workspace request bodies into values (no IO).

Every rejection is a 400 naming the JSON path of the offending field (``tags.k``,
``properties.team``, ``metrics[2].value``, ``workingDirectory``), so callers can fix the
request without reading the code. Bodies are parsed exactly (numbers are ``int`` or
``Decimal``), and unknown fields are rejected so typos do not pass silently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from mlgrid.errors import invalid
from mlgrid.events.timestamps import parse_timestamp
from mlgrid.workspace import lifecycle

MAX_KEY_LENGTH = 256
MAX_STRING_VALUE = 8192
MAX_METRICS_PER_REQUEST = 1000
MAX_COMMAND_LENGTH = 32_768
MAX_ARTIFACT_PATH = 1024
MAX_SEGMENT = 255
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_JOB_ENVIRONMENT = frozenset({"MLGRID_RUN_ID", "MLGRID_URL", "MLGRID_WORKSPACE", "MLGRID_EXPERIMENT"})


def _object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise invalid(path, "must be a JSON object")
    return value


def _no_unknown(body: Mapping[str, Any], allowed: set[str], prefix: str = "") -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise invalid(prefix + unknown[0], f"unknown field; expected one of {', '.join(sorted(allowed))}")


def _key(key: object, path: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise invalid(path, f"keys must be 1-{MAX_KEY_LENGTH} characters")
    return key


def parse_tags(value: object, path: str = "tags") -> dict[str, Any]:
    """Tags: a JSON object; values are any JSON (``null`` removes the tag when merging)."""
    if value is None:
        return {}
    tags = _object(value, path)
    for key in tags:
        _key(key, f"{path}.{key}")
    return dict(tags)


def parse_properties(value: object, path: str = "properties") -> dict[str, str]:
    """Properties: a JSON object whose values are strings (as in Azure ML)."""
    if value is None:
        return {}
    properties = _object(value, path)
    for key, item in properties.items():
        _key(key, f"{path}.{key}")
        if not isinstance(item, str):
            raise invalid(f"{path}.{key}", "property values must be strings")
        if len(item) > MAX_STRING_VALUE:
            raise invalid(f"{path}.{key}", f"must be at most {MAX_STRING_VALUE} characters")
    return dict(properties)


def merge_tags(current: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """JSON merge-patch of one level: ``null`` deletes a tag, anything else sets it."""
    merged = dict(current)
    for key, item in change.items():
        if item is None:
            merged.pop(key, None)
        else:
            merged[key] = item
    return merged


def _optional_string(value: object, path: str, limit: int = MAX_STRING_VALUE) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(path, "must be a string or null")
    if len(value) > limit:
        raise invalid(path, f"must be at most {limit} characters")
    return value


@dataclass(frozen=True)
class WorkspaceSpec:
    resource_group: str
    run_status_changed_events: str


def parse_workspace_body(body: object) -> tuple[str | None, str | None]:
    """``(resourceGroup, runStatusChangedEvents)`` from ``PUT /workspaces/{ws}``; ``None`` when
    absent (the service fills defaults on create and keeps values on update)."""
    if body is None:
        return None, None
    body = _object(body, "body")
    _no_unknown(body, {"properties", "location", "tags", "name", "id", "type"})
    props = body.get("properties")
    if props is None:
        return None, None
    props = _object(props, "properties")
    _no_unknown(props, {"resourceGroup", "runStatusChangedEvents"}, "properties.")
    resource_group = props.get("resourceGroup")
    if resource_group is not None and not isinstance(resource_group, str):
        raise invalid("properties.resourceGroup", "must be a string")
    mode = props.get("runStatusChangedEvents")
    if mode is not None:
        if not isinstance(mode, str) or mode.lower() not in lifecycle.RUN_STATUS_CHANGED_MODES:
            raise invalid("properties.runStatusChangedEvents", "must be 'failed' or 'all'")
        mode = mode.lower()
    return resource_group, mode


@dataclass(frozen=True)
class RunCreate:
    run_type: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    status: str = lifecycle.RUNNING


def parse_run_create(body: object) -> RunCreate:
    if body is None:
        return RunCreate()
    body = _object(body, "body")
    _no_unknown(body, {"runType", "tags", "properties", "status"})
    status = lifecycle.parse_status(body["status"]) if body.get("status") is not None else lifecycle.RUNNING
    if status not in lifecycle.INITIAL:
        raise invalid(
            "status",
            f"a run is created in one of {', '.join(lifecycle.PROGRESS[:4])}; "
            "change its status afterwards",
        )
    tags = {k: v for k, v in parse_tags(body.get("tags")).items() if v is not None}
    return RunCreate(
        run_type=_optional_string(body.get("runType"), "runType", 128),
        tags=tags,
        properties=parse_properties(body.get("properties")),
        status=status,
    )


@dataclass(frozen=True)
class RunChange:
    status: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def parse_run_change(body: object) -> RunChange:
    if body is None:
        return RunChange()
    body = _object(body, "body")
    _no_unknown(body, {"status", "tags", "properties", "error"})
    status = None if body.get("status") is None else lifecycle.parse_status(body["status"])
    return RunChange(
        status=status,
        tags=parse_tags(body.get("tags")),
        properties=parse_properties(body.get("properties")),
        error=_optional_string(body.get("error"), "error"),
    )


@dataclass(frozen=True)
class MetricValue:
    name: str
    value: int | Decimal
    step: int
    time: datetime | None


def parse_metrics(body: object) -> list[MetricValue]:
    body = _object(body, "body")
    _no_unknown(body, {"metrics"})
    items = body.get("metrics")
    if not isinstance(items, list) or not items:
        raise invalid("metrics", "must be a non-empty array")
    if len(items) > MAX_METRICS_PER_REQUEST:
        raise invalid("metrics", f"at most {MAX_METRICS_PER_REQUEST} metrics per request")
    parsed: list[MetricValue] = []
    for index, item in enumerate(items):
        path = f"metrics[{index}]"
        item = _object(item, path)
        _no_unknown(item, {"name", "value", "step", "time"}, path + ".")
        name = item.get("name")
        if not isinstance(name, str) or not name or len(name) > MAX_SEGMENT:
            raise invalid(f"{path}.name", f"must be a string of 1-{MAX_SEGMENT} characters")
        value = item.get("value")
        if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
            raise invalid(f"{path}.value", "must be a number")
        if isinstance(value, float):  # only reachable from callers that parsed with floats
            value = Decimal(repr(value))
        step = item.get("step", 0)
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < 2**63:
            raise invalid(f"{path}.step", "must be a non-negative integer")
        moment: datetime | None = None
        if item.get("time") is not None:
            raw = item["time"]
            moment = parse_timestamp(raw) if isinstance(raw, str) else None
            if moment is None:
                raise invalid(f"{path}.time", "must be an ISO 8601 date-time")
        parsed.append(MetricValue(name, value, step, moment))
    return parsed


def check_artifact_path(path: object, field_name: str = "path") -> str:
    """A relative path inside a run's artifacts (or a model directory): ``/``-separated
    segments, no empty, ``.`` or ``..`` segment, no absolute path, no backslash or control
    character. The result is the path as given."""
    if not isinstance(path, str) or not path:
        raise invalid(field_name, "must be a non-empty relative path")
    if len(path) > MAX_ARTIFACT_PATH:
        raise invalid(field_name, f"must be at most {MAX_ARTIFACT_PATH} characters")
    if path.startswith("/"):
        raise invalid(field_name, "must be relative, not an absolute path")
    if "\\" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise invalid(field_name, "must not contain backslashes or control characters")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise invalid(field_name, "must not contain empty, '.' or '..' segments")
        if len(segment) > MAX_SEGMENT:
            raise invalid(field_name, f"path segments must be at most {MAX_SEGMENT} characters")
    return path


@dataclass(frozen=True)
class JobSpec:
    command: str
    working_directory: str | None
    environment: dict[str, str]
    run_type: str | None
    tags: dict[str, Any]
    properties: dict[str, str]
    memory_mb: int | None = None
    cpu_seconds: int | None = None
    network: str | None = None


JOB_NETWORKS = ("api", "none", "host")


def _positive_int(value: object, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value > 1 << 40:
        raise invalid(path, "must be a positive integer")
    return value


def parse_job_resources(value: object) -> tuple[int | None, int | None]:
    """``resources``: ``{"memoryMb": 512, "cpuSeconds": 60}`` (both optional) → (MiB, seconds)."""
    if value is None:
        return None, None
    resources = _object(value, "resources")
    _no_unknown(resources, {"memoryMb", "cpuSeconds"}, "resources.")
    return (
        _positive_int(resources.get("memoryMb"), "resources.memoryMb"),
        _positive_int(resources.get("cpuSeconds"), "resources.cpuSeconds"),
    )


def parse_job(body: object) -> JobSpec:
    body = _object(body, "body")
    _no_unknown(
        body,
        {"command", "workingDirectory", "environment", "runType", "tags", "properties"}
        | {"resources", "network"},
    )
    command = body.get("command")
    if not isinstance(command, str) or not command.strip():
        raise invalid("command", "must be a non-empty string")
    if len(command) > MAX_COMMAND_LENGTH or "\x00" in command:
        raise invalid("command", f"must be at most {MAX_COMMAND_LENGTH} characters without NUL")
    working_directory = _optional_string(body.get("workingDirectory"), "workingDirectory", 4096)
    if working_directory is not None and (
        not working_directory.startswith("/") or "\x00" in working_directory
    ):
        raise invalid("workingDirectory", "must be an absolute path on the server")
    environment_raw = body.get("environment")
    environment: dict[str, str] = {}
    if environment_raw is not None:
        for key, item in _object(environment_raw, "environment").items():
            if not _ENV_NAME.match(key):
                raise invalid(f"environment.{key}", "is not a valid environment variable name")
            if key in RESERVED_JOB_ENVIRONMENT:
                raise invalid(f"environment.{key}", "is set by the server")
            if not isinstance(item, str) or "\x00" in item:
                raise invalid(f"environment.{key}", "must be a string")
            environment[key] = item
    tags = {k: v for k, v in parse_tags(body.get("tags")).items() if v is not None}
    memory_mb, cpu_seconds = parse_job_resources(body.get("resources"))
    network = body.get("network")
    if network is not None and network not in JOB_NETWORKS:
        raise invalid(
            "network", f"must be one of {', '.join(JOB_NETWORKS)} (or null: the server's job_network)"
        )
    return JobSpec(
        command=command,
        working_directory=working_directory,
        environment=environment,
        run_type=_optional_string(body.get("runType"), "runType", 128),
        tags=tags,
        properties=parse_properties(body.get("properties")),
        memory_mb=memory_mb,
        cpu_seconds=cpu_seconds,
        network=network,
    )


@dataclass(frozen=True)
class ModelMetadata:
    tags: dict[str, Any]
    properties: dict[str, Any]
    description: str
    directory: bool = False


def parse_model_metadata(body: object, *, allow_source: bool) -> tuple[ModelMetadata, str | None, str | None]:
    """Model metadata (``tags``, ``properties``, ``description``; ``directory`` for uploads) and,
    for JSON registrations, the source ``runId`` and ``artifactPath``."""
    if body is None:
        body = {}
    body = _object(body, "metadata" if not allow_source else "body")
    allowed = {"tags", "properties", "description"}
    allowed |= {"runId", "artifactPath"} if allow_source else {"directory"}
    _no_unknown(body, allowed)
    description = _optional_string(body.get("description"), "description") or ""
    directory = body.get("directory", False)
    if not isinstance(directory, bool):
        raise invalid("directory", "must be true or false")
    metadata = ModelMetadata(
        tags={k: v for k, v in parse_tags(body.get("tags")).items() if v is not None},
        properties=parse_properties(body.get("properties")),
        description=description,
        directory=directory,
    )
    if not allow_source:
        return metadata, None, None
    run_id = body.get("runId")
    if not isinstance(run_id, str) or not run_id:
        raise invalid("runId", "is required: the run whose artifact becomes the model")
    artifact_path = body.get("artifactPath")
    if not isinstance(artifact_path, str) or not artifact_path:
        raise invalid("artifactPath", "is required: an artifact file or directory of the run")
    return metadata, run_id, check_artifact_path(artifact_path.rstrip("/"), "artifactPath")
