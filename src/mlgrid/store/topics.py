"""Topics: custom topics that users publish to and the system topics of workspaces."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.errors import AlreadyExists
from mlgrid.store.clock import to_epoch
from mlgrid.store.rows import to_record
from mlgrid.store.tables import topics


@dataclass(frozen=True)
class TopicRow:
    name: str
    kind: str
    resource_group: str
    input_schema: str
    input_schema_mapping: str | None
    retention_days: int
    key1_sealed: str
    key2_sealed: str
    etag: str
    created_at: datetime
    updated_at: datetime

    @property
    def key(self) -> str:
        return self.name.lower()


def _row(r: object) -> TopicRow:
    return to_record(TopicRow, r)


async def get(conn: AsyncConnection, name: str, kind: str | None = None) -> TopicRow | None:
    query = select(topics).where(topics.c.name_key == name.lower())
    if kind is not None:
        query = query.where(topics.c.kind == kind)
    row = (await conn.execute(query)).first()
    return None if row is None else _row(row)


async def list_topics(conn: AsyncConnection, kind: str | None = None) -> list[TopicRow]:
    query = select(topics).order_by(topics.c.name_key)
    if kind is not None:
        query = query.where(topics.c.kind == kind)
    return [_row(r) for r in (await conn.execute(query)).all()]


async def insert(conn: AsyncConnection, row: TopicRow) -> None:
    try:
        async with conn.begin_nested():
            await conn.execute(
                topics.insert().values(
                    name_key=row.key,
                    name=row.name,
                    kind=row.kind,
                    resource_group=row.resource_group,
                    input_schema=row.input_schema,
                    input_schema_mapping=row.input_schema_mapping,
                    retention_days=row.retention_days,
                    key1_sealed=row.key1_sealed,
                    key2_sealed=row.key2_sealed,
                    etag=row.etag,
                    created_at=to_epoch(row.created_at),
                    updated_at=to_epoch(row.updated_at),
                )
            )
    except IntegrityError as exc:
        raise AlreadyExists(f"topic {row.name!r} already exists") from exc


async def update(conn: AsyncConnection, row: TopicRow) -> None:
    await conn.execute(
        topics.update()
        .where(topics.c.name_key == row.key)
        .values(
            resource_group=row.resource_group,
            input_schema=row.input_schema,
            input_schema_mapping=row.input_schema_mapping,
            retention_days=row.retention_days,
            key1_sealed=row.key1_sealed,
            key2_sealed=row.key2_sealed,
            etag=row.etag,
            updated_at=to_epoch(row.updated_at),
        )
    )


async def delete_topic(conn: AsyncConnection, name: str) -> bool:
    result = await conn.execute(delete(topics).where(topics.c.name_key == name.lower()))
    return bool(result.rowcount)
