"""The drift scheduler with an injected clock, in-process on a real database (both backends).

Each window of a scheduled monitor must be analysed exactly once, once it is complete and the
monitor's latency has passed: across restarts (a new service on the same database and data
directory), after a failed commit, next to a backfill, and with two "nodes" racing on one
database. DatasetDriftDetected is published once per drifted window.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.support.drift_data import baseline_frame, target_frame

from mlgrid.auth.secretbox import SecretBox, load_or_create_key
from mlgrid.broker.ingest import Ingestor
from mlgrid.broker.routing import Router
from mlgrid.broker.topics import TopicService
from mlgrid.config import Settings
from mlgrid.domain.records import DriftRunRow
from mlgrid.events.ml import DATASET_DRIFT_DETECTED
from mlgrid.metrics import Metrics
from mlgrid.store import drift as drift_store
from mlgrid.store import events as event_store
from mlgrid.store import migrate
from mlgrid.store.database import Database
from mlgrid.workspace.datasets import DatasetService
from mlgrid.workspace.drift_monitors import DriftMonitorService
from mlgrid.workspace.drift_scheduler import DriftScheduler
from mlgrid.workspace.files import WorkspaceFiles
from mlgrid.workspace.service import WorkspaceService

JANUARY = datetime(2024, 1, 1, tzinfo=UTC)
DRIFT_DAYS = (4, 8)


class InjectedFailure(Exception):
    pass


@dataclass
class Node:
    """One server's worth of services on a shared database and data directory."""

    db: Database
    core: WorkspaceService
    datasets: DatasetService
    monitors: DriftMonitorService
    scheduler: DriftScheduler

    async def close(self) -> None:
        await self.db.close()


async def _node(database_url: str, data_dir: Path, subscription_id: str) -> Node:
    db = Database.connect(database_url)
    await migrate.upgrade(db)
    box = SecretBox(load_or_create_key(data_dir / "secret.key"))
    topics = TopicService(db, Settings(data_dir=data_dir), box, subscription_id)
    ingestor = Ingestor(db, Router(), Metrics())
    files = WorkspaceFiles.local(data_dir)
    core = WorkspaceService(db, topics, ingestor, files, subscription_id=subscription_id)
    datasets = DatasetService(core)
    monitors = DriftMonitorService(core, datasets)
    # The clock is never read in these tests: every pass gets its ``now``.
    scheduler = DriftScheduler(monitors, interval=0.05, clock=lambda: JANUARY)
    return Node(db, core, datasets, monitors, scheduler)


@dataclass
class World:
    database_url: str
    data_dir: Path
    subscription_id: str
    workspace: str
    baseline_id: str
    target_id: str
    nodes: list[Node]

    async def node(self) -> Node:
        node = await _node(self.database_url, self.data_dir, self.subscription_id)
        self.nodes.append(node)
        return node

    def body(self, **changes: object) -> dict[str, object]:
        properties: dict[str, object] = {
            "baselineDatasetId": self.baseline_id,
            "targetDatasetId": self.target_id,
            "frequency": "Day",
            "latency": 6,
            "scheduleEnabled": True,
            # Scheduling is under test, not the decision: the threshold rule needs no null.
            "falseAlarmRate": None,
        }
        properties.update(changes)
        return {"properties": properties}

    async def drift_events(self, node: Node) -> list[dict[str, Any]]:
        """The system topic's stored events (all DatasetDriftDetected), oldest first."""
        async with node.db.read() as conn:
            events = await event_store.list_page(
                conn, self.workspace.lower(), since=None, until=None, event_type=None, limit=1000
            )
        assert all(e.event_type == DATASET_DRIFT_DETECTED for e in events)
        return [json.loads(e.body) for e in events]

    async def runs(self, node: Node, monitor: str) -> list[DriftRunRow]:
        return await node.monitors.list_runs(self.workspace, monitor)


def _csv(frame: object) -> io.BytesIO:
    return io.BytesIO(frame.to_csv(index=False).encode())  # type: ignore[attr-defined]


@pytest.fixture
async def world(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    subscription_id = str(uuid.uuid4())
    first = await _node(database_url, tmp_path, subscription_id)
    workspace = "sched" + uuid.uuid4().hex[:10]
    await first.core.put(workspace, None)
    baseline = await first.datasets.register(workspace, "baseline", "baseline.csv", _csv(baseline_frame()))
    target = await first.datasets.register(
        workspace,
        "target",
        "target.csv",
        _csv(target_frame(JANUARY, 10, drift_days=DRIFT_DAYS)),
        timestamp_column="ts",
    )
    state = World(database_url, tmp_path, subscription_id, workspace, baseline.id, target.id, [first])
    try:
        yield state
    finally:
        for node in state.nodes:
            await node.close()


def _starts(runs: list[DriftRunRow]) -> list[int]:
    return [r.window_start.day for r in runs]


async def test_each_window_is_analysed_once_when_due_across_restarts(world: World) -> None:
    node = world.nodes[0]
    monitor, _ = await node.monitors.put(world.workspace, "daily", world.body())
    assert monitor.schedule_since is None

    # Latency 6 h: the window of 1 January is due at 2 January 06:00.
    assert await node.scheduler.run_due(JANUARY + timedelta(days=1, hours=5)) == []
    first = await node.scheduler.run_due(JANUARY + timedelta(days=1, hours=6))
    assert _starts(first) == [1]
    assert await node.scheduler.run_due(JANUARY + timedelta(days=1, hours=6)) == []
    assert _starts(await node.scheduler.run_due(JANUARY + timedelta(days=2, hours=6))) == [2]

    # A restart: new services on the same database and files, progress read back.
    await node.close()
    world.nodes.remove(node)
    node = await world.node()
    assert (await node.monitors.get(world.workspace, "daily")).schedule_since == JANUARY + timedelta(days=2)
    assert _starts(await node.scheduler.run_due(JANUARY + timedelta(days=5, hours=7))) == [3, 4, 5]
    assert await node.scheduler.run_due(JANUARY + timedelta(days=5, hours=7)) == []

    await node.close()
    world.nodes.remove(node)
    node = await world.node()
    # Days 6-10 hold data; the window of 11 January (empty) is not due until 12 January 06:00.
    later = await node.scheduler.run_due(JANUARY + timedelta(days=11, hours=5))
    assert _starts(later) == [6, 7, 8, 9, 10]

    runs = await world.runs(node, "daily")
    assert _starts(runs) == list(range(1, 11))
    assert {r.trigger for r in runs} == {"schedule"}
    assert [r.window_start.day for r in runs if r.event_published] == list(DRIFT_DAYS)
    events = await world.drift_events(node)
    assert [e["id"] for e in events] == [r.event_id for r in runs if r.event_published]
    sequencers = [e["data"]["Sequencer"] for e in events]
    assert sequencers == sorted(sequencers) and len(set(sequencers)) == 2
    monitor = await node.monitors.get(world.workspace, "daily")
    assert monitor.schedule_since == JANUARY + timedelta(days=10)

    # After the data ends, windows are still judged once each: no rows, no coefficient.
    empty = await node.scheduler.run_due(JANUARY + timedelta(days=11, hours=6))
    assert _starts(empty) == [11]
    assert empty[0].coefficient is None and "0 rows" in (empty[0].reason or "")
    assert len(await world.drift_events(node)) == 2


async def test_a_failed_commit_neither_skips_nor_repeats_a_window(world: World) -> None:
    node = world.nodes[0]
    await node.monitors.put(world.workspace, "flaky", world.body(latency=0))
    committed: list[str] = []

    async def fail_the_fourth(operation: str) -> None:
        if operation == "datadrift.run":
            committed.append(operation)
            if len(committed) == 4:
                raise InjectedFailure("crash before the commit of the fourth window")

    node.core.before_commit = fail_the_fourth
    now = JANUARY + timedelta(days=6)
    done = await node.scheduler.run_due(now)  # the failure is logged; the pass goes on
    assert done == []
    runs = await world.runs(node, "flaky")
    assert _starts(runs) == [1, 2, 3]
    assert [e["data"]["RunId"] for e in await world.drift_events(node)] == []
    assert (await node.monitors.get(world.workspace, "flaky")).schedule_since == JANUARY + timedelta(days=3)

    node.core.before_commit = None
    resumed = await node.scheduler.run_due(now)
    assert _starts(resumed) == [4, 5, 6]
    runs = await world.runs(node, "flaky")
    assert _starts(runs) == [1, 2, 3, 4, 5, 6]
    events = await world.drift_events(node)
    assert [e["data"]["RunId"] for e in events] == [runs[3].id]


async def test_windows_a_backfill_analysed_are_not_analysed_again(world: World) -> None:
    node = world.nodes[0]
    await node.monitors.put(world.workspace, "mixed", world.body(scheduleEnabled=False, latency=0))
    days = {"start": "2024-01-01", "end": "2024-01-05"}
    backfilled = await node.monitors.backfill(world.workspace, "mixed", days)
    assert _starts(backfilled) == [1, 2, 3, 4]
    assert len(await world.drift_events(node)) == 1  # 4 January

    # A disabled schedule does nothing.
    assert await node.scheduler.run_due(JANUARY + timedelta(days=30)) == []

    await node.monitors.put(world.workspace, "mixed", world.body(latency=0))
    scheduled = await node.scheduler.run_due(JANUARY + timedelta(days=7))
    assert _starts(scheduled) == [1, 2, 3, 4, 5, 6, 7]
    assert [r.id for r in scheduled[:4]] == [r.id for r in backfilled]
    assert [r.trigger for r in scheduled] == ["backfill"] * 4 + ["schedule"] * 3
    assert len(await world.drift_events(node)) == 1


async def test_two_nodes_racing_analyse_each_window_once(world: World) -> None:
    first = world.nodes[0]
    second = await world.node()
    await first.monitors.put(world.workspace, "raced", world.body(latency=0))
    now = JANUARY + timedelta(days=10)
    await asyncio.gather(first.scheduler.run_due(now), second.scheduler.run_due(now))
    runs = await world.runs(first, "raced")
    assert _starts(runs) == list(range(1, 11))
    events = await world.drift_events(first)
    assert sorted(e["data"]["StartTime"][:10] for e in events) == ["2024-01-04", "2024-01-08"]
    assert [e["id"] for e in events] == [r.event_id for r in runs if r.event_published]


async def test_the_background_loop_runs_passes_and_wakes_on_a_put(world: World) -> None:
    node = world.nodes[0]
    scheduler = DriftScheduler(node.monitors, interval=3600, clock=lambda: JANUARY + timedelta(days=3))
    node.monitors.schedule_changed.append(scheduler.wake)
    task = asyncio.create_task(scheduler.run())
    try:
        await asyncio.sleep(0.05)  # the first pass finds no monitor
        await node.monitors.put(world.workspace, "woken", world.body(latency=0))
        for _ in range(400):
            async with node.db.read() as conn:
                monitor = await drift_store.get_monitor(conn, world.workspace.lower(), "woken")
                assert monitor is not None
                count = await drift_store.count_runs(conn, monitor.id)
            if count == 3:
                break
            await asyncio.sleep(0.05)
        assert _starts(await world.runs(node, "woken")) == [1, 2, 3]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
