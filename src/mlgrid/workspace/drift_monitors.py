"""Data-drift monitors: their definitions, their runs and DatasetDriftDetected (SPEC §2.2, §9).

A monitor compares windows of a target dataset (which must have a timestamp column) with a
baseline dataset. ``DriftMonitorService`` owns the rules around the pure computation in
``workspace/drift/``:

* ``put``/``get``/``list_monitors``/``delete`` — the definition (its body: ``drift_monitor_bodies``),
  validated against the workspace's registered datasets (a 400 names the field and changes nothing);
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
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.broker.names import check_name
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.domain.records import DriftRunRow, MonitorRow
from mlgrid.errors import Conflict, NotFound, PreconditionFailed, invalid
from mlgrid.etags import new_etag
from mlgrid.events.jsoncodec import loads_exact
from mlgrid.events.ml import dataset_drift_detected
from mlgrid.store import datasets as dataset_store
from mlgrid.store import drift as drift_store
from mlgrid.store.datasets import DatasetRow
from mlgrid.store.drift import SEQUENCER_KIND
from mlgrid.workspace.datasets import DatasetService
from mlgrid.workspace.drift.cache import NullCache
from mlgrid.workspace.drift.windows import Frequency, Window, window_start
from mlgrid.workspace.drift_monitor_bodies import (
    DEFAULT_SEED,
    MAX_WINDOWS_PER_CALL,
    MonitorSpec,
    parse_monitor_body,
    parse_range,
)
from mlgrid.workspace.service import Workspace, WorkspaceService, check_if_match

if TYPE_CHECKING:
    import pandas as pd

    from mlgrid.workspace.drift.compute import DriftResult

log = logging.getLogger("mlgrid.workspace.drift")


BACKFILL = "backfill"
SCHEDULE = "schedule"

#: Checks, inside a write transaction, that a lease is still held (``cluster/node.Node.fence``).
Fence = Callable[[AsyncConnection], Awaitable[None]]

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
