"""Model deployments: one row per (workspace, endpoint name).

A row holds two things: the definition the last ``PUT`` asked for (``models`` ...
``startup_timeout``; ``generation`` grows by one per ``PUT`` and ``deployment_id`` names that
attempt) and the deployment that serves right now (``active_*``, ``scoring_port``, ``pid``,
``node``). They differ while a redeploy is in progress and after one failed. Writers read the
row with ``for_update=True`` inside their transaction, so a background deployment that
finishes after a newer ``PUT`` sees the newer generation and backs off.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.errors import AlreadyExists
from mlgrid.store.clock import to_epoch
from mlgrid.store.rows import to_record
from mlgrid.store.tables import endpoints


@dataclass(frozen=True)
class EndpointRow:
    workspace_key: str
    name: str
    compute_type: str
    models_json: str
    entry_script_json: str | None
    tags_json: str
    properties_json: str
    startup_timeout: float
    state: str
    generation: int
    deployment_id: str
    active_deployment_id: str | None
    active_models_json: str | None
    active_entry_script_json: str | None
    scoring_port: int | None
    scoring_uri: str | None
    pid: int | None
    node: str | None
    error: str | None
    etag: str
    created_at: datetime
    updated_at: datetime
    deployed_at: datetime | None

    @property
    def name_key(self) -> str:
        return self.name.lower()

    def replace(self, **changes: Any) -> EndpointRow:
        return dataclasses.replace(self, **changes)


def _row(r: Any) -> EndpointRow:
    return to_record(
        EndpointRow,
        r,
        columns={
            "models_json": "models",
            "entry_script_json": "entry_script",
            "tags_json": "tags",
            "properties_json": "properties",
            "active_models_json": "active_models",
            "active_entry_script_json": "active_entry_script",
        },
    )


def _values(row: EndpointRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "compute_type": row.compute_type,
        "models": row.models_json,
        "entry_script": row.entry_script_json,
        "tags": row.tags_json,
        "properties": row.properties_json,
        "startup_timeout": row.startup_timeout,
        "state": row.state,
        "generation": row.generation,
        "deployment_id": row.deployment_id,
        "active_deployment_id": row.active_deployment_id,
        "active_models": row.active_models_json,
        "active_entry_script": row.active_entry_script_json,
        "scoring_port": row.scoring_port,
        "scoring_uri": row.scoring_uri,
        "pid": row.pid,
        "node": row.node,
        "error": row.error,
        "etag": row.etag,
        "created_at": to_epoch(row.created_at),
        "updated_at": to_epoch(row.updated_at),
        "deployed_at": None if row.deployed_at is None else to_epoch(row.deployed_at),
    }


async def get(
    conn: AsyncConnection, workspace_key: str, name: str, *, for_update: bool = False
) -> EndpointRow | None:
    """``for_update`` locks the row on PostgreSQL (SQLite's writer lock already serialises)."""
    query = select(endpoints).where(
        endpoints.c.workspace_key == workspace_key, endpoints.c.name_key == name.lower()
    )
    if for_update:
        query = query.with_for_update()
    found = (await conn.execute(query)).first()
    return None if found is None else _row(found)


async def insert(conn: AsyncConnection, row: EndpointRow) -> None:
    try:
        async with conn.begin_nested():
            await conn.execute(
                endpoints.insert().values(
                    workspace_key=row.workspace_key, name_key=row.name_key, **_values(row)
                )
            )
    except IntegrityError as exc:
        raise AlreadyExists(f"endpoint {row.name!r} already exists") from exc


async def update(conn: AsyncConnection, row: EndpointRow) -> None:
    """Write every column of ``row`` (read with ``for_update`` in the same transaction)."""
    await conn.execute(
        endpoints.update()
        .where(endpoints.c.workspace_key == row.workspace_key, endpoints.c.name_key == row.name_key)
        .values(**_values(row))
    )


async def delete_endpoint(conn: AsyncConnection, workspace_key: str, name: str) -> bool:
    result = await conn.execute(
        delete(endpoints).where(
            endpoints.c.workspace_key == workspace_key, endpoints.c.name_key == name.lower()
        )
    )
    return bool(result.rowcount)


async def delete_for_workspace(conn: AsyncConnection, workspace_key: str) -> int:
    result = await conn.execute(delete(endpoints).where(endpoints.c.workspace_key == workspace_key))
    return int(result.rowcount or 0)


async def list_for_workspace(conn: AsyncConnection, workspace_key: str) -> list[EndpointRow]:
    rows = await conn.execute(
        select(endpoints).where(endpoints.c.workspace_key == workspace_key).order_by(endpoints.c.name_key)
    )
    return [_row(r) for r in rows]


async def list_all(conn: AsyncConnection) -> list[EndpointRow]:
    """Every endpoint of every workspace (start-up recovery and supervision)."""
    rows = await conn.execute(select(endpoints).order_by(endpoints.c.workspace_key, endpoints.c.name_key))
    return [_row(r) for r in rows]


async def active_ids(conn: AsyncConnection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
    """``active_deployment_id`` of the given (workspace key, name key) pairs that still exist."""
    if not keys:
        return {}
    workspaces = sorted({k[0] for k in keys})
    rows = await conn.execute(
        select(endpoints.c.workspace_key, endpoints.c.name_key, endpoints.c.active_deployment_id).where(
            endpoints.c.workspace_key.in_(workspaces)
        )
    )
    wanted = set(keys)
    return {
        (r.workspace_key, r.name_key): r.active_deployment_id
        for r in rows
        if (r.workspace_key, r.name_key) in wanted
    }
