"""The model registry: one row per (workspace, model name, version).

Version numbers are handed out by the workspace counter ``model-version`` (see
``store/workspaces.next_counter``), so two registrations racing on PostgreSQL get 1 and 2
instead of colliding on the primary key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.store.clock import to_epoch
from mlgrid.store.rows import to_record
from mlgrid.store.tables import models


@dataclass(frozen=True)
class ModelRow:
    workspace_key: str
    name: str
    version: int
    tags_json: str
    properties_json: str
    description: str
    run_id: str | None
    artifact_path: str | None
    is_directory: bool
    files_json: str
    etag: str
    created_at: datetime

    @property
    def name_key(self) -> str:
        return self.name.lower()


def _model(r: Any) -> ModelRow:
    return to_record(
        ModelRow,
        r,
        columns={"tags_json": "tags", "properties_json": "properties", "files_json": "files"},
    )


async def insert(conn: AsyncConnection, row: ModelRow) -> None:
    await conn.execute(
        models.insert().values(
            workspace_key=row.workspace_key,
            name_key=row.name_key,
            version=row.version,
            name=row.name,
            tags=row.tags_json,
            properties=row.properties_json,
            description=row.description,
            run_id=row.run_id,
            artifact_path=row.artifact_path,
            is_directory=row.is_directory,
            files=row.files_json,
            etag=row.etag,
            created_at=to_epoch(row.created_at),
        )
    )


async def get(conn: AsyncConnection, workspace_key: str, name: str, version: int) -> ModelRow | None:
    row = (
        await conn.execute(
            select(models).where(
                models.c.workspace_key == workspace_key,
                models.c.name_key == name.lower(),
                models.c.version == version,
            )
        )
    ).first()
    return None if row is None else _model(row)


async def list_models(conn: AsyncConnection, workspace_key: str, name: str | None = None) -> list[ModelRow]:
    """By name, then version (oldest first)."""
    query = select(models).where(models.c.workspace_key == workspace_key)
    if name is not None:
        query = query.where(models.c.name_key == name.lower())
    query = query.order_by(models.c.name_key, models.c.version)
    return [_model(r) for r in await conn.execute(query)]
