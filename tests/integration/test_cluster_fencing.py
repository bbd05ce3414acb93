"""Fencing of lease-held duties, in-process on a real PostgreSQL database: a node that lost the
drift scheduler's lease (declared dead while it was stopped) records no drift window, and
the node that took the lease over records each window once.

Two ``cluster.node.Node`` objects share the database; the first one's heartbeat is stopped (as
SIGSTOP would) and its row made older than the node timeout, so the second one's heartbeat
declares it dead and takes its leases, exactly as between two processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection
from tests.integration.test_drift_scheduler import JANUARY, World, world  # noqa: F401 (fixture)
from tests.support.cluster import held_lease

from mlgrid.cluster.node import Lease, Node
from mlgrid.errors import LeaseLost
from mlgrid.store.tables import nodes
from mlgrid.workspace.drift_scheduler import DRIFT_DUTY


async def _idle(_lease: Lease) -> None:
    await asyncio.Event().wait()


def _fence(node: Node, lease: Lease) -> Callable[[AsyncConnection], Awaitable[None]]:
    async def fence(conn: AsyncConnection) -> None:
        await node.fence(conn, lease)

    return fence


async def test_a_scheduler_that_lost_its_lease_records_no_window(world: World) -> None:  # noqa: F811
    first = world.nodes[0]
    if first.db.is_sqlite:
        pytest.skip("leases are a PostgreSQL matter: SQLite is one process")
    await first.monitors.put(world.workspace, "fenced", world.body(latency=0))
    slow = Node(first.db, prefix="slow", timeout=5.0, heartbeat=1.0, database_url=world.database_url)
    taker = Node(first.db, prefix="taker", timeout=5.0, heartbeat=1.0, database_url=world.database_url)
    await slow.start()
    try:
        slow.duty(DRIFT_DUTY, _idle)
        await slow.tick()
        lease = slow.lease(DRIFT_DUTY)
        assert lease is not None
        # The slow node stops (its heartbeat task no longer runs) and its row grows old.
        assert slow._loop_task is not None
        slow._loop_task.cancel()
        async with first.db.write() as conn:
            await conn.execute(update(nodes).where(nodes.c.id == slow.id).values(last_seen=0.0))
        await taker.start()
        try:
            taker.duty(DRIFT_DUTY, _idle)
            taken = await held_lease(taker, DRIFT_DUTY)  # declares the slow node dead, takes its leases
            assert taken.token > lease.token
            # The slow node resumes its pass: every write is refused, nothing is recorded.
            now = JANUARY + timedelta(days=4)
            with pytest.raises(LeaseLost):
                await first.scheduler.run_due(now, fence=_fence(slow, lease))
            assert await world.runs(first, "fenced") == []
            # The taker records each due window, once.
            runs = await first.scheduler.run_due(now, fence=_fence(taker, taken))
            assert [r.window_start.day for r in runs] == [1, 2, 3, 4]
            assert len(await world.runs(first, "fenced")) == 4
        finally:
            await taker.stop()
    finally:
        await slow.stop()


async def test_a_duty_registered_during_a_heartbeat_gets_its_lease(world: World) -> None:  # noqa: F811
    """A duty registered while a heartbeat awaits the database is not forgotten by that heartbeat
    (it once was: its lease row was never created and no node ever ran it). The heartbeat is
    held in the database by a lock on ``nodes`` that another connection takes first, so the
    duty is registered while the heartbeat is surely unfinished."""
    first = world.nodes[0]
    if first.db.is_sqlite:
        pytest.skip("leases are a PostgreSQL matter: SQLite is one process")
    node = Node(first.db, prefix="late", timeout=60.0, heartbeat=30.0, database_url=world.database_url)
    await node.start()
    # Only this test's heartbeats run: a background one, woken by each new duty, would ensure
    # the late duty itself and hide the fault.
    assert node._loop_task is not None
    node._loop_task.cancel()
    try:
        node.duty("early-duty", _idle)
        async with await psycopg.AsyncConnection.connect(world.database_url) as blocker:
            await blocker.execute("LOCK TABLE nodes IN ACCESS EXCLUSIVE MODE")
            beat = asyncio.ensure_future(node.tick())
            await asyncio.sleep(0.5)  # the heartbeat's statement is now waiting for the lock
            assert not beat.done()
            node.duty("late-duty", _idle)
            await blocker.commit()  # the heartbeat goes on
        await asyncio.wait_for(beat, 30)
        assert node.lease("early-duty") is not None
        await node.tick()  # the late duty's row is ensured by the next heartbeat, and taken
        assert node.lease("late-duty") is not None
    finally:
        await node.stop()
