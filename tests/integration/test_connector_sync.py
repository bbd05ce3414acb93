"""One connector sync, in-process on a real database (SQLite and PostgreSQL) against a real
``mlflow server``: state and events commit together, a restart re-emits nothing, and the lease
lets exactly one node act.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection
from tests.support.cluster import held_lease
from tests.support.mlflow_server import MlflowServer

from mlgrid.auth.secretbox import SecretBox, load_or_create_key
from mlgrid.broker.ingest import Ingestor
from mlgrid.broker.routing import Router
from mlgrid.broker.topics import TopicService
from mlgrid.cluster.node import Lease
from mlgrid.cluster.node import Node as ClusterNode
from mlgrid.config import Settings
from mlgrid.connectors.poller import lease_name
from mlgrid.connectors.service import ConnectorService, Fence
from mlgrid.errors import InvalidField, LeaseLost
from mlgrid.metrics import Metrics
from mlgrid.store import connectors as connector_store
from mlgrid.store import events as event_store
from mlgrid.store import migrate
from mlgrid.store.connectors import ConnectorRow
from mlgrid.store.database import Database
from mlgrid.store.tables import nodes
from mlgrid.workspace.files import WorkspaceFiles
from mlgrid.workspace.service import WorkspaceService


class InjectedFailure(Exception):
    pass


@dataclass
class Node:
    db: Database
    core: WorkspaceService
    service: ConnectorService

    async def close(self) -> None:
        await self.db.close()


async def make_node(database_url: str, data_dir: Path, name: str) -> Node:
    db = Database.connect(database_url)
    await migrate.upgrade(db)
    box = SecretBox(load_or_create_key(data_dir / "secret.key"))
    topics = TopicService(db, Settings(data_dir=data_dir), box, "sub")
    core = WorkspaceService(
        db, topics, Ingestor(db, Router(), Metrics()), WorkspaceFiles.local(data_dir), subscription_id="sub"
    )
    return Node(db, core, ConnectorService(core, box, node_id=name))


@pytest.fixture
def mlflow_server(database_url: str, request: pytest.FixtureRequest) -> MlflowServer:
    """MLflow on the same kind of database as mlgrid: SQLite with SQLite, PostgreSQL with PostgreSQL."""
    name = "mlflow_postgres" if database_url.startswith("postgresql") else "mlflow_sqlite"
    server: MlflowServer = request.getfixturevalue(name)
    return server


@pytest.fixture
async def node(database_url: str, tmp_path: Path) -> AsyncIterator[Node]:
    made = await make_node(database_url, tmp_path, "node-a")
    try:
        yield made
    finally:
        await made.close()


def finished_run(mlflow: MlflowServer, experiment: str) -> str:
    """A run created and finished through MLflow's REST API (what the client does)."""
    api = mlflow.url + "/api/2.0/mlflow"
    found = httpx.get(api + "/experiments/get-by-name", params={"experiment_name": experiment}, timeout=30)
    if found.status_code == 200:
        experiment_id = found.json()["experiment"]["experiment_id"]
    else:
        experiment_id = httpx.post(api + "/experiments/create", json={"name": experiment}, timeout=30).json()[
            "experiment_id"
        ]
    run = httpx.post(
        api + "/runs/create",
        json={"experiment_id": experiment_id, "start_time": int(time.time() * 1000)},
        timeout=30,
    )
    run_id = str(run.json()["run"]["info"]["run_id"])
    done = httpx.post(api + "/runs/update", json={"run_id": run_id, "status": "FINISHED"}, timeout=30)
    assert done.status_code == 200, done.text
    return run_id


async def events_of(node: Node, ws: str) -> list[event_store.StoredEvent]:
    async with node.db.read() as conn:
        return await event_store.list_page(
            conn, ws, since=None, until=None, event_type=None, limit=1000
        )


async def row_of(node: Node, ws: str) -> ConnectorRow:
    return await node.service.get(ws, "mlflow")


async def sync(node: Node, ws: str, fence: Fence | None = None) -> int:
    row = await row_of(node, ws)
    client = node.service.client(row)
    try:
        return (await node.service.sync(row, client, fence=fence)).events
    finally:
        await client.close()


async def test_state_and_events_commit_together_and_restart_emits_nothing(
    node: Node, mlflow_server: MlflowServer, database_url: str, tmp_path: Path
) -> None:
    ws = "w" + uuid.uuid4().hex[:10]
    experiment = f"sync-{ws}"
    await node.core.put(ws, {"properties": {}})
    await node.service.put(
        ws, "mlflow", {"properties": {"trackingUri": mlflow_server.url, "experiments": [experiment]}}
    )
    finished_run(mlflow_server, experiment)
    assert await sync(node, ws) == 0  # the first sync records the past silently
    run_id = finished_run(mlflow_server, experiment)

    async def fail(operation: str) -> None:
        if operation == "connector.sync":
            raise InjectedFailure

    node.core.before_commit = fail
    with pytest.raises(InjectedFailure):
        await sync(node, ws)
    node.core.before_commit = None
    assert await events_of(node, ws) == []
    async with node.db.read() as conn:
        assert await connector_store.states(conn, (await row_of(node, ws)).id, [f"run:{run_id}"]) == {}

    assert await sync(node, ws) == 1
    stored = await events_of(node, ws)
    assert [(e.event_type, e.subject) for e in stored] == [
        (
            "Microsoft.MachineLearningServices.RunCompleted",
            f"experiments/{stored[0].subject.split('/')[1]}/runs/{run_id}",
        )
    ]
    assert await sync(node, ws) == 0
    full = await row_of(node, ws)
    client = node.service.client(full)
    try:
        assert (await node.service.sync(full, client, full=True)).events == 0
    finally:
        await client.close()

    # A "restarted" server: new services on the same database find the state and emit nothing.
    again = await make_node(database_url, tmp_path, "node-a")
    try:
        assert await sync(again, ws) == 0
        assert len(await events_of(again, ws)) == 1
        health = await row_of(again, ws)
        assert health.state == "Running" and health.events_emitted == 1 and health.synced
    finally:
        await again.close()


async def test_a_node_that_lost_the_connector_lease_commits_nothing(
    node: Node, mlflow_server: MlflowServer, database_url: str, tmp_path: Path
) -> None:
    """One lease per connector (``connector:<id>`` in ``store/leases.py``): a node declared dead
    while it read MLflow commits nothing; the node that took the lease over commits."""
    if node.db.is_sqlite:
        pytest.skip("leases are a PostgreSQL matter: SQLite is one process")
    ws = "w" + uuid.uuid4().hex[:10]
    await node.core.put(ws, {"properties": {}})
    await node.service.put(
        ws, "mlflow", {"properties": {"trackingUri": mlflow_server.url, "experiments": [f"lease-{ws}"]}}
    )
    other = await make_node(database_url, tmp_path, "node-b")
    slow = ClusterNode(node.db, prefix="node-a", timeout=5.0, heartbeat=1.0, database_url=database_url)
    taker = ClusterNode(other.db, prefix="node-b", timeout=5.0, heartbeat=1.0, database_url=database_url)
    try:
        row = await row_of(node, ws)
        name = lease_name(row.id)
        await slow.start()
        slow.duty(name, _idle)
        await slow.tick()
        lost = slow.lease(name)
        assert lost is not None
        # node-a stops (no heartbeat); node-b declares it dead and takes the connector over ...
        assert slow._loop_task is not None
        slow._loop_task.cancel()
        async with node.db.write() as conn:
            await conn.execute(update(nodes).where(nodes.c.id == slow.id).values(last_seen=0.0))
        await taker.start()
        taker.duty(name, _idle)
        taken = await held_lease(taker, name)  # declares node-a dead, frees and takes its lease
        assert taken.token > lost.token
        # ... and node-a, still reading MLflow when that happened, commits nothing.
        with pytest.raises(LeaseLost):
            await sync(node, ws, _fence(slow, lost))
        assert await sync(other, ws, _fence(taker, taken)) == 0
        assert (await row_of(other, ws)).lease_holder == "node-b"
    finally:
        await taker.stop()
        await slow.stop()
        await other.close()


async def _idle(_lease: Lease) -> None:
    await asyncio.Event().wait()


def _fence(cluster_node: ClusterNode, lease: Lease) -> Fence:
    async def fence(conn: AsyncConnection) -> None:
        await cluster_node.fence(conn, lease)

    return fence


async def test_an_unreachable_uri_is_a_400_and_creates_nothing(node: Node) -> None:
    ws = "w" + uuid.uuid4().hex[:10]
    await node.core.put(ws, {"properties": {}})
    node.service.request_timeout = 2.0
    with pytest.raises(InvalidField) as raised:
        await node.service.put(ws, "mlflow", {"properties": {"trackingUri": "http://127.0.0.1:9"}})
    assert raised.value.field_name == "properties.trackingUri"
    assert "unreachable" in raised.value.message
    assert await node.service.list_connectors(ws) == []
