"""Several real ``mlgrid serve`` nodes on one fresh PostgreSQL database, and what the tests
read straight from that database (leases, nodes, deliveries).

Each node has its own empty data directory; with ``blobs`` (Azurite) the nodes keep workspace
files (model files, datasets, job logs, dead letters) in one blob container, as nodes on
several hosts would.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from mlgrid.cluster.node import Lease, Node
from tests.support.azurite import Azurite
from tests.support.server import ServerProcess

T = TypeVar("T")

#: Short bounds so the tests run quickly: a node is declared dead after 4 s without a heartbeat.
NODE_TIMEOUT = 4.0
HEARTBEAT = 1.0


class ClusterDb:
    """Plain SQL on the cluster's database (the test's own connection, autocommit)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return list(conn.execute(sql, args).fetchall())  # type: ignore[arg-type]

    def holders(self) -> dict[str, tuple[str, int]]:
        """lease name → (holder node id, holder pid), for the held leases of live nodes."""
        rows = self.rows(
            "SELECT l.name, n.id, n.pid FROM leases l JOIN nodes n ON n.id = l.holder"
        )
        return {name: (node, int(pid)) for name, node, pid in rows}

    def nodes(self) -> dict[str, int]:
        return {node: int(pid) for node, pid in self.rows("SELECT id, pid FROM nodes")}


def wait_until(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    pause: float = 0.1,
    detail: Callable[[], object] = lambda: "",
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} {detail()}")
        time.sleep(pause)


def make_node(
    tmp: Path,
    name: str,
    url: str,
    key: str,
    *,
    extra: dict[str, str] | None = None,
) -> ServerProcess:
    data_dir = tmp / name
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "MLGRID_SECRET_KEY": key,
        "MLGRID_NODE_ID": name,
        "MLGRID_NODE_TIMEOUT": str(NODE_TIMEOUT),
        "MLGRID_HEARTBEAT_INTERVAL": str(HEARTBEAT),
        **(extra or {}),
    }
    return ServerProcess(data_dir=data_dir, database_url=url, env=env)


@contextmanager
def running_nodes(
    tmp: Path,
    url: str,
    count: int,
    *,
    blobs: Azurite | None = None,
    extra: dict[str, str] | None = None,
    urls: dict[int, str] | None = None,
) -> Iterator[list[ServerProcess]]:
    """``count`` nodes on ``url`` (started one after the other; stopped at the end). With
    ``blobs`` they keep their files in that Azurite, in a container of their own, and share
    nothing else but the database: each node has its own empty data directory. ``urls``
    gives some nodes (by index) another way to the same database (through a ``Relay``)."""
    key = base64.b64encode(os.urandom(32)).decode()  # nodes of one database share the secret key
    settings = dict(extra or {})
    if blobs is not None:
        settings["MLGRID_BLOB_URL"] = blobs.connection_string
        settings["MLGRID_BLOB_CONTAINER"] = "cluster" + uuid.uuid4().hex[:16]
    nodes = [make_node(tmp, f"node-{i}", (urls or {}).get(i, url), key, extra=settings) for i in range(count)]
    try:
        for node in nodes:
            node.start(timeout=120)  # a loaded two-core machine starts slowly
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def admin_token(nodes: list[ServerProcess]) -> str:
    """The admin token: written by whichever node created the admin principal."""
    for node in nodes:
        path = node.data_dir / "admin.token"
        if path.exists():
            return path.read_text().strip()
    raise AssertionError("no node wrote an admin token")


async def held_lease(node: Node, name: str, timeout: float = 30.0) -> Lease:
    """The lease ``name`` once ``node`` holds it. A started node also ticks in the background
    (woken by a new duty or a dead node), concurrently with any ``tick()`` a test awaits: a
    test's own tick may find the lease already taken by that background tick, whose result is
    not applied yet. So wait for the holding, bounded, instead of counting ticks."""
    deadline = time.monotonic() + timeout
    while (lease := node.lease(name)) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{node.id} did not take the lease {name!r} within {timeout:g} s")
        await asyncio.sleep(0.05)
    return lease
