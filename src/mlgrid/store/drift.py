"""Data-drift monitors and their runs (one row per analysed window).

A run is unique per (monitor, window start, window end): the insert is what decides that a
window has been analysed, so a backfill and the scheduler, or two nodes' schedulers on one
PostgreSQL database, can never both record (and both announce) the same window.
``lock_monitor`` takes the monitor's row lock on PostgreSQL (SQLite's single writer already
serialises), so everything one window's commit checks and writes happens in one ordered step.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.domain.error_codes import ErrorCode
from mlgrid.domain.records import DriftRunRow, MonitorRow
from mlgrid.errors import AlreadyExists
from mlgrid.events.jsoncodec import dumps
from mlgrid.store.clock import to_epoch
from mlgrid.store.rows import to_record
from mlgrid.store.tables import drift_monitors, drift_runs, workspace_counters

SEQUENCER_KIND = "datadrift"
"""``workspace_counters.kind`` of a monitor's event Sequencer (``object_key``: its id)."""


def _json(value: Any) -> str:
    return dumps(value).decode()


def _monitor(r: Any) -> MonitorRow:
    features = r._mapping["features"]
    return to_record(MonitorRow, r, features=None if features is None else list(orjson.loads(features)))


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _run(r: Any) -> DriftRunRow:
    m = r._mapping
    return to_record(
        DriftRunRow,
        r,
        feature_contributions=orjson.loads(m["feature_contributions"]),
        feature_metrics=orjson.loads(m["feature_metrics"]),
        row_counts=orjson.loads(m["row_counts"]),
        skipped_features=orjson.loads(m["skipped_features"]),
        feature_tests=list(orjson.loads(m["feature_tests"] or "[]")),
        null_rows=int(m["null_rows"] or 0),
        null_draws=int(m["null_draws"] or 0),
    )


def _monitor_values(row: MonitorRow) -> dict[str, Any]:
    return {
        "baseline_dataset_id": row.baseline_dataset_id,
        "target_dataset_id": row.target_dataset_id,
        "features": None if row.features is None else _json(row.features),
        "frequency": row.frequency,
        "latency_hours": row.latency_hours,
        "threshold": row.threshold,
        "false_alarm_rate": row.false_alarm_rate,
        "schedule_enabled": row.schedule_enabled,
        "schedule_since": None if row.schedule_since is None else to_epoch(row.schedule_since),
        "etag": row.etag,
        "updated_at": to_epoch(row.updated_at),
    }


# --- monitors ------------------------------------------------------------------------------


async def insert_monitor(conn: AsyncConnection, row: MonitorRow) -> None:
    try:
        async with conn.begin_nested():
            await conn.execute(
                drift_monitors.insert().values(
                    id=row.id,
                    workspace_key=row.workspace_key,
                    name_key=row.name_key,
                    name=row.name,
                    created_at=to_epoch(row.created_at),
                    **_monitor_values(row),
                )
            )
    except IntegrityError as exc:
        message = f"data drift monitor {row.name!r} already exists"
        raise AlreadyExists(message, code=ErrorCode.DATA_DRIFT_EXISTS) from exc


async def update_monitor(conn: AsyncConnection, row: MonitorRow) -> None:
    statement = drift_monitors.update().where(drift_monitors.c.id == row.id)
    await conn.execute(statement.values(**_monitor_values(row)))


async def get_monitor(
    conn: AsyncConnection, workspace_key: str, name: str, *, for_update: bool = False
) -> MonitorRow | None:
    query = select(drift_monitors).where(
        drift_monitors.c.workspace_key == workspace_key, drift_monitors.c.name_key == name.lower()
    )
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else _monitor(row)


async def lock_monitor(conn: AsyncConnection, monitor_id: str) -> MonitorRow | None:
    """The monitor by id with its row lock (PostgreSQL), or None when it was deleted."""
    query = select(drift_monitors).where(drift_monitors.c.id == monitor_id).with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else _monitor(row)


async def list_monitors(conn: AsyncConnection, workspace_key: str) -> list[MonitorRow]:
    rows = await conn.execute(
        select(drift_monitors)
        .where(drift_monitors.c.workspace_key == workspace_key)
        .order_by(drift_monitors.c.name_key)
    )
    return [_monitor(r) for r in rows]


async def list_scheduled(conn: AsyncConnection) -> list[MonitorRow]:
    """Every monitor with ``scheduleEnabled``, in all workspaces (the scheduler's work list)."""
    rows = await conn.execute(
        select(drift_monitors)
        .where(drift_monitors.c.schedule_enabled.is_(True))
        .order_by(drift_monitors.c.workspace_key, drift_monitors.c.name_key)
    )
    return [_monitor(r) for r in rows]


async def set_schedule_since(conn: AsyncConnection, monitor_id: str, since: datetime) -> None:
    """Move the scheduler's progress forward (never back) without touching the etag: the
    scheduler's progress is not a change of the monitor's definition."""
    epoch = to_epoch(since)
    await conn.execute(
        drift_monitors.update()
        .where(
            drift_monitors.c.id == monitor_id,
            or_(drift_monitors.c.schedule_since.is_(None), drift_monitors.c.schedule_since < epoch),
        )
        .values(schedule_since=epoch)
    )


async def delete_monitor(conn: AsyncConnection, monitor: MonitorRow) -> None:
    """The monitor, its runs and its Sequencer counter."""
    await conn.execute(delete(drift_runs).where(drift_runs.c.monitor_id == monitor.id))
    await conn.execute(
        delete(workspace_counters).where(
            workspace_counters.c.workspace_key == monitor.workspace_key,
            workspace_counters.c.kind == SEQUENCER_KIND,
            workspace_counters.c.object_key == monitor.id,
        )
    )
    await conn.execute(delete(drift_monitors).where(drift_monitors.c.id == monitor.id))


async def delete_workspace(conn: AsyncConnection, workspace_key: str) -> None:
    """Every monitor and run of a workspace (the workspace is being deleted)."""
    await conn.execute(delete(drift_runs).where(drift_runs.c.workspace_key == workspace_key))
    await conn.execute(delete(drift_monitors).where(drift_monitors.c.workspace_key == workspace_key))


# --- runs ----------------------------------------------------------------------------------


async def insert_run(conn: AsyncConnection, row: DriftRunRow) -> bool:
    """Record an analysed window; False (nothing written) when the window already has a run."""
    try:
        async with conn.begin_nested():
            await conn.execute(
                drift_runs.insert().values(
                    id=row.id,
                    monitor_id=row.monitor_id,
                    workspace_key=row.workspace_key,
                    window_start=to_epoch(row.window_start),
                    window_end=to_epoch(row.window_end),
                    coefficient=row.coefficient,
                    reason=row.reason,
                    threshold=row.threshold,
                    feature_contributions=_json(row.feature_contributions),
                    feature_metrics=_json(row.feature_metrics),
                    row_counts=_json(row.row_counts),
                    skipped_features=_json(row.skipped_features),
                    rows_compared=row.rows_compared,
                    baseline_dataset_id=row.baseline_dataset_id,
                    target_dataset_id=row.target_dataset_id,
                    monitor_etag=row.monitor_etag,
                    trigger=row.trigger,
                    event_published=row.event_published,
                    event_id=row.event_id,
                    created_at=to_epoch(row.created_at),
                    auroc=row.auroc,
                    p_value=row.p_value,
                    classifier_p_value=row.classifier_p_value,
                    false_alarm_rate=row.false_alarm_rate,
                    feature_tests=_json(row.feature_tests),
                    explanation=row.explanation,
                    null_rows=row.null_rows,
                    null_draws=row.null_draws,
                )
            )
    except IntegrityError:
        return False
    return True


async def get_run_for_window(
    conn: AsyncConnection, monitor_id: str, start: datetime, end: datetime
) -> DriftRunRow | None:
    row = (
        await conn.execute(
            select(drift_runs).where(
                drift_runs.c.monitor_id == monitor_id,
                drift_runs.c.window_start == to_epoch(start),
                drift_runs.c.window_end == to_epoch(end),
            )
        )
    ).first()
    return None if row is None else _run(row)


async def runs_for_windows(
    conn: AsyncConnection, monitor_id: str, windows: Sequence[tuple[datetime, datetime]]
) -> dict[tuple[datetime, datetime], DriftRunRow]:
    """Stored runs of the given windows, keyed by (start, end)."""
    if not windows:
        return {}
    wanted = {(to_epoch(s), to_epoch(e)) for s, e in windows}
    lowest = min(s for s, _ in wanted)
    highest = max(s for s, _ in wanted)
    rows = await conn.execute(
        select(drift_runs).where(
            drift_runs.c.monitor_id == monitor_id,
            drift_runs.c.window_start >= lowest,
            drift_runs.c.window_start <= highest,
        )
    )
    found: dict[tuple[datetime, datetime], DriftRunRow] = {}
    for r in rows:
        run = _run(r)
        if (to_epoch(run.window_start), to_epoch(run.window_end)) in wanted:
            found[(run.window_start, run.window_end)] = run
    return found


async def list_runs(
    conn: AsyncConnection,
    monitor_id: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    offset: int = 0,
    limit: int = 1000,
) -> list[DriftRunRow]:
    """Runs in window order; ``start``/``end`` keep the windows inside ``[start, end)``."""
    query = select(drift_runs).where(drift_runs.c.monitor_id == monitor_id)
    if start is not None:
        query = query.where(drift_runs.c.window_start >= to_epoch(start))
    if end is not None:
        query = query.where(drift_runs.c.window_end <= to_epoch(end))
    query = query.order_by(drift_runs.c.window_start, drift_runs.c.window_end, drift_runs.c.id)
    rows = await conn.execute(query.offset(offset).limit(limit))
    return [_run(r) for r in rows]


async def count_runs(conn: AsyncConnection, monitor_id: str) -> int:
    query = select(func.count()).select_from(drift_runs).where(drift_runs.c.monitor_id == monitor_id)
    return int((await conn.execute(query)).scalar_one())
