"""The definition of a data-drift monitor as a request states it (SPEC §9): its ``PUT`` body
and a backfill's range, validated by body models that are also their OpenAPI schemas (a 400
names the field). Pure: the rules that need the workspace (its datasets and their columns) are
``DriftMonitorService``'s, in ``drift_monitors``."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import ConfigDict

from mlgrid.body import Body, Invalid, Missing, case_insensitive, checked, checker, echoed, parse
from mlgrid.errors import invalid
from mlgrid.events.timestamps import parse_timestamp
from mlgrid.workspace.drift.windows import Frequency, Window, complete_windows

DEFAULT_FREQUENCY = Frequency.DAY
DEFAULT_LATENCY_HOURS = 0.0
DEFAULT_THRESHOLD = 0.2
DEFAULT_FALSE_ALARM_RATE = 0.05
MIN_FALSE_ALARM_RATE = 0.001
MAX_FALSE_ALARM_RATE = 0.5
MAX_LATENCY_HOURS = 8760.0
"""A year: later than that a window is not monitoring any more, it is archaeology."""
MAX_WINDOWS_PER_CALL = 400
"""Windows one backfill request may cover (more than a year of days); the SDK splits longer
ranges into several requests."""
MAX_FEATURES = 1000
DEFAULT_SEED = 0


@dataclass(frozen=True)
class MonitorSpec:
    """A monitor's definition as the API accepts it (defaults filled in)."""

    baseline_dataset_id: str
    target_dataset_id: str
    features: list[str] | None = None
    frequency: Frequency = DEFAULT_FREQUENCY
    latency_hours: float = DEFAULT_LATENCY_HOURS
    threshold: float = DEFAULT_THRESHOLD
    schedule_enabled: bool = False
    false_alarm_rate: float | None = None
    """None (the default, SPEC §2.2): decide by ``threshold`` alone, the Azure-style coefficient
    cut. A rate (``DEFAULT_FALSE_ALARM_RATE`` is the suggested one) turns on the calibrated
    decision: the window alarms when its evidence is that rare among baseline windows."""


def _number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise invalid(field, "must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise invalid(field, "must be a finite number")
    return number


def _dataset_id(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid(field, "is required: the id (a UUID) of a dataset registered in this workspace")
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError as exc:
        raise invalid(field, f"{value!r} is not a dataset id (a UUID)") from exc


def _features(value: object) -> list[str] | None:
    field = "properties.features"
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise invalid(field, "must be null (every usable column) or a non-empty list of column names")
    if len(value) > MAX_FEATURES:
        raise invalid(field, f"at most {MAX_FEATURES} features")
    names: list[str] = []
    for index, name in enumerate(value):
        if not isinstance(name, str) or not name:
            raise invalid(f"{field}[{index}]", "must be a non-empty column name")
        if name in names:
            raise invalid(f"{field}[{index}]", f"{name!r} is listed twice")
        names.append(name)
    return names


def _frequency(value: object) -> Frequency:
    for frequency in Frequency:
        if isinstance(value, str) and value.lower() == frequency.value.lower():
            return frequency
    raise invalid("properties.frequency", f"must be one of Day, Week, Month (got {value!r})")


class _InBodyOrder(Body):
    """Unknown members are named in the body's order (the first one sent), as they always were."""

    @classmethod
    def canonical_members(cls, value: object) -> dict[str, Any]:
        if isinstance(value, Mapping):
            known = [f.alias or name for name, f in cls.model_fields.items()]
            for key in value:
                if key not in known:
                    raise Invalid(cls.unknown_reason(known), at=str(key))
        return super().canonical_members(value)


def _rule(check: Callable[[Any], Any], schema: dict[str, Any]) -> tuple[Any, ...]:
    """A field checked by one of the helpers above (which name their own absolute path)."""
    return checker(lambda value: checked(lambda: check(value)), schema)


def _optional_number(field: str, low: float, high: float, reason_text: str,
                     low_open: bool = False) -> Callable[[Any], float | None]:
    def check(value: object) -> float | None:
        if value is None:
            return None
        number = _number(value, field)
        if not (low < number if low_open else low <= number) or number > high:
            raise invalid(field, reason_text)
        return number

    return check


def _schedule_enabled(value: object) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise invalid("properties.scheduleEnabled", "must be true or false")
    return value


_DATASET_ID = "id of a dataset version of this workspace"


class MonitorProperties(_InBodyOrder):
    baseline_dataset_id: Annotated[Any, *_rule(
        lambda v: _dataset_id(v, "properties.baselineDatasetId"),
        {"type": "string", "format": "uuid", "description": _DATASET_ID})] = None
    target_dataset_id: Annotated[Any, *_rule(
        lambda v: _dataset_id(v, "properties.targetDatasetId"),
        {"type": "string", "format": "uuid", "description": "id of a dataset version with a timestampColumn"},
    )] = None
    features: Annotated[Any, *_rule(_features, {
        "type": ["array", "null"], "minItems": 1, "maxItems": MAX_FEATURES,
        "items": {"type": "string", "minLength": 1},
        "description": "columns to compare (in both datasets); null: every usable column",
    })] = None
    frequency: Annotated[Any, *_rule(lambda v: None if v is None else _frequency(v), {
        "type": ["string", "null"], "pattern": case_insensitive([f.value for f in Frequency]),
        "default": DEFAULT_FREQUENCY.value,
        "description": "window length; UTC calendar windows, weeks Monday-Sunday",
    })] = None
    latency: Annotated[Any, *_rule(_optional_number(
        "properties.latency", 0, MAX_LATENCY_HOURS, f"must be 0 to {MAX_LATENCY_HOURS:g} hours"), {
        "type": ["number", "null"], "minimum": 0, "maximum": MAX_LATENCY_HOURS, "default": 0,
        "description": "hours after a window ends before the scheduler analyses it",
    })] = None
    threshold: Annotated[Any, *_rule(_optional_number(
        "properties.threshold", 0, 1, "must be greater than 0 and at most 1", low_open=True), {
        "type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1, "default": DEFAULT_THRESHOLD,
        "description": "the Azure-style rule: with falseAlarmRate null, a coefficient at or above it "
                       "emits DatasetDriftDetected",
    })] = None
    false_alarm_rate: Annotated[Any, *_rule(_optional_number(
        "properties.falseAlarmRate", MIN_FALSE_ALARM_RATE, MAX_FALSE_ALARM_RATE,
        f"must be {MIN_FALSE_ALARM_RATE:g} to {MAX_FALSE_ALARM_RATE:g}, "
        "or null to decide by threshold alone"), {
        "type": ["number", "null"], "minimum": MIN_FALSE_ALARM_RATE, "maximum": MAX_FALSE_ALARM_RATE,
        "default": None,
        "description": "share of no-drift windows that alarm: a window drifts when its calibrated p-value "
                       "is at most this (suggested: " f"{DEFAULT_FALSE_ALARM_RATE:g}); null decides by "
                       "threshold alone",
    })] = None
    schedule_enabled: Annotated[Any, *_rule(_schedule_enabled, {
        "type": ["boolean", "null"], "default": False})] = None
    created_time: Any = echoed()
    updated_time: Any = echoed()
    scheduled_until: Any = echoed()
    target_timestamp_column: Any = echoed()

    @classmethod
    def canonical_members(cls, value: object) -> dict[str, Any]:
        # The dataset ids are checked in their turn (an absent one reads as null, with the same
        # reason), so the model does not require them; the schema does.
        return {"baselineDatasetId": None, "targetDatasetId": None, **super().canonical_members(value)}

    model_config = ConfigDict(json_schema_extra={"required": ["baselineDatasetId", "targetDatasetId"]})


class MonitorBody(_InBodyOrder):
    """The body of ``PUT .../datadrifts/{name}``: Azure's data-drift resource shape."""

    properties: Annotated[MonitorProperties, Missing("must be a JSON object")]
    id: Any = echoed()
    name: Any = echoed()
    type: Any = echoed()
    etag: Any = echoed()


def parse_monitor_body(body: object) -> MonitorSpec:
    """The definition in ``PUT .../datadrifts/{name}``; a 400 names the first bad field."""
    props = parse(MonitorBody, body).properties
    spec = MonitorSpec(
        baseline_dataset_id=props.baseline_dataset_id,
        target_dataset_id=props.target_dataset_id,
        features=props.features,
        schedule_enabled=bool(props.schedule_enabled),
        false_alarm_rate=props.false_alarm_rate,
    )
    if props.frequency is not None:
        spec = replace(spec, frequency=props.frequency)
    if props.latency is not None:
        spec = replace(spec, latency_hours=props.latency)
    if props.threshold is not None:
        spec = replace(spec, threshold=props.threshold)
    return spec


_MOMENT = "must be an ISO 8601 date-time (e.g. 2024-01-01T00:00:00Z; no offset means UTC)"


def _moment_of(value: object) -> datetime:
    parsed = parse_timestamp(value) if isinstance(value, str) else None
    if parsed is None:
        raise Invalid(_MOMENT)
    return parsed


class RangeBody(Body):
    """The body of a backfill (``POST .../runs``); the window count is checked with the monitor."""

    start: Annotated[Any, Missing(_MOMENT), *checker(_moment_of, {
        "type": "string", "format": "date-time", "description": "no offset means UTC"})]
    end: Annotated[Any, Missing(_MOMENT), *checker(_moment_of, {
        "type": "string", "format": "date-time",
        "description": f"every complete window in [start, end); at most {MAX_WINDOWS_PER_CALL}"})]


def parse_range(body: object, frequency: Frequency, max_windows: int = MAX_WINDOWS_PER_CALL) -> list[Window]:
    """The complete windows of ``{"start", "end"}`` (a backfill request), in time order."""
    parsed = parse(RangeBody, body)
    start: datetime = parsed.start
    end: datetime = parsed.end
    if start >= end:
        raise invalid("end", "must be later than start")
    # Bound the work before listing windows: a range of centuries is refused without
    # materialising its windows.
    if (end - start).days > max_windows * 31 + 31:
        raise invalid("end", f"the range covers more than {max_windows} {frequency.value} windows")
    try:
        windows = complete_windows(start, end, frequency)
    except (OverflowError, ValueError) as exc:  # a window reaching past the year 9999
        raise invalid("end", "is out of the supported range of dates") from exc
    if len(windows) > max_windows:
        raise invalid(
            "end",
            f"the range covers {len(windows)} {frequency.value} windows; at most {max_windows} per request",
        )
    return windows
