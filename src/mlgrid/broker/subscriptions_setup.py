"""Start-up of the subscription layer: the service, the router's initial load, background tasks.

``server.py`` awaits ``setup`` before the ingest writer starts, so the router already holds
every active subscription when the first event arrives.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from mlgrid.broker.subscriptions import SubscriptionService
from mlgrid.cluster.node import SUBSCRIPTIONS, Lease
from mlgrid.runtime import Runtime

#: On PostgreSQL, changes made on other nodes arrive by NOTIFY; the signature poll is the
#: fallback for a notification lost while the listening connection was down.
FALLBACK_REFRESH_SECONDS = 30.0
SWEEPER_DUTY = "subscriptions-sweeper"


async def setup(rt: Runtime, app: FastAPI) -> None:
    node = rt.node
    service = SubscriptionService(rt.db, rt.settings, rt.box, rt.topics, rt.router)
    if node.shared:
        service.refresh_interval = FALLBACK_REFRESH_SECONDS
    rt.subscriptions = service
    await service.load_into_router()

    async def announce(subscription_id: str) -> None:
        await node.announce(SUBSCRIPTIONS, subscription_id)

    def changed_elsewhere(subscription_id: str) -> None:
        service.wake_sweeper()
        work = service.refresh_one(subscription_id) if subscription_id else service.refresh()
        task = asyncio.get_running_loop().create_task(work)
        refreshing.add(task)
        task.add_done_callback(refreshing.discard)

    async def sweeper(_lease: Lease) -> None:
        await service.run_sweeper()

    refreshing: set[asyncio.Task[None]] = set()
    service.announce = announce
    node.on_notice(SUBSCRIPTIONS, changed_elsewhere)
    rt.tasks.append(asyncio.create_task(service.run_refresh(), name="mlgrid-subscriptions-refresh"))
    node.duty(SWEEPER_DUTY, sweeper)
    rt.closers.append(service.close)
