"""Runs, their metrics and their artifact metadata.

A run row carries a ``version`` that grows by one with every change; ``update_run`` writes only
if the version is still the one the caller read (compare-and-swap), and ``get_run(...,
for_update=True)`` locks the row on PostgreSQL so concurrent writers queue instead of failing.
Tags and properties are JSON text written and parsed by the service (numbers stay exact).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.domain.records import ArtifactRow, MetricRow
from mlgrid.store.clock import to_epoch, utc_from_epoch
from mlgrid.store.rows import to_record
from mlgrid.store.tables import run_artifacts, run_metrics, runs


@dataclass(frozen=True)
class RunRow:
    workspace_key: str
    id: str
    experiment_id: str
    status: str
    run_type: str | None
    tags_json: str
    properties_json: str
    error: str | None
    etag: str
    version: int
    created_at: datetime
    updated_at: datetime
    start_time: datetime | None
    end_time: datetime | None
    job_command: str | None = None
    job_working_directory: str | None = None
    job_pid: int | None = None
    job_exit_code: int | None = None
    job_node: str | None = None
    job_heartbeat_at: datetime | None = None

    @property
    def is_job(self) -> bool:
        return self.job_command is not None


def _run(r: Any) -> RunRow:
    return to_record(RunRow, r, columns={"tags_json": "tags", "properties_json": "properties"})


def _optional_epoch(moment: datetime | None) -> float | None:
    return None if moment is None else to_epoch(moment)


def _values(row: RunRow) -> dict[str, Any]:
    return {
        "workspace_key": row.workspace_key,
        "id": row.id,
        "experiment_id": row.experiment_id,
        "status": row.status,
        "run_type": row.run_type,
        "tags": row.tags_json,
        "properties": row.properties_json,
        "error": row.error,
        "etag": row.etag,
        "version": row.version,
        "created_at": to_epoch(row.created_at),
        "updated_at": to_epoch(row.updated_at),
        "start_time": _optional_epoch(row.start_time),
        "end_time": _optional_epoch(row.end_time),
        "job_command": row.job_command,
        "job_working_directory": row.job_working_directory,
        "job_pid": row.job_pid,
        "job_exit_code": row.job_exit_code,
        "job_node": row.job_node,
        "job_heartbeat_at": _optional_epoch(row.job_heartbeat_at),
    }


async def insert_run(conn: AsyncConnection, row: RunRow) -> None:
    await conn.execute(runs.insert().values(**_values(row)))


async def get_run(
    conn: AsyncConnection, workspace_key: str, run_id: str, *, for_update: bool = False
) -> RunRow | None:
    query = select(runs).where(runs.c.workspace_key == workspace_key, runs.c.id == run_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else _run(row)


async def update_run(conn: AsyncConnection, row: RunRow, expected_version: int) -> bool:
    """Write ``row`` if the stored version is still ``expected_version``; False otherwise."""
    values = _values(row)
    for key in ("workspace_key", "id", "experiment_id", "created_at"):
        values.pop(key)
    result = await conn.execute(
        runs.update()
        .where(
            runs.c.workspace_key == row.workspace_key,
            runs.c.id == row.id,
            runs.c.version == expected_version,
        )
        .values(**values)
    )
    return bool(result.rowcount)


async def list_runs(
    conn: AsyncConnection,
    workspace_key: str,
    *,
    experiment_id: str | None = None,
    statuses: Sequence[str] = (),
    run_type: str | None = None,
    offset: int = 0,
    before: tuple[float, str] | None = None,
    limit: int = 100,
) -> list[RunRow]:
    """Newest first (creation time, then id for a stable order), continuing after the run
    whose ``(created_at, id)`` is ``before`` (keyset paging: one index range per page)."""
    query = select(runs).where(runs.c.workspace_key == workspace_key)
    if before is not None:
        created, run_id = before
        query = query.where(
            runs.c.created_at <= created,
            or_(runs.c.created_at < created, and_(runs.c.created_at == created, runs.c.id < run_id)),
        )
    if experiment_id is not None:
        query = query.where(runs.c.experiment_id == experiment_id)
    if statuses:
        query = query.where(runs.c.status.in_(list(statuses)))
    if run_type is not None:
        query = query.where(runs.c.run_type == run_type)
    query = query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).offset(offset).limit(limit)
    return [_run(r) for r in await conn.execute(query)]


async def active_jobs(conn: AsyncConnection, terminal: Sequence[str]) -> list[RunRow]:
    """Submitted runs that have not reached a terminal status, across all workspaces."""
    query = select(runs).where(runs.c.job_command.is_not(None), runs.c.status.not_in(list(terminal)))
    return [_run(r) for r in await conn.execute(query)]


async def touch_jobs(conn: AsyncConnection, keys: Sequence[tuple[str, str]], now: datetime) -> None:
    """Refresh the heartbeat of the jobs this node runs: ``(workspace_key, run_id)`` pairs."""
    for workspace_key, run_id in keys:
        await conn.execute(
            runs.update()
            .where(runs.c.workspace_key == workspace_key, runs.c.id == run_id)
            .values(job_heartbeat_at=to_epoch(now))
        )


async def statuses_of(conn: AsyncConnection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    if not keys:
        return {}
    condition = [and_(runs.c.workspace_key == w, runs.c.id == r) for w, r in keys]
    rows = await conn.execute(select(runs.c.workspace_key, runs.c.id, runs.c.status).where(or_(*condition)))
    return {(r.workspace_key, r.id): r.status for r in rows}


async def insert_metrics(
    conn: AsyncConnection, workspace_key: str, run_id: str, metrics: Sequence[MetricRow]
) -> None:
    if not metrics:
        return
    await conn.execute(
        run_metrics.insert(),
        [
            {
                "workspace_key": workspace_key,
                "run_id": run_id,
                "name": m.name,
                "step": m.step,
                "value": m.value,
                "time": to_epoch(m.time),
            }
            for m in metrics
        ],
    )


async def list_metrics(
    conn: AsyncConnection, workspace_key: str, run_id: str, name: str | None = None
) -> list[MetricRow]:
    query = select(run_metrics).where(
        run_metrics.c.workspace_key == workspace_key, run_metrics.c.run_id == run_id
    )
    if name is not None:
        query = query.where(run_metrics.c.name == name)
    query = query.order_by(run_metrics.c.name, run_metrics.c.step, run_metrics.c.time, run_metrics.c.id)
    return [
        MetricRow(name=r.name, step=int(r.step), value=r.value, time=utc_from_epoch(r.time))
        for r in await conn.execute(query)
    ]


def _artifact(r: Any) -> ArtifactRow:
    return to_record(ArtifactRow, r)


async def upsert_artifact(conn: AsyncConnection, row: ArtifactRow) -> None:
    dialect_insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = dialect_insert(run_artifacts).values(
        workspace_key=row.workspace_key,
        run_id=row.run_id,
        path=row.path,
        size=row.size,
        sha256=row.sha256,
        created_at=to_epoch(row.created_at),
    )
    statement = statement.on_conflict_do_update(
        index_elements=["workspace_key", "run_id", "path"],
        set_={"size": row.size, "sha256": row.sha256, "created_at": to_epoch(row.created_at)},
    )
    await conn.execute(statement)


async def get_artifact(
    conn: AsyncConnection, workspace_key: str, run_id: str, path: str
) -> ArtifactRow | None:
    row = (
        await conn.execute(
            select(run_artifacts).where(
                run_artifacts.c.workspace_key == workspace_key,
                run_artifacts.c.run_id == run_id,
                run_artifacts.c.path == path,
            )
        )
    ).first()
    return None if row is None else _artifact(row)


async def list_artifacts(
    conn: AsyncConnection, workspace_key: str, run_id: str, prefix: str | None = None
) -> list[ArtifactRow]:
    query = select(run_artifacts).where(
        run_artifacts.c.workspace_key == workspace_key, run_artifacts.c.run_id == run_id
    )
    if prefix:
        # startswith with autoescape: '%' and '_' in a prefix are literal characters.
        query = query.where(run_artifacts.c.path.startswith(prefix, autoescape=True))
    query = query.order_by(run_artifacts.c.path)
    return [_artifact(r) for r in await conn.execute(query)]


async def count_runs(conn: AsyncConnection, workspace_key: str) -> int:
    result = await conn.execute(
        select(func.count()).select_from(runs).where(runs.c.workspace_key == workspace_key)
    )
    return int(result.scalar_one())
