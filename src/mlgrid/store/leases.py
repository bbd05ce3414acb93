"""Nodes and leases on a shared PostgreSQL database: heartbeats, dead nodes, fencing tokens.

One rule for every duty several nodes could do at once (the drift scheduler, the job sweeper,
an MLflow connector's poll, retention, a scoring endpoint): a row in ``leases`` names the one
node that does it. The rules, all enforced here in SQL:

* a lease's ``holder`` is NULL or a node whose ``nodes`` row exists. A live node renews its
  row's ``last_seen`` (``tick``); a row older than the node timeout is deleted by whichever
  node ticks next, which in the same transaction frees the dead node's delivery claims and
  leases (``release_node``). So nothing waits for a dead node longer than the timeout.
* a lease is taken only when free (``tick`` takes, in the same statement, every wanted lease
  whose holder is NULL or gone), and the taker bumps ``token``.
* every write made under a lease first calls ``fence`` in its own transaction: it checks
  (holder, token) and locks the row ``FOR SHARE``, so a concurrent takeover waits for the write
  to commit, and a write by a node that lost the lease (declared dead while paused, say) is
  refused with ``LeaseLost``. A node that finds its own row gone rejoins under a new id.

The heartbeat, the dead-node sweep and the takeover of free leases are one statement (three
data-modifying CTEs), so an idle node costs one statement per heartbeat.

PostgreSQL only: SQLite is one process (the data directory lock), which holds every lease.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.errors import LeaseLost
from mlgrid.store.tables import deliveries, leases, nodes

#: The ``pg_notify`` channel nodes listen on (``cluster/notify.py``); payloads are short texts.
CHANNEL = "mlgrid"


@dataclass(frozen=True)
class NodeRow:
    id: str
    advertise_url: str
    host: str
    pid: int
    started_at: float
    last_seen: float


@dataclass
class TickResult:
    """What one heartbeat found: whether this node is still registered, the nodes it declared
    dead, and the leases it took (name → token)."""

    alive: bool
    dead: list[str] = field(default_factory=list)
    taken: dict[str, int] = field(default_factory=dict)


async def register(
    conn: AsyncConnection, node_id: str, advertise_url: str, host: str, pid: int, now: float
) -> None:
    await conn.execute(
        insert(nodes).values(
            id=node_id, advertise_url=advertise_url, host=host, pid=pid, started_at=now, last_seen=now
        )
    )


async def ensure_leases(conn: AsyncConnection, names: Sequence[str]) -> None:
    """Create the lease rows (free, token 0) that do not exist yet."""
    if names:
        await conn.execute(
            pg_insert(leases)
            .values([{"name": n, "holder": None, "token": 0, "acquired_at": None} for n in names])
            .on_conflict_do_nothing(index_elements=["name"])
        )


# $1 now, $2 this node, $3 the cutoff (older heartbeats are dead), $4 the wanted leases.
_TICK_SQL = """
    WITH beat AS (
        UPDATE nodes SET last_seen = $1 WHERE id = $2 RETURNING id
    ), dead AS (
        DELETE FROM nodes WHERE last_seen < $3 AND id <> $2 RETURNING id
    ), took AS (
        UPDATE leases SET holder = $2, token = token + 1, acquired_at = $1
        WHERE name = ANY($4::text[])
          AND EXISTS (SELECT 1 FROM beat)
          AND (holder IS NULL OR NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = leases.holder))
        RETURNING name, token
    )
    SELECT 'beat' AS kind, id AS name, 0 AS token FROM beat
    UNION ALL SELECT 'dead', id, 0 FROM dead
    UNION ALL SELECT 'took', name, token FROM took
"""


def _tick_result(rows: Sequence[Any]) -> TickResult:
    result = TickResult(alive=False)
    for kind, name, token in rows:
        if kind == "beat":
            result.alive = True
        elif kind == "dead":
            result.dead.append(name)
        else:
            result.taken[name] = int(token)
    return result


async def tick_on(
    raw: Any, node_id: str, now: float, cutoff: float, wanted: Sequence[str]
) -> TickResult:
    """``tick`` on a plain asyncpg connection (the node's listening connection: no pool
    checkout, so no ping; an idle node's heartbeat is this one statement)."""
    rows = await raw.fetch(_TICK_SQL, now, node_id, cutoff, list(wanted))
    return _tick_result([(r[0], r[1], r[2]) for r in rows])


async def tick(
    conn: AsyncConnection, node_id: str, now: float, cutoff: float, wanted: Sequence[str]
) -> TickResult:
    """Renew this node's heartbeat, delete nodes not seen since ``cutoff`` and take the
    ``wanted`` leases that are free — one statement. The caller then frees what the dead held
    (``release_node``) in the same transaction."""
    rows = (await conn.exec_driver_sql(_TICK_SQL, (now, node_id, cutoff, list(wanted)))).all()
    return _tick_result(rows)


async def release_node(conn: AsyncConnection, node_ids: Sequence[str]) -> list[str]:
    """Free everything the given (dead or leaving) nodes held: their push-delivery claims
    (pull locks belong to receivers and keep their own expiry) and their leases. Returns the
    names of the leases freed."""
    if not node_ids:
        return []
    await conn.execute(
        update(deliveries)
        .where(
            deliveries.c.claimed_by.in_(node_ids),
            deliveries.c.state == "pending",
            deliveries.c.lock_token.is_(None),
        )
        .values(claimed_by=None, lease_until=None)
    )
    freed = await conn.execute(
        update(leases).where(leases.c.holder.in_(node_ids)).values(holder=None).returning(leases.c.name)
    )
    return [r[0] for r in freed]


async def deregister(conn: AsyncConnection, node_id: str) -> list[str]:
    """A node leaving cleanly: free what it holds and delete its row."""
    freed = await release_node(conn, [node_id])
    await conn.execute(delete(nodes).where(nodes.c.id == node_id))
    return freed


async def hand_over(conn: AsyncConnection, name: str, node_id: str, now: float) -> int:
    """Make ``node_id`` the holder of ``name`` whoever held it (a new deployment of an endpoint
    goes to the node that accepted it); the token grows when the holder changes. Returns the
    token. The previous holder's next fenced write fails."""
    await ensure_leases(conn, [name])
    row = (await conn.execute(
        update(leases)
        .where(leases.c.name == name)
        .values(
            token=case((leases.c.holder == node_id, leases.c.token), else_=leases.c.token + 1),
            holder=node_id,
            acquired_at=now,
        )
        .returning(leases.c.token)
    )).one()
    return int(row[0])


async def release(conn: AsyncConnection, name: str, node_id: str, token: int) -> bool:
    """Give one lease up (a deleted endpoint, a duty that stops); False if it was not ours."""
    result = await conn.execute(
        update(leases)
        .where(leases.c.name == name, leases.c.holder == node_id, leases.c.token == token)
        .values(holder=None)
    )
    return bool(result.rowcount)


async def drop(conn: AsyncConnection, name: str) -> None:
    """Delete a lease row whose subject is gone (a deleted endpoint or connector)."""
    await conn.execute(delete(leases).where(leases.c.name == name))


async def fence(conn: AsyncConnection, name: str, node_id: str, token: int) -> None:
    """Inside a write transaction: raise ``LeaseLost`` unless ``node_id`` still holds ``name``
    under ``token``; otherwise hold a share lock on the lease row until commit, so a takeover
    cannot slip in between this check and the write."""
    found = (await conn.execute(
        select(leases.c.token)
        .where(leases.c.name == name, leases.c.holder == node_id, leases.c.token == token)
        .with_for_update(read=True)
    )).first()
    if found is None:
        raise LeaseLost(message=f"this node no longer holds the lease {name!r} (token {token})")


@dataclass(frozen=True)
class Holder:
    node_id: str
    advertise_url: str
    token: int


async def holder_of(conn: AsyncConnection, name: str) -> Holder | None:
    """The live node holding ``name``, with the address it advertises, or None."""
    row = (await conn.execute(
        select(leases.c.holder, nodes.c.advertise_url, leases.c.token)
        .join(nodes, nodes.c.id == leases.c.holder)
        .where(leases.c.name == name)
    )).first()
    return None if row is None else Holder(row[0], row[1], int(row[2]))


async def held_by(conn: AsyncConnection, node_id: str) -> dict[str, int]:
    """The leases ``node_id`` holds (name → token)."""
    rows = await conn.execute(select(leases.c.name, leases.c.token).where(leases.c.holder == node_id))
    return {r[0]: int(r[1]) for r in rows}


async def live_node_ids(conn: AsyncConnection) -> set[str]:
    """The ids of the registered (not declared dead) nodes."""
    return set((await conn.execute(select(nodes.c.id))).scalars())


async def list_nodes(conn: AsyncConnection) -> list[NodeRow]:
    rows = await conn.execute(select(nodes).order_by(nodes.c.started_at))
    return [NodeRow(r.id, r.advertise_url, r.host, r.pid, r.started_at, r.last_seen) for r in rows]


async def notify(conn: AsyncConnection, payload: str) -> None:
    """``pg_notify`` on ``CHANNEL``, delivered when (and only if) the transaction commits."""
    await conn.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload})
