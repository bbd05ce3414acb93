"""Start-up of model deployments: the endpoint service, its recovery and its supervisor.

``server.py`` awaits ``setup`` after the workspace's own setup (it needs
``rt.workspace.core`` and ``rt.workspace.models``). It sets:

* ``rt.endpoints`` — ``EndpointService``;
* a starter (run once the ingest writer runs) that kills leftover scoring processes of a
  crashed server, brings the serving deployments back and finishes pending ones;
* the reconciliation task, and a closer that stops every scoring process on shutdown.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from mlgrid.runtime import Runtime
from mlgrid.workspace.endpoints import EndpointService


async def setup(rt: Runtime, app: FastAPI) -> None:
    service = EndpointService(
        rt.workspace.core,
        rt.workspace.models,
        node_id=rt.node.id,
        single_node=rt.db.is_sqlite,
        containment=rt.workspace.containment,
        node=rt.node,
    )
    rt.endpoints = service
    rt.node.on_rejoin(lambda _old, new: service.rejoined(new))

    async def start() -> None:
        await service.start()
        rt.tasks.append(asyncio.create_task(service.run(), name="mlgrid-endpoints"))

    rt.starters.append(start)
    rt.closers.append(service.shutdown)
