"""Start-up of the data-drift monitors: the service, the workspace-deletion hook, the scheduler.

``server.py`` awaits ``setup`` after ``mlgrid.workspace.setup`` (it needs the workspace core
and the dataset service). It sets ``rt.drift`` (``DriftServices``):

* ``monitors`` — ``DriftMonitorService`` (what the API and the UI use);
* ``scheduler`` — ``DriftScheduler``, whose loop runs in ``rt.tasks`` (started with the other
  ``rt.starters`` once ingest is running).
"""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.cluster.node import Lease
from mlgrid.runtime import DriftServices, Runtime
from mlgrid.workspace.datasets import DatasetService
from mlgrid.workspace.drift_monitors import DriftMonitorService
from mlgrid.workspace.drift_scheduler import DRIFT_DUTY, DriftScheduler
from mlgrid.workspace.service import WorkspaceService


async def setup(rt: Runtime, app: FastAPI) -> None:
    core: WorkspaceService = rt.workspace.core
    datasets: DatasetService = rt.workspace.datasets
    monitors = DriftMonitorService(core, datasets)
    scheduler = DriftScheduler(monitors)
    monitors.schedule_changed.append(scheduler.wake)
    core.before_delete.append(monitors.delete_workspace_rows)
    rt.drift = DriftServices(monitors=monitors, scheduler=scheduler)

    node = rt.node

    async def scheduled(lease: Lease) -> None:
        async def fence(conn: AsyncConnection) -> None:
            await node.fence(conn, lease)

        await scheduler.run(fence)

    async def start() -> None:
        # A starter runs once the ingestor and the dispatcher are up, so the first pass may
        # publish at once. On several nodes, one of them runs it (the lease ``DRIFT_DUTY``).
        node.duty(DRIFT_DUTY, scheduled)

    rt.starters.append(start)
