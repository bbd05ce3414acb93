"""Scoring endpoints on several nodes: one node serves each endpoint, by lease.

Every node registers a duty per endpoint (``endpoint:<workspace key>/<name key>``, see
``cluster/node.py``); the node holding an endpoint's lease runs its scoring process, and the
others forward scoring requests to the holder's advertised URL (``--advertise-url``).

* Deploying: the node that accepts the PUT takes the lease in the PUT's own transaction
  (``store.leases.hand_over``) and runs the deployment; the previous holder keeps serving the
  old deployment until the new one is committed, then stops (its reconciliation sees the new
  active deployment; its lease check sees the new holder).
* Failover: when the holder dies, its lease is freed once its heartbeat is older than the node
  timeout, and another node takes it. That node records ``Unhealthy`` with the reason (no
  event), materialises the active deployment's files through the model service (what the
  deployer does) and starts the process; once it answers, the endpoint is ``Healthy`` again on
  the new node (no ModelDeployed: the deployment did not change). A deployment that was still
  ``Deploying`` on the dead node is run again by the new holder (it emits ModelDeployed once,
  when it commits, as any deployment does).
* Fencing: the supervisor's and the deployer's writes check the lease (``fences``), so a
  node that lost an endpoint cannot overwrite its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from mlgrid.cluster.node import Lease, Node
from mlgrid.domain.endpoints import DeploymentState
from mlgrid.errors import LeaseLost
from mlgrid.store import endpoints as endpoint_store
from mlgrid.store import leases as lease_store
from mlgrid.store.faults import QuietFailures
from mlgrid.workspace.endpoint_deployer import EndpointDeployer
from mlgrid.workspace.endpoint_supervisor import RECONCILE_SECONDS, ScoringSupervisor

log = logging.getLogger("mlgrid.workspace.endpoints")

PREFIX = "endpoint:"
#: Changes of the endpoint list made on other nodes arrive by NOTIFY; this is the fallback.
RESYNC_SECONDS = 30.0
#: The notification kind: the endpoint list changed.
ENDPOINTS = "endpoints"

Key = tuple[str, str]


def lease_name(key: Key) -> str:
    return f"{PREFIX}{key[0]}/{key[1]}"


def key_of(name: str) -> Key:
    workspace_key, _, name_key = name[len(PREFIX):].partition("/")
    return workspace_key, name_key


class EndpointOwnership:
    def __init__(self, node: Node, supervisor: ScoringSupervisor, deployer: EndpointDeployer) -> None:
        self.node = node
        self.supervisor = supervisor
        self.deployer = deployer
        self._restores: dict[Key, asyncio.Task[None]] = {}
        self._resync = asyncio.Event()

    async def start(self) -> None:
        """Register a duty for every endpoint; the heartbeat takes the free ones."""
        await self.sync_duties()
        self.node.on_notice(ENDPOINTS, lambda _sender: self._resync.set())

    async def run(self) -> None:
        """Keep the duties in step with the endpoint list (NOTIFY, or every ``RESYNC_SECONDS``)."""
        failures = QuietFailures(log, "endpoint list refresh", self.supervisor.core.db.health)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resync.wait(), RESYNC_SECONDS)
            self._resync.clear()
            try:
                await self.sync_duties()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures.failed(exc, "endpoint list refresh failed", "endpoint_reconcile_failed")
            else:
                failures.succeeded()

    async def sync_duties(self) -> None:
        async with self.supervisor.core.db.read() as conn:
            rows = await endpoint_store.list_all(conn)
        names = {lease_name((r.workspace_key, r.name_key)) for r in rows}
        for name in names:
            if not self.node.has_duty(name):
                self.node.duty(name, self.hold)
        for name in self.node.duties(PREFIX):
            if name not in names:
                await self.node.drop_duty(name)

    async def deployed(self, key: Key, token: int) -> None:
        """After a PUT committed with this node as the holder (``hand_over``)."""
        self.node.adopt(lease_name(key), token, self.hold)
        await self.node.announce(ENDPOINTS)

    async def deleted(self, key: Key) -> None:
        await self.node.drop_duty(lease_name(key), delete=True)
        await self.node.announce(ENDPOINTS)

    async def hold(self, lease: Lease) -> None:
        """The duty: serve the endpoint while this node holds its lease."""
        key = key_of(lease.name)
        node = self.node

        async def fence(conn: object) -> None:
            await node.fence(conn, lease)  # type: ignore[arg-type]

        self.supervisor.fences[key] = fence
        self.deployer.fences[key] = fence
        finished = False
        try:
            while True:
                if not await self._serve(key, lease):
                    finished = True
                    return
                await asyncio.sleep(RECONCILE_SECONDS)
                async with self.supervisor.core.db.read() as conn:
                    holder = await lease_store.holder_of(conn, lease.name)
                if holder is None or (holder.node_id, holder.token) != (lease.holder, lease.token):
                    # Another node took the endpoint (a deployment accepted there): the process
                    # here serves until the new deployment commits, then the supervisor's
                    # reconciliation stops it. Only a lost node (cancelled) stops it at once.
                    finished = True
                    raise LeaseLost(message=f"endpoint {key[1]!r} is now served by another node")
        finally:
            if self.supervisor.fences.get(key) is fence:
                self.supervisor.fences.pop(key, None)
                self.deployer.fences.pop(key, None)
            restore = self._restores.pop(key, None)
            if restore is not None:
                restore.cancel()
            if not finished:
                await self.deployer.cancel(key)
                await self.supervisor.forget(key)

    async def _serve(self, key: Key, lease: Lease) -> bool:
        """Start what should run here and does not; False when the endpoint is gone."""
        restoring = self._restores.get(key)
        if self.supervisor.has_live(key) or key in self.deployer.in_progress() or (
            restoring is not None and not restoring.done()
        ):
            return True
        row = await self.supervisor.read(key)
        if row is None:
            return False
        if row.active_deployment_id is not None:
            if row.node != lease.holder:
                log.warning(
                    "endpoint %s: taking over from node %s", row.name, row.node,
                    extra={"action": "endpoint_takeover", "endpoint": row.name, "node": lease.holder},
                )
                await self.supervisor.mark_unhealthy(
                    key, row.active_deployment_id,
                    f"node {row.node} stopped serving this endpoint; node {lease.holder} is starting it\n",
                )
            self._restores[key] = self.supervisor.restore(row, same_port=row.node == lease.holder)
        elif row.state == DeploymentState.DEPLOYING:
            self.deployer.start(row)
        return True
