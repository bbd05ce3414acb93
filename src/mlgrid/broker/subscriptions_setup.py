"""Start-up of the subscription layer: the service, the router's initial load, background tasks.

``server.py`` awaits ``setup`` before the ingest writer starts, so the router already holds
every active subscription when the first event arrives.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from mlgrid.broker.subscriptions import SubscriptionService
from mlgrid.runtime import Runtime


async def setup(rt: Runtime, app: FastAPI) -> None:
    service = SubscriptionService(rt.db, rt.settings, rt.box, rt.topics, rt.router)
    rt.subscriptions = service
    await service.load_into_router()
    rt.tasks.append(asyncio.create_task(service.run_refresh(), name="mlgrid-subscriptions-refresh"))
    rt.tasks.append(asyncio.create_task(service.run_sweeper(), name="mlgrid-subscriptions-sweeper"))
    rt.closers.append(service.close)
