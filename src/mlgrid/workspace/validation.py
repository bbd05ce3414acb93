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
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field

from mlgrid.body import (
    Body,
    Invalid,
    Missing,
    case_insensitive,
    checked,
    checker,
    echoed,
    optional_text,
    parse,
    reason,
    whole,
)
from mlgrid.broker.names import RESOURCE_GROUP_SCHEMA_PATTERN
from mlgrid.errors import InvalidField, invalid
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


def _tags(value: object) -> dict[str, Any] | None:
    try:
        return None if value is None else parse_tags(value, "")
    except InvalidField as exc:
        raise _relative(exc) from None


def _properties(value: object) -> dict[str, str] | None:
    try:
        return None if value is None else parse_properties(value, "")
    except InvalidField as exc:
        raise _relative(exc) from None


def _relative(exc: InvalidField) -> Exception:
    """An ``InvalidField`` of a helper called with an empty path, as the model's own error."""
    at = exc.field_name.removeprefix(".") if exc.field_name else None
    reason = exc.message.removeprefix(f"{exc.field_name}: ")
    return Invalid(reason, at=at)


# null is accepted where tags or properties are (as none): the schemas say so.
_TAGS_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "propertyNames": {"minLength": 1, "maxLength": MAX_KEY_LENGTH},
    "description": "any JSON values; in a PATCH, null removes a tag",
}
_PROPERTIES_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "propertyNames": {"minLength": 1, "maxLength": MAX_KEY_LENGTH},
    "additionalProperties": {"type": "string", "maxLength": MAX_STRING_VALUE},
}
Tags = Annotated[Any, *checker(_tags, _TAGS_SCHEMA)]
Properties = Annotated[Any, *checker(_properties, _PROPERTIES_SCHEMA)]


def _mode(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in lifecycle.RUN_STATUS_CHANGED_MODES:
        raise Invalid("must be 'failed' or 'all'")
    return value.lower()


def _resource_group(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise Invalid("must be a string")
    return value


class WorkspaceProperties(Body):
    resource_group: Annotated[Any, *checker(_resource_group, {
        "type": ["string", "null"], "maxLength": 90, "pattern": RESOURCE_GROUP_SCHEMA_PATTERN,
        "description": "fixed at creation: part of the events' topic id",
    })] = None
    run_status_changed_events: Annotated[Any, *checker(_mode, {
        "type": ["string", "null"],
        "pattern": case_insensitive(lifecycle.RUN_STATUS_CHANGED_MODES),
        "description": "which run status changes are events: 'failed' (default) or 'all'",
    })] = None


class WorkspaceBody(Body):
    """The body of ``PUT /workspaces/{ws}``: Azure ML's workspace resource; only
    ``properties`` is read, the other members a read carries are accepted."""

    properties: WorkspaceProperties | None = None
    location: Any = echoed()
    tags: Any = echoed()
    name: Any = echoed()
    id: Any = echoed()
    type: Any = echoed()


@dataclass(frozen=True)
class WorkspaceSpec:
    resource_group: str
    run_status_changed_events: str


def parse_workspace_body(body: object) -> tuple[str | None, str | None]:
    """``(resourceGroup, runStatusChangedEvents)`` from ``PUT /workspaces/{ws}``; ``None`` when
    absent (the service fills defaults on create and keeps values on update)."""
    if body is None:
        return None, None
    parsed = parse(WorkspaceBody, body)
    if parsed.properties is None:
        return None, None
    return parsed.properties.resource_group, parsed.properties.run_status_changed_events


def _run_type(limit: int = 128) -> tuple[Any, ...]:
    return optional_text(limit)


def _initial_status(value: object) -> str:
    status = _status(value)
    if status not in lifecycle.INITIAL:
        raise Invalid(
            f"a run is created in one of {', '.join(lifecycle.PROGRESS[:4])}; change its status afterwards"
        )
    return status


def _status(value: object) -> str:
    try:
        return lifecycle.parse_status(value, "")
    except InvalidField as exc:
        raise _relative(exc) from None


def _optional_status(value: object) -> str | None:
    return None if value is None else _status(value)


_INITIAL_STATUSES = [s for s in lifecycle.PROGRESS if s in lifecycle.INITIAL]


@dataclass(frozen=True)
class RunCreate:
    run_type: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    status: str = lifecycle.RUNNING


class RunCreateBody(Body):
    """The body of ``POST .../experiments/{e}/runs`` (optional: a bare run is Running)."""

    status: Annotated[Any, *checker(lambda v: lifecycle.RUNNING if v is None else _initial_status(v), {
        "type": ["string", "null"], "pattern": case_insensitive(_INITIAL_STATUSES),
        "default": lifecycle.RUNNING,
    })] = None
    tags: Tags = None
    run_type: Annotated[Any, *_run_type()] = None
    properties: Properties = None


def parse_run_create(body: object) -> RunCreate:
    if body is None:
        return RunCreate()
    parsed = parse(RunCreateBody, body)
    return RunCreate(
        run_type=parsed.run_type,
        tags={k: v for k, v in (parsed.tags or {}).items() if v is not None},
        properties=parsed.properties or {},
        status=parsed.status or lifecycle.RUNNING,
    )


@dataclass(frozen=True)
class RunChange:
    status: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    error: str | None = None


class RunChangeBody(Body):
    """The body of ``PATCH .../runs/{id}``: a status move, tag changes (null removes), an error."""

    status: Annotated[Any, *checker(_optional_status, {
        "type": ["string", "null"], "pattern": case_insensitive(lifecycle.STATUSES),
    })] = None
    tags: Tags = None
    properties: Properties = None
    error: Annotated[Any, *optional_text(MAX_STRING_VALUE)] = Field(
        default=None, description="why the run failed"
    )


def parse_run_change(body: object) -> RunChange:
    """A PATCH's body is required and an object: JSON ``null`` is refused like any other
    non-object (the schema says so; issue 16), ``{}`` changes nothing."""
    parsed = parse(RunChangeBody, body)
    return RunChange(
        status=parsed.status,
        tags=parsed.tags or {},
        properties=parsed.properties or {},
        error=parsed.error,
    )


@dataclass(frozen=True)
class MetricValue:
    name: str
    value: int | Decimal
    step: int
    time: datetime | None


def _metric_value(value: object) -> int | Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        raise Invalid("must be a number")
    if isinstance(value, float):  # only reachable from callers that parsed with floats
        return Decimal(repr(value))
    return value


def _step(value: object) -> int:
    value = whole(value)  # 3.0 is the integer 3, as the schema's "integer" says
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise Invalid("must be a non-negative integer")
    return value


def _time(value: object) -> datetime | None:
    if value is None:
        return None
    moment = parse_timestamp(value) if isinstance(value, str) else None
    if moment is None:
        raise Invalid("must be an ISO 8601 date-time")
    return moment


class MetricBody(Body):
    """One metric value of ``POST .../runs/{id}/metrics``."""

    name: Annotated[str, Field(min_length=1, max_length=MAX_SEGMENT),
                    reason(f"must be a string of 1-{MAX_SEGMENT} characters")]
    value: Annotated[Any, *checker(_metric_value, {"type": "number"}), Missing("must be a number")]
    step: Annotated[Any, *checker(_step, {"type": "integer", "minimum": 0, "maximum": 2**63 - 1})] = 0
    time: Annotated[Any, *checker(_time, {"type": ["string", "null"], "format": "date-time"})] = None


def _metric_list(value: object) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise Invalid("must be a non-empty array")
    if len(value) > MAX_METRICS_PER_REQUEST:
        raise Invalid(f"at most {MAX_METRICS_PER_REQUEST} metrics per request")
    return value


class MetricsBody(Body):
    """The body of ``POST .../runs/{id}/metrics``."""

    metrics: Annotated[
        list[MetricBody],
        BeforeValidator(_metric_list),
        Field(min_length=1, max_length=MAX_METRICS_PER_REQUEST),
        reason("must be a non-empty array"),
    ]


def parse_metrics(body: object) -> list[MetricValue]:
    parsed = parse(MetricsBody, body)
    return [MetricValue(m.name, m.value, m.step, m.time) for m in parsed.metrics]


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
    value = whole(value)
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


def _command(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid("must be a non-empty string")
    if len(value) > MAX_COMMAND_LENGTH or "\x00" in value:
        raise Invalid(f"must be at most {MAX_COMMAND_LENGTH} characters without NUL")
    return value


def _working_directory(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid("must be a string or null")
    if len(value) > 4096:
        raise Invalid("must be at most 4096 characters")
    if not value.startswith("/") or "\x00" in value:
        raise Invalid("must be an absolute path on the server")
    return value


def _environment(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Invalid("must be a JSON object")
    environment: dict[str, str] = {}
    for key, item in value.items():
        if not _ENV_NAME.match(key):
            raise Invalid("is not a valid environment variable name", at=key)
        if key in RESERVED_JOB_ENVIRONMENT:
            raise Invalid("is set by the server", at=key)
        if not isinstance(item, str) or "\x00" in item:
            raise Invalid("must be a string", at=key)
        environment[key] = item
    return environment


def _resources(value: object) -> tuple[int | None, int | None]:
    # parse_job_resources raises InvalidField with the absolute path (``resources.memoryMb``),
    # which passes through pydantic unchanged.
    return parse_job_resources(value)


def _network(value: object) -> str | None:
    if value is not None and value not in JOB_NETWORKS:
        raise Invalid(f"must be one of {', '.join(JOB_NETWORKS)} (or null: the server's job_network)")
    return None if value is None else str(value)


class JobBody(Body):
    """The body of ``POST .../experiments/{e}/jobs``: a command the server runs as a run."""

    command: Annotated[Any, *checker(_command, {
        "type": "string", "minLength": 1, "maxLength": MAX_COMMAND_LENGTH,
        "description": "run with /bin/sh -c on the server",
    }), Missing("must be a non-empty string")]
    working_directory: Annotated[Any, *checker(_working_directory, {
        "type": ["string", "null"], "maxLength": 4096, "pattern": "^/",
        "description": "absolute, existing directory on the server",
    })] = None
    environment: Annotated[Any, *checker(_environment, {
        "type": ["object", "null"], "propertyNames": {"pattern": _ENV_NAME.pattern},
        "additionalProperties": {"type": "string"},
    })] = None
    run_type: Annotated[Any, *_run_type()] = None
    tags: Tags = None
    properties: Properties = None
    resources: Annotated[Any, *checker(_resources, {
        "type": ["object", "null"], "additionalProperties": False,
        "properties": {
            "memoryMb": {"type": "integer", "minimum": 1},
            "cpuSeconds": {"type": "integer", "minimum": 1},
        },
        "description": "lower limits than the server's for this job",
    })] = None
    network: Annotated[Any, *checker(_network, {
        "type": ["string", "null"], "enum": [*JOB_NETWORKS, None],
        "description": "api (default: only the server's API), none, or host",
    })] = None


def parse_job(body: object) -> JobSpec:
    parsed = parse(JobBody, body)
    memory_mb, cpu_seconds = parsed.resources or (None, None)
    return JobSpec(
        command=parsed.command,
        working_directory=parsed.working_directory,
        environment=parsed.environment or {},
        run_type=parsed.run_type,
        tags={k: v for k, v in (parsed.tags or {}).items() if v is not None},
        properties=parsed.properties or {},
        memory_mb=memory_mb,
        cpu_seconds=cpu_seconds,
        network=parsed.network,
    )


@dataclass(frozen=True)
class ModelMetadata:
    tags: dict[str, Any]
    properties: dict[str, Any]
    description: str
    directory: bool = False


def _required_text(text: str) -> Any:
    def check(value: object) -> str:
        if not isinstance(value, str) or not value:
            raise Invalid(text)
        return value

    return checker(check, {"type": "string", "minLength": 1})


def _artifact_source(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid("is required: an artifact file or directory of the run")
    return checked(lambda: check_artifact_path(value.rstrip("/"), "artifactPath"))


class ModelUploadMetadata(Body):
    """The ``metadata`` part (JSON text) of a multipart model upload."""

    description: Annotated[Any, *optional_text(MAX_STRING_VALUE)] = None
    directory: Annotated[bool, reason("must be true or false"), Field(
        description="the files are one directory model (their names are relative paths)",
    )] = False
    tags: Tags = None
    properties: Properties = None

    @classmethod
    def canonical_members(cls, value: object) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise Invalid("must be a JSON object", field="metadata")
        return super().canonical_members(value)


class ModelFromRunBody(Body):
    """The JSON body registering a model version from a run's artifact."""

    model_config = ConfigDict(json_schema_extra={"required": ["runId", "artifactPath"]})

    description: Annotated[Any, *optional_text(MAX_STRING_VALUE)] = None
    tags: Tags = None
    properties: Properties = None
    # Checked after the others, as they always were: so not required by the model (an absent
    # one is read as null, whose reason is the same); the schema says they are required.
    run_id: Annotated[Any, *_required_text("is required: the run whose artifact becomes the model")] = None
    artifact_path: Annotated[Any, Field(description="an artifact file or directory"),
                             *checker(_artifact_source, {"type": "string", "minLength": 1})] = None

    @classmethod
    def canonical_members(cls, value: object) -> dict[str, Any]:
        return {"runId": None, "artifactPath": None, **super().canonical_members(value)}


def parse_model_metadata(body: object, *, allow_source: bool) -> tuple[ModelMetadata, str | None, str | None]:
    """Model metadata (``tags``, ``properties``, ``description``; ``directory`` for uploads) and,
    for JSON registrations, the source ``runId`` and ``artifactPath``."""
    if not allow_source:
        upload = parse(ModelUploadMetadata, {} if body is None else body)
        return _metadata(upload.description, upload.tags, upload.properties, upload.directory), None, None
    parsed = parse(ModelFromRunBody, body)
    metadata = _metadata(parsed.description, parsed.tags, parsed.properties, False)
    return metadata, parsed.run_id, parsed.artifact_path


def _metadata(description: str | None, tags: dict[str, Any] | None, properties: dict[str, str] | None,
              directory: bool) -> ModelMetadata:
    return ModelMetadata(
        tags={k: v for k, v in (tags or {}).items() if v is not None},
        properties=properties or {},
        description=description or "",
        directory=directory,
    )
