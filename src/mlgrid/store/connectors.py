"""Connectors: configuration and health, the per-object state, the polling node, webhook ids.

``connector_objects`` holds what the connector last saw of each MLflow object; it is written
by ``upsert_states`` in the transaction that emits the objects' events, so state and events
commit together. Which node polls a connector is decided by its lease in ``store/leases.py``
(``connector:<id>``); the row records that node for display (``mark_polled_by``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.domain.error_codes import ErrorCode
from mlgrid.domain.records import ConnectorRow
from mlgrid.errors import AlreadyExists
from mlgrid.store.clock import from_epoch, to_epoch, utc_from_epoch
from mlgrid.store.tables import connector_objects, connector_webhook_deliveries, connectors

_CHUNK = 500


@dataclass(frozen=True)
class ObjectStateRow:
    """One stored object state (``connectors.observation.ObjectState`` plus ``is_open``)."""

    kind: str
    key: str
    value: str | None
    transitions: int
    emitted: int
    is_open: bool
    outbox_id: int | None = None


def _row(r: Any) -> ConnectorRow:
    return ConnectorRow(
        id=r.id,
        workspace_key=r.workspace_key,
        name=r.name,
        kind=r.kind,
        tracking_uri=r.tracking_uri,
        token_sealed=r.token_sealed,
        webhook_secret_sealed=r.webhook_secret_sealed,
        poll_interval=r.poll_interval,
        full_sweep_minutes=r.full_sweep_minutes,
        experiments=None if r.experiments is None else orjson.loads(r.experiments),
        deployment_aliases=orjson.loads(r.deployment_aliases),
        backfill=bool(r.backfill),
        paused=bool(r.paused),
        etag=r.etag,
        created_at=utc_from_epoch(r.created_at),
        updated_at=utc_from_epoch(r.updated_at),
        state=r.state,
        last_error=r.last_error,
        last_error_at=from_epoch(r.last_error_at),
        last_poll_at=from_epoch(r.last_poll_at),
        last_full_sweep_at=from_epoch(r.last_full_sweep_at),
        synced=bool(r.synced),
        watermark_ms=r.watermark_ms,
        events_emitted=int(r.events_emitted),
        resync_requested=bool(r.resync_requested),
        lease_holder=r.lease_holder,
        lease_until=from_epoch(r.lease_until),
        intake=r.intake,
        database_url_sealed=r.database_url_sealed,
    )


def _config_values(row: ConnectorRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "kind": row.kind,
        "tracking_uri": row.tracking_uri,
        "token_sealed": row.token_sealed,
        "webhook_secret_sealed": row.webhook_secret_sealed,
        "intake": row.intake,
        "database_url_sealed": row.database_url_sealed,
        "poll_interval": row.poll_interval,
        "full_sweep_minutes": row.full_sweep_minutes,
        "experiments": None if row.experiments is None else orjson.dumps(row.experiments).decode(),
        "deployment_aliases": orjson.dumps(row.deployment_aliases).decode(),
        "backfill": row.backfill,
        "paused": row.paused,
        "etag": row.etag,
        "updated_at": to_epoch(row.updated_at),
        "state": row.state,
        "synced": row.synced,
    }


async def insert(conn: AsyncConnection, row: ConnectorRow) -> None:
    values = _config_values(row)
    values.update(
        id=row.id,
        workspace_key=row.workspace_key,
        name_key=row.name_key,
        created_at=to_epoch(row.created_at),
        events_emitted=0,
        resync_requested=False,
    )
    try:
        await conn.execute(connectors.insert().values(**values))
    except IntegrityError as exc:
        message = f"connector {row.name!r} already exists"
        raise AlreadyExists(message, code=ErrorCode.CONNECTOR_EXISTS) from exc


async def update_config(conn: AsyncConnection, row: ConnectorRow) -> None:
    """Write the configuration (and the state a pause/resume sets, and ``synced``, which a new
    tracking URI resets); the rest of the health is left alone."""
    await conn.execute(connectors.update().where(connectors.c.id == row.id).values(**_config_values(row)))


async def get(
    conn: AsyncConnection, workspace_key: str, name: str, *, for_update: bool = False
) -> ConnectorRow | None:
    query = select(connectors).where(
        connectors.c.workspace_key == workspace_key, connectors.c.name_key == name.lower()
    )
    if for_update:
        query = query.with_for_update()
    found = (await conn.execute(query)).first()
    return None if found is None else _row(found)


async def get_by_id(conn: AsyncConnection, connector_id: str) -> ConnectorRow | None:
    found = (await conn.execute(select(connectors).where(connectors.c.id == connector_id))).first()
    return None if found is None else _row(found)


async def list_for_workspace(conn: AsyncConnection, workspace_key: str) -> list[ConnectorRow]:
    query = (
        select(connectors).where(connectors.c.workspace_key == workspace_key).order_by(connectors.c.name_key)
    )
    return [_row(r) for r in (await conn.execute(query)).all()]


async def list_all(conn: AsyncConnection) -> list[ConnectorRow]:
    query = select(connectors).order_by(connectors.c.workspace_key, connectors.c.name_key)
    return [_row(r) for r in (await conn.execute(query)).all()]


async def delete_connector(conn: AsyncConnection, connector_id: str) -> None:
    await conn.execute(delete(connector_objects).where(connector_objects.c.connector_id == connector_id))
    await conn.execute(
        delete(connector_webhook_deliveries).where(
            connector_webhook_deliveries.c.connector_id == connector_id
        )
    )
    await conn.execute(delete(connectors).where(connectors.c.id == connector_id))


async def delete_workspace(conn: AsyncConnection, workspace_key: str) -> None:
    query = select(connectors.c.id).where(connectors.c.workspace_key == workspace_key)
    ids = (await conn.execute(query)).all()
    for (connector_id,) in ids:
        await delete_connector(conn, connector_id)


# --- health ----------------------------------------------------------------------------------


async def record_poll(
    conn: AsyncConnection,
    connector_id: str,
    *,
    at: datetime,
    watermark_ms: int | None,
    events: int,
    full_sweep: bool,
) -> None:
    """A successful poll: state Running (unless paused meanwhile), error cleared, counters on."""
    values: dict[str, Any] = {
        "last_poll_at": to_epoch(at),
        "synced": True,
        "events_emitted": connectors.c.events_emitted + events,
        "last_error": None,
        "last_error_at": None,
        "state": "Running",
    }
    if watermark_ms is not None:
        values["watermark_ms"] = watermark_ms
    if full_sweep:
        values["last_full_sweep_at"] = to_epoch(at)
        values["resync_requested"] = False
    await conn.execute(
        update(connectors)
        .where(connectors.c.id == connector_id, connectors.c.paused.is_(False))
        .values(**values)
    )


async def record_failure(conn: AsyncConnection, connector_id: str, error: str, at: datetime) -> None:
    await conn.execute(
        update(connectors)
        .where(connectors.c.id == connector_id, connectors.c.paused.is_(False))
        .values(state="Failing", last_error=error[:2000], last_error_at=to_epoch(at))
    )


async def request_resync(conn: AsyncConnection, connector_id: str) -> None:
    statement = update(connectors).where(connectors.c.id == connector_id).values(resync_requested=True)
    await conn.execute(statement)


async def forget_outbox_positions(conn: AsyncConnection, connector_id: str) -> None:
    """A connector starting on an outbox (again): row ids of another table mean nothing."""
    statement = (
        update(connector_objects)
        .where(connector_objects.c.connector_id == connector_id)
        .values(outbox_id=None)
    )
    await conn.execute(statement)


# --- who polls it ------------------------------------------------------------------------


async def mark_polled_by(conn: AsyncConnection, connector_id: str, node_id: str, until: float) -> None:
    """Record the node that polls the connector (it holds the ``connector:<id>`` lease of
    ``store/leases.py``), shown as ``pollingNode`` while ``until`` has not passed."""
    await conn.execute(
        update(connectors)
        .where(connectors.c.id == connector_id)
        .values(lease_holder=node_id, lease_until=until)
    )


# --- per-object state ------------------------------------------------------------------------


def _state(r: Any) -> ObjectStateRow:
    return ObjectStateRow(
        r.kind, r.object_key, r.value, int(r.transitions), int(r.emitted), bool(r.is_open), r.outbox_id
    )


async def states(conn: AsyncConnection, connector_id: str, keys: Iterable[str]) -> dict[str, ObjectStateRow]:
    wanted = sorted(set(keys))
    found: dict[str, ObjectStateRow] = {}
    for start in range(0, len(wanted), _CHUNK):
        query = select(connector_objects).where(
            connector_objects.c.connector_id == connector_id,
            connector_objects.c.object_key.in_(wanted[start : start + _CHUNK]),
        )
        for r in (await conn.execute(query)).all():
            found[r.object_key] = _state(r)
    return found


async def states_of_kind(conn: AsyncConnection, connector_id: str, kind: str) -> dict[str, ObjectStateRow]:
    query = select(connector_objects).where(
        connector_objects.c.connector_id == connector_id, connector_objects.c.kind == kind
    )
    return {r.object_key: _state(r) for r in (await conn.execute(query)).all()}


async def open_run_keys(conn: AsyncConnection, connector_id: str) -> list[str]:
    query = select(connector_objects.c.object_key).where(
        connector_objects.c.connector_id == connector_id, connector_objects.c.is_open.is_(True)
    )
    return [r[0] for r in (await conn.execute(query)).all()]


async def count_objects(conn: AsyncConnection, connector_id: str) -> int:
    query = (
        select(func.count())
        .select_from(connector_objects)
        .where(connector_objects.c.connector_id == connector_id)
    )
    return int((await conn.execute(query)).scalar_one())


def _insert(conn: AsyncConnection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


async def upsert_states(
    conn: AsyncConnection, connector_id: str, changed: Sequence[ObjectStateRow], at: datetime
) -> None:
    if not changed:
        return
    stamp = to_epoch(at)
    rows = [
        {
            "connector_id": connector_id,
            "object_key": s.key,
            "kind": s.kind,
            "value": s.value,
            "transitions": s.transitions,
            "emitted": s.emitted,
            "is_open": s.is_open,
            "updated_at": stamp,
            "outbox_id": s.outbox_id,
        }
        for s in changed
    ]
    statement = _insert(conn)(connector_objects)
    statement = statement.on_conflict_do_update(
        index_elements=["connector_id", "object_key"],
        set_={
            name: statement.excluded[name]
            for name in ("kind", "value", "transitions", "emitted", "is_open", "updated_at", "outbox_id")
        },
    )
    for start in range(0, len(rows), _CHUNK):
        await conn.execute(statement, rows[start : start + _CHUNK])


# --- webhook delivery ids --------------------------------------------------------------------


async def remember_delivery(conn: AsyncConnection, connector_id: str, delivery_id: str, at: float) -> bool:
    """Record a webhook delivery id; False when it was already recorded (a retry)."""
    statement = (
        _insert(conn)(connector_webhook_deliveries)
        .values(connector_id=connector_id, delivery_id=delivery_id, received_at=at)
        .on_conflict_do_nothing()
    )
    result = await conn.execute(statement)
    return bool(result.rowcount == 1)


async def prune_deliveries(conn: AsyncConnection, older_than: float) -> None:
    await conn.execute(
        delete(connector_webhook_deliveries).where(connector_webhook_deliveries.c.received_at < older_than)
    )
