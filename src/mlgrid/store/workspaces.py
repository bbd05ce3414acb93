"""Workspaces, their experiments and the per-object counters of the ML workspace.

A workspace row is the parent of everything under ``/workspaces/{ws}``; deleting it deletes
every row of its runs, metrics, artifacts, models, datasets and counters in the caller's
transaction (the files on disk are the service's business).

Counters (``next_counter``) are single-row upserts: the row lock they take on PostgreSQL
orders concurrent writers to the same object, so event Sequencers and version numbers are
handed out in commit order and never twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.errors import AlreadyExists
from mlgrid.store.clock import to_epoch
from mlgrid.store.rows import to_record
from mlgrid.store.tables import (
    datasets,
    experiments,
    models,
    run_artifacts,
    run_metrics,
    runs,
    workspace_counters,
    workspaces,
)


@dataclass(frozen=True)
class WorkspaceRow:
    name: str
    resource_group: str
    run_status_changed_events: str
    etag: str
    created_at: datetime
    updated_at: datetime

    @property
    def key(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class ExperimentRow:
    id: str
    workspace_key: str
    name: str
    created_at: datetime


def _workspace(r: Any) -> WorkspaceRow:
    return to_record(WorkspaceRow, r)


def _experiment(r: Any) -> ExperimentRow:
    return to_record(ExperimentRow, r)


def _dialect_insert(conn: AsyncConnection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


async def get(conn: AsyncConnection, name: str, *, for_update: bool = False) -> WorkspaceRow | None:
    """``for_update`` locks the row on PostgreSQL (SQLite's writer lock already serialises)."""
    query = select(workspaces).where(workspaces.c.name_key == name.lower())
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else _workspace(row)


async def list_all(conn: AsyncConnection) -> list[WorkspaceRow]:
    rows = await conn.execute(select(workspaces).order_by(workspaces.c.name_key))
    return [_workspace(r) for r in rows]


async def insert(conn: AsyncConnection, row: WorkspaceRow) -> None:
    try:
        async with conn.begin_nested():
            await conn.execute(
                workspaces.insert().values(
                    name_key=row.key,
                    name=row.name,
                    resource_group=row.resource_group,
                    run_status_changed_events=row.run_status_changed_events,
                    etag=row.etag,
                    created_at=to_epoch(row.created_at),
                    updated_at=to_epoch(row.updated_at),
                )
            )
    except IntegrityError as exc:
        raise AlreadyExists(f"workspace {row.name!r} already exists") from exc


async def update(conn: AsyncConnection, row: WorkspaceRow) -> None:
    await conn.execute(
        workspaces.update()
        .where(workspaces.c.name_key == row.key)
        .values(
            run_status_changed_events=row.run_status_changed_events,
            etag=row.etag,
            updated_at=to_epoch(row.updated_at),
        )
    )


async def delete_workspace(conn: AsyncConnection, name: str) -> bool:
    """Delete the workspace row and every row that belongs to it."""
    key = name.lower()
    for table in (run_metrics, run_artifacts, runs, experiments, models, datasets, workspace_counters):
        await conn.execute(delete(table).where(table.c.workspace_key == key))
    result = await conn.execute(delete(workspaces).where(workspaces.c.name_key == key))
    return bool(result.rowcount)


async def get_experiment(conn: AsyncConnection, workspace_key: str, name: str) -> ExperimentRow | None:
    row = (
        await conn.execute(
            select(experiments).where(
                experiments.c.workspace_key == workspace_key, experiments.c.name_key == name.lower()
            )
        )
    ).first()
    return None if row is None else _experiment(row)


async def get_experiments_by_id(conn: AsyncConnection, ids: list[str]) -> dict[str, ExperimentRow]:
    if not ids:
        return {}
    rows = await conn.execute(select(experiments).where(experiments.c.id.in_(sorted(set(ids)))))
    return {r.id: _experiment(r) for r in rows}


async def list_experiments(conn: AsyncConnection, workspace_key: str) -> list[ExperimentRow]:
    rows = await conn.execute(
        select(experiments)
        .where(experiments.c.workspace_key == workspace_key)
        .order_by(experiments.c.name_key)
    )
    return [_experiment(r) for r in rows]


async def ensure_experiment(
    conn: AsyncConnection, workspace_key: str, name: str, new_id: str, now: datetime
) -> ExperimentRow:
    """The experiment called ``name`` (case-insensitive), created with ``new_id`` on first use.

    ``ON CONFLICT DO NOTHING`` makes two first runs of one experiment racing on PostgreSQL
    agree on a single experiment id.
    """
    statement = (
        _dialect_insert(conn)(experiments)
        .values(
            id=new_id, workspace_key=workspace_key, name_key=name.lower(), name=name, created_at=to_epoch(now)
        )
        .on_conflict_do_nothing(index_elements=["workspace_key", "name_key"])
    )
    await conn.execute(statement)
    found = await get_experiment(conn, workspace_key, name)
    if found is None:  # pragma: no cover - the insert above guarantees a row
        raise RuntimeError(f"experiment {name!r} vanished")
    return found


async def next_counter(conn: AsyncConnection, workspace_key: str, kind: str, object_key: str) -> int:
    """Increment and return the counter of one object (1 on first use), in the caller's
    transaction; the counter rolls back with it."""
    table = workspace_counters
    statement = (
        _dialect_insert(conn)(table)
        .values(workspace_key=workspace_key, kind=kind, object_key=object_key, value=1)
        .on_conflict_do_update(
            index_elements=["workspace_key", "kind", "object_key"], set_={"value": table.c.value + 1}
        )
        .returning(table.c.value)
    )
    return int((await conn.execute(statement)).scalar_one())


async def current_counter(conn: AsyncConnection, workspace_key: str, kind: str, object_key: str) -> int:
    row = (
        await conn.execute(
            select(workspace_counters.c.value).where(
                workspace_counters.c.workspace_key == workspace_key,
                workspace_counters.c.kind == kind,
                workspace_counters.c.object_key == object_key,
            )
        )
    ).first()
    return 0 if row is None else int(row[0])
