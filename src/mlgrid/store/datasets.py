"""Registered tabular datasets: one row per version, addressed by UUID or (name, version)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.store.clock import to_epoch
from mlgrid.store.rows import to_record
from mlgrid.store.tables import datasets


@dataclass(frozen=True)
class DatasetRow:
    id: str
    workspace_key: str
    name: str
    version: int
    file_name: str
    file_format: str
    size: int
    sha256: str
    columns_json: str
    row_count: int
    timestamp_column: str | None
    description: str
    etag: str
    created_at: datetime

    @property
    def name_key(self) -> str:
        return self.name.lower()


def _dataset(r: Any) -> DatasetRow:
    return to_record(DatasetRow, r, columns={"columns_json": "columns"})


async def insert(conn: AsyncConnection, row: DatasetRow) -> None:
    await conn.execute(
        datasets.insert().values(
            id=row.id,
            workspace_key=row.workspace_key,
            name_key=row.name_key,
            name=row.name,
            version=row.version,
            file_name=row.file_name,
            file_format=row.file_format,
            size=row.size,
            sha256=row.sha256,
            columns=row.columns_json,
            row_count=row.row_count,
            timestamp_column=row.timestamp_column,
            description=row.description,
            etag=row.etag,
            created_at=to_epoch(row.created_at),
        )
    )


async def get_by_id(conn: AsyncConnection, workspace_key: str, dataset_id: str) -> DatasetRow | None:
    row = (
        await conn.execute(
            select(datasets).where(datasets.c.workspace_key == workspace_key, datasets.c.id == dataset_id)
        )
    ).first()
    return None if row is None else _dataset(row)


async def get(conn: AsyncConnection, workspace_key: str, name: str, version: int) -> DatasetRow | None:
    row = (
        await conn.execute(
            select(datasets).where(
                datasets.c.workspace_key == workspace_key,
                datasets.c.name_key == name.lower(),
                datasets.c.version == version,
            )
        )
    ).first()
    return None if row is None else _dataset(row)


async def list_datasets(
    conn: AsyncConnection, workspace_key: str, name: str | None = None
) -> list[DatasetRow]:
    query = select(datasets).where(datasets.c.workspace_key == workspace_key)
    if name is not None:
        query = query.where(datasets.c.name_key == name.lower())
    query = query.order_by(datasets.c.name_key, datasets.c.version)
    return [_dataset(r) for r in await conn.execute(query)]
