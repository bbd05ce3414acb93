"""Start-up of the connectors: the service, the workspace-deletion hook, the poller.

``server.py`` awaits ``setup`` after the workspace layers. It sets ``rt.connectors``
(``ConnectorServices``): ``service`` — ``ConnectorService`` (what the API and the UI use) — and
``poller`` — ``ConnectorPoller``, whose loop runs in ``rt.tasks`` once ingest is running (a
starter), so the first poll may emit at once.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from mlgrid.cluster.node import CONNECTORS
from mlgrid.connectors.poller import ConnectorPoller
from mlgrid.connectors.service import ConnectorService
from mlgrid.runtime import ConnectorServices, Runtime

FALLBACK_REFRESH_SECONDS = 30.0


async def setup(rt: Runtime, app: FastAPI) -> None:
    core = rt.workspace.core
    node = rt.node
    service = ConnectorService(core, rt.box, node_id=node.id)
    # Several nodes: a change made here is announced (NOTIFY) and wakes the others' pollers;
    # their list refresh is only the fallback.
    poller = ConnectorPoller(service, node, refresh=FALLBACK_REFRESH_SECONDS if node.shared else 5.0)
    announcing: set[asyncio.Task[None]] = set()

    def announce(connector_id: str) -> None:
        if node.shared:
            task = asyncio.get_running_loop().create_task(node.announce(CONNECTORS, connector_id))
            announcing.add(task)
            task.add_done_callback(announcing.discard)

    service.changed.append(announce)
    node.on_rejoin(lambda _old, new: setattr(service, "node_id", new))
    node.on_notice(CONNECTORS, poller.wake)
    core.before_delete.append(service.delete_workspace_rows)
    rt.connectors = ConnectorServices(service=service, poller=poller)

    async def start() -> None:
        rt.tasks.append(asyncio.create_task(poller.run(), name="mlgrid-connectors"))

    rt.starters.append(start)
