"""Data-drift monitors: their definitions, their runs and DatasetDriftDetected (SPEC §2.2, §9).

A monitor compares windows of a target dataset (which must have a timestamp column) with a
baseline dataset. ``DriftMonitorService`` owns the rules around the pure computation in
``workspace/drift/``:

* ``put``/``get``/``list_monitors``/``delete`` — the definition, validated against the
  workspace's registered datasets (a 400 names the field and changes nothing);
* ``backfill`` — every complete window of a range, in time order;
* ``analyse`` — what backfill and the scheduler share: windows that already have a run are
  returned as stored (a window is judged once, and announced at most once); the others are
  computed in a worker thread so the event loop keeps serving, then each is committed in its
  own transaction together with its DatasetDriftDetected event when the coefficient reaches
  the threshold.

A run's id is ``{monitor name}_{window start as YYYYMMDD}_{8 hex}``: readable in a list of
runs, and unique across monitors that reuse a name.
"""

from __future__ import annotations

import asyncio
import logging
import math
import numbers
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import ConfigDict
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.body import Body, Invalid, Missing, case_insensitive, checked, checker, echoed, parse
from mlgrid.broker.names import check_name
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.domain.records import DriftRunRow, MonitorRow
from mlgrid.errors import Conflict, NotFound, PreconditionFailed, invalid
from mlgrid.etags import new_etag
from mlgrid.events.jsoncodec import loads_exact
from mlgrid.events.ml import dataset_drift_detected
from mlgrid.events.timestamps import parse_timestamp
from mlgrid.store import datasets as dataset_store
from mlgrid.store import drift as drift_store
from mlgrid.store.datasets import DatasetRow
from mlgrid.store.drift import SEQUENCER_KIND
from mlgrid.workspace.datasets import DatasetService
from mlgrid.workspace.drift.cache import NullCache
from mlgrid.workspace.drift.windows import Frequency, Window, complete_windows, window_start
from mlgrid.workspace.service import Workspace, WorkspaceService, check_if_match

if TYPE_CHECKING:
    import pandas as pd

    from mlgrid.workspace.drift.compute import DriftResult

log = logging.getLogger("mlgrid.workspace.drift")

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

BACKFILL = "backfill"
SCHEDULE = "schedule"

#: Checks, inside a write transaction, that a lease is still held (``cluster/node.Node.fence``).
Fence = Callable[[AsyncConnection], Awaitable[None]]

# --- request bodies (pure) -----------------------------------------------------------------


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


# --- analysis (blocking; runs in a worker thread) -------------------------------------------


@dataclass(frozen=True)
class Frames:
    """A monitor's inputs, loaded once per backfill or scheduler pass."""

    baseline: pd.DataFrame
    target: pd.DataFrame  # rows with a timestamp, sorted by it
    timestamp_column: str


def prepare_target(frame: pd.DataFrame, timestamp_column: str) -> pd.DataFrame:
    """Rows with a timestamp, in time order, so each window is a slice found by bisection."""
    kept = frame[frame[timestamp_column].notna()]
    return kept.sort_values(timestamp_column, kind="stable").reset_index(drop=True)


def window_rows(frames: Frames, window: Window) -> pd.DataFrame:
    import pandas as pd

    stamps = frames.target[frames.timestamp_column]
    first = int(stamps.searchsorted(pd.Timestamp(window[0]), side="left"))
    last = int(stamps.searchsorted(pd.Timestamp(window[1]), side="left"))
    return frames.target.iloc[first:last]


def analyse_window(
    frames: Frames,
    window: Window,
    monitor: MonitorRow,
    seed: int,
    nulls: NullCache[Any] | None = None,
) -> DriftResult:
    from mlgrid.workspace.drift.compute import compute_drift

    return compute_drift(
        frames.baseline, window_rows(frames, window), monitor.features, seed=seed,
        timestamp_column=frames.timestamp_column, false_alarm_rate=monitor.false_alarm_rate,
        nulls=nulls, baseline_key=monitor.baseline_dataset_id,
    )


def run_id_for(monitor_name: str, start: datetime) -> str:
    return f"{monitor_name}_{start:%Y%m%d}_{uuid.uuid4().hex[:8]}"


def _plain(value: Any) -> Any:
    """JSON-safe copy of the computation's output (numpy scalars made plain, NaN as null)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    item = getattr(value, "item", None)  # numpy bool and other 0-d values
    if callable(item):
        return _plain(item())
    return str(value)


# --- the service ---------------------------------------------------------------------------


def _analysis_key(row: MonitorRow) -> tuple[str, str, tuple[str, ...] | None, str, float | None]:
    """What a window's result depends on; a change of it during an analysis voids the result."""
    features = None if row.features is None else tuple(row.features)
    return row.baseline_dataset_id, row.target_dataset_id, features, row.frequency, row.false_alarm_rate


class DriftMonitorService:
    def __init__(
        self,
        core: WorkspaceService,
        datasets: DatasetService,
        *,
        seed: int = DEFAULT_SEED,
        max_windows_per_call: int = MAX_WINDOWS_PER_CALL,
    ) -> None:
        self.core = core
        self.datasets = datasets
        self.seed = seed
        self.max_windows_per_call = max_windows_per_call
        self.nulls: NullCache[Any] = NullCache()
        """Calibration nulls per (baseline, features, window size): deterministic, so kept in
        memory and recomputed after a restart (see ``workspace/drift/calibration.py``)."""
        self.schedule_changed: list[Callable[[], None]] = []
        """Called after a PUT that leaves a monitor scheduled (the local scheduler wakes up)."""

    # --- definitions ---------------------------------------------------------------------

    async def _check_datasets(self, conn: Any, ws: Workspace, spec: MonitorSpec) -> None:
        baseline = await dataset_store.get_by_id(conn, ws.key, spec.baseline_dataset_id)
        if baseline is None:
            raise invalid(
                "properties.baselineDatasetId",
                f"no dataset with id {spec.baseline_dataset_id} in workspace {ws.name!r}",
            )
        target = await dataset_store.get_by_id(conn, ws.key, spec.target_dataset_id)
        if target is None:
            raise invalid(
                "properties.targetDatasetId",
                f"no dataset with id {spec.target_dataset_id} in workspace {ws.name!r}",
            )
        if not target.timestamp_column:
            raise invalid(
                "properties.targetDatasetId",
                f"dataset {target.name}:{target.version} has no timestampColumn; a drift target needs "
                "one to cut windows (register it with timestampColumn)",
            )
        if spec.features is None:
            return
        sides = [("baseline", baseline, _column_names(baseline)), ("target", target, _column_names(target))]
        for index, name in enumerate(spec.features):
            where = f"properties.features[{index}]"
            if name == target.timestamp_column:
                raise invalid(where, f"{name!r} is the target's timestamp column; it defines the windows")
            for role, dataset, columns in sides:
                if name not in columns:
                    label = f"{dataset.name}:{dataset.version}"
                    raise invalid(where, f"{name!r} is not a column of the {role} dataset {label}")

    async def put(
        self, workspace_name: str, name: str, body: object, *, if_match: str | None = None
    ) -> tuple[MonitorRow, bool]:
        """Create or replace a monitor; returns ``(monitor, created)``. Replacing keeps its id,
        its runs and its scheduler progress; the etag changes only when the definition does."""
        check_name(name, "dataDriftName")
        spec = parse_monitor_body(body)
        now = self.core.clock()
        async with self.core.transaction("datadrift.put") as tx:
            ws = await self.core.get_in(tx.conn, workspace_name)
            existing = await drift_store.get_monitor(tx.conn, ws.key, name, for_update=True)
            if existing is None and if_match is not None:
                raise PreconditionFailed(f"data drift monitor {name!r} does not exist (If-Match was given)")
            if existing is not None:
                check_if_match(if_match, existing.etag, f"data drift monitor {existing.name!r}")
            await self._check_datasets(tx.conn, ws, spec)
            if existing is None:
                row = _apply(
                    spec,
                    MonitorRow(
                        id=str(uuid.uuid4()), workspace_key=ws.key, name=name,
                        baseline_dataset_id="", target_dataset_id="", features=None,
                        frequency=spec.frequency.value, latency_hours=0.0, threshold=spec.threshold,
                        schedule_enabled=False, schedule_since=None, etag=new_etag(),
                        created_at=now, updated_at=now,
                    ),
                )
                await drift_store.insert_monitor(tx.conn, row)
            else:
                row = _apply(spec, existing)
                if row != existing:
                    row = replace(row, etag=new_etag(), updated_at=now)
                    await drift_store.update_monitor(tx.conn, row)
            if row.schedule_enabled:
                for wake in self.schedule_changed:
                    tx.after_commit(wake)
        return row, existing is None

    async def _find(self, conn: Any, workspace_name: str, name: str) -> tuple[Workspace, MonitorRow]:
        """The workspace (404) and its monitor (404), read on one connection."""
        ws = await self.core.get_in(conn, workspace_name)
        row = await drift_store.get_monitor(conn, ws.key, name)
        if row is None:
            raise _not_found(name, ws)
        return ws, row

    async def get(self, workspace_name: str, name: str) -> MonitorRow:
        async with self.core.db.read() as conn:
            _, row = await self._find(conn, workspace_name, name)
        return row

    async def list_monitors(self, workspace_name: str) -> list[MonitorRow]:
        async with self.core.db.read() as conn:
            ws = await self.core.get_in(conn, workspace_name)
            return await drift_store.list_monitors(conn, ws.key)

    async def delete(self, workspace_name: str, name: str, *, if_match: str | None = None) -> None:
        """Delete the monitor and its runs (events already published stay published)."""
        async with self.core.transaction("datadrift.delete") as tx:
            ws = await self.core.get_in(tx.conn, workspace_name)
            row = await drift_store.get_monitor(tx.conn, ws.key, name, for_update=True)
            if row is None:
                raise _not_found(name, ws)
            check_if_match(if_match, row.etag, f"data drift monitor {row.name!r}")
            await drift_store.delete_monitor(tx.conn, row)

    async def delete_workspace_rows(self, workspace_key: str) -> None:
        """``WorkspaceService.before_delete`` hook: a deleted workspace keeps no monitors."""
        async with self.core.db.write() as conn:
            await drift_store.delete_workspace(conn, workspace_key)

    # --- runs ----------------------------------------------------------------------------

    async def backfill(self, workspace_name: str, name: str, body: object) -> list[DriftRunRow]:
        """Analyse every complete window of ``{"start", "end"}``; windows analysed before are
        returned as stored and announced no second time."""
        async with self.core.db.read() as conn:
            ws, monitor = await self._find(conn, workspace_name, name)
        windows = parse_range(body, Frequency(monitor.frequency), self.max_windows_per_call)
        return await self.analyse(ws, monitor, windows, BACKFILL)

    async def list_runs(
        self,
        workspace_name: str,
        name: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        offset: int = 0,
        limit: int = 1000,
    ) -> list[DriftRunRow]:
        async with self.core.db.read() as conn:
            _, monitor = await self._find(conn, workspace_name, name)
            return await drift_store.list_runs(
                conn, monitor.id, start=start, end=end, offset=offset, limit=limit
            )

    async def load_frames(self, ws: Workspace, monitor: MonitorRow) -> Frames:
        """The monitor's baseline and target, read in worker threads."""
        target_row = await self.datasets.get_by_id(ws.name, monitor.target_dataset_id)
        timestamp_column = target_row.row.timestamp_column
        if not timestamp_column:  # registered datasets never change; checked at PUT already
            raise Conflict(f"target dataset {monitor.target_dataset_id} has no timestamp column")
        baseline = await self.datasets.frame(ws.name, monitor.baseline_dataset_id)
        target = await self.datasets.frame(ws.name, monitor.target_dataset_id)
        prepared = await asyncio.to_thread(prepare_target, target, timestamp_column)
        return Frames(baseline, prepared, timestamp_column)

    async def first_window_start(self, ws: Workspace, monitor: MonitorRow) -> datetime | None:
        """Start of the window holding the target's earliest timestamp (where a schedule
        begins), or None when the target has no timestamped row."""
        frames = await self.load_frames(ws, monitor)
        if frames.target.empty:
            return None
        first = frames.target[frames.timestamp_column].iloc[0].to_pydatetime()
        return window_start(first, monitor.frequency)

    async def analyse(
        self,
        ws: Workspace,
        monitor: MonitorRow,
        windows: list[Window],
        trigger: str,
        fence: Fence | None = None,
    ) -> list[DriftRunRow]:
        """The run of every window, in the order given: stored ones as they are, the others
        computed now and committed one by one (a crash mid-way keeps the finished windows).
        ``fence`` (the scheduler's lease, several nodes) is checked in each run's transaction:
        a node that lost the scheduler's lease records nothing."""
        async with self.core.db.read() as conn:
            stored = await drift_store.runs_for_windows(conn, monitor.id, windows)
        todo = [w for w in windows if w not in stored]
        if todo:
            frames = await self.load_frames(ws, monitor)
            for window in todo:
                result = await asyncio.to_thread(
                    analyse_window, frames, window, monitor, self.seed, self.nulls
                )
                stored[window] = await self._record(ws, monitor, window, result, trigger, fence)
        return [stored[w] for w in windows]

    async def _record(
        self,
        ws: Workspace,
        monitor: MonitorRow,
        window: Window,
        result: DriftResult,
        trigger: str,
        fence: Fence | None = None,
    ) -> DriftRunRow:
        """Store one analysed window and, when it drifted, its event — one transaction."""
        from mlgrid.workspace.drift.compute import decide

        start, end = window
        async with self.core.transaction("datadrift.run") as tx:
            if fence is not None:
                await fence(tx.conn)
            current = await drift_store.lock_monitor(tx.conn, monitor.id)
            if current is None:
                raise NotFound(
                    f"data drift monitor {monitor.name!r} was deleted", code=ErrorCode.DATA_DRIFT_NOT_FOUND
                )
            if _analysis_key(current) != _analysis_key(monitor):
                raise Conflict(
                    f"data drift monitor {monitor.name!r} was changed during the analysis; run it again",
                    code=ErrorCode.DATA_DRIFT_CHANGED,
                )
            existing = await drift_store.get_run_for_window(tx.conn, monitor.id, start, end)
            if existing is not None:
                return existing
            coefficient = None if result.coefficient is None else float(result.coefficient)
            detected = decide(
                coefficient,
                result.p_value,
                threshold=current.threshold,
                false_alarm_rate=current.false_alarm_rate,
            )
            run = DriftRunRow(
                id=run_id_for(current.name, start),
                monitor_id=current.id,
                workspace_key=current.workspace_key,
                window_start=start,
                window_end=end,
                coefficient=coefficient,
                reason=result.reason,
                threshold=current.threshold,
                feature_contributions=_plain(result.feature_contributions),
                feature_metrics=_plain(result.feature_metrics),
                row_counts=_plain(result.row_counts),
                skipped_features=_plain(result.skipped_features),
                rows_compared=int(result.rows_compared),
                baseline_dataset_id=current.baseline_dataset_id,
                target_dataset_id=current.target_dataset_id,
                monitor_etag=current.etag,
                trigger=trigger,
                event_published=detected,
                event_id=str(uuid.uuid4()) if detected else None,
                created_at=self.core.clock(),
                auroc=result.auroc,
                p_value=result.p_value,
                classifier_p_value=result.classifier_p_value,
                false_alarm_rate=current.false_alarm_rate,
                feature_tests=_plain(result.feature_tests),
                explanation=result.explanation,
                null_rows=int(result.null_rows),
                null_draws=int(result.null_draws),
            )
            if not await drift_store.insert_run(tx.conn, run):
                raced = await drift_store.get_run_for_window(tx.conn, monitor.id, start, end)
                if raced is None:  # pragma: no cover - the unique key said it exists
                    raise Conflict(f"window {start.isoformat()} of {monitor.name!r} could not be recorded")
                return raced
            if detected and coefficient is not None:
                workspace = await self.core.get_in(tx.conn, ws.name)
                event = dataset_drift_detected(
                    topic_id=workspace.resource_id,
                    data_drift_id=current.id,
                    data_drift_name=current.name,
                    run_id=run.id,
                    base_dataset_id=current.baseline_dataset_id,
                    target_dataset_id=current.target_dataset_id,
                    drift_coefficient=coefficient,
                    start_time=start,
                    end_time=end,
                    etag=current.etag,
                    sequencer=await tx.sequencer(workspace, SEQUENCER_KIND, current.id),
                    event_time=run.created_at,
                    event_id=run.event_id,
                    extra=_event_extra(run, result),
                )
                await tx.emit(workspace, event)
            if trigger == SCHEDULE:
                await drift_store.set_schedule_since(tx.conn, current.id, end)
        log.info(
            "drift window analysed",
            extra={
                "action": "drift_run",
                "monitor": current.id,
                "run_id": run.id,
                "coefficient": coefficient,
                "event_published": detected,
            },
        )
        return run


def _event_extra(run: DriftRunRow, result: DriftResult) -> dict[str, Any]:
    """Fields DatasetDriftDetected carries beyond the spec's (consumers ignore unknown ones)."""
    return {
        "DriftedFeatures": _plain(
            [
                {
                    "Feature": t["feature"],
                    "Test": t["test"],
                    "PValue": t["adjustedPValue"],
                    "EffectSize": t["effectSize"],
                    "EffectMeasure": t["effectMeasure"],
                }
                for t in result.drifted_features
            ]
        ),
        "DriftExplanation": run.explanation,
        "AUROC": run.auroc,
        "PValue": run.p_value,
        "FalseAlarmRate": run.false_alarm_rate,
        "Threshold": run.threshold,
    }


def _not_found(name: str, ws: Workspace) -> NotFound:
    message = f"data drift monitor {name!r} does not exist in workspace {ws.name!r}"
    return NotFound(message, code=ErrorCode.DATA_DRIFT_NOT_FOUND)


def _apply(spec: MonitorSpec, row: MonitorRow) -> MonitorRow:
    return replace(
        row,
        baseline_dataset_id=spec.baseline_dataset_id,
        target_dataset_id=spec.target_dataset_id,
        features=spec.features,
        frequency=spec.frequency.value,
        latency_hours=spec.latency_hours,
        threshold=spec.threshold,
        false_alarm_rate=spec.false_alarm_rate,
        schedule_enabled=spec.schedule_enabled,
    )


def _column_names(row: DatasetRow) -> set[str]:
    return {str(c.get("name")) for c in loads_exact(row.columns_json) if isinstance(c, dict)}
