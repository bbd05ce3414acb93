"""Start-up of the delivery layer: the dispatcher, pull queues, dead letters, their tasks.

``server.py`` awaits ``setup`` after the subscription layer's (the dispatcher asks the
subscription service for every delivery) and before the ingest writer starts, so the
dispatcher has read its first window of pending work (SQLite) before the first new delivery arrives.

Shutdown (``closers``): attempts in flight are cancelled (their deliveries stay pending and
are attempted again after the restart), recorded outcomes are flushed, then the HTTP session
is closed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastapi import FastAPI

from mlgrid.cluster.node import DUE, Lease
from mlgrid.delivery.attempt_marks import AttemptMarks
from mlgrid.delivery.blobs import DeadLetterBlobs
from mlgrid.delivery.dead_letters import DeadLetterService
from mlgrid.delivery.dispatcher import Dispatcher
from mlgrid.delivery.event_cache import EventCache
from mlgrid.delivery.manage import DeliveryManager
from mlgrid.delivery.pull import PullService
from mlgrid.delivery.queue_destinations.registry import QueueDestinations
from mlgrid.delivery.recorder import OutcomeRecorder
from mlgrid.delivery.webhook import WebhookDestination, create_session
from mlgrid.delivery.work import LeaseSource, WindowSource, WorkSource
from mlgrid.domain.endpoints import EndpointType
from mlgrid.domain.subscription import Subscription
from mlgrid.runtime import DeliveryServices, Runtime

if TYPE_CHECKING:
    from mlgrid.broker.subscriptions import SubscriptionService

#: Requests in flight to one endpoint (scheme, host, port), and in all.
ENDPOINT_CONCURRENCY = 64
MAX_IN_FLIGHT = 1024


#: How often a node looks for unclaimed due work by itself on PostgreSQL. New work published
#: on another node and left unclaimed there arrives by NOTIFY, as do a dead node's freed
#: claims; this poll is the fallback (and finds retries scheduled by nodes that died).
FALLBACK_POLL_SECONDS = 15.0
#: The lease of the sweeper that dead-letters exhausted pull deliveries (one node sweeps).
PULL_SWEEPER_DUTY = "pull-sweeper"


async def setup(rt: Runtime, app: FastAPI) -> None:
    settings = rt.settings
    subscriptions: SubscriptionService = rt.subscriptions
    cluster = rt.node

    async def lookup(subscription_id: str) -> Subscription | None:
        return await subscriptions.get_by_id(subscription_id)

    dead_letters = DeadLetterService(DeadLetterBlobs(rt.blobs), rt.metrics)
    recorder = OutcomeRecorder(
        rt.db, dead_letters, claimant=(lambda: cluster.id) if cluster.shared else (lambda: None)
    )
    session = create_session(
        settings.deny_private_endpoints, limit=MAX_IN_FLIGHT, limit_per_host=ENDPOINT_CONCURRENCY
    )
    source: WorkSource = (
        WindowSource(rt.db, settings.delivery_window, recorder)
        if rt.db.is_sqlite
        else LeaseSource(rt.db, lambda: cluster.id, poll_interval=FALLBACK_POLL_SECONDS)
    )
    queues = QueueDestinations.create(deny_private=settings.deny_private_endpoints)
    dispatcher = Dispatcher(
        settings=settings,
        metrics=rt.metrics,
        lookup=lookup,
        destinations={
            EndpointType.WEBHOOK: WebhookDestination(session, settings.deny_private_endpoints),
            **queues.by_endpoint_type(),
        },
        recorder=recorder,
        events=EventCache(rt.db),
        source=source,
        mark_attempts=AttemptMarks(rt.db).mark,
        tracing=rt.tracing,
        health=rt.db.health,
        endpoint_concurrency=ENDPOINT_CONCURRENCY,
        max_in_flight=MAX_IN_FLIGHT,
        # With leases, claim little more than this node can start soon: what it does not
        # claim stays available to the other nodes.
        max_ready=2048 if rt.db.is_sqlite else 4 * ENDPOINT_CONCURRENCY,
    )
    pull = PullService(
        rt.db, rt.metrics, dead_letters, cluster.id, lookup, queue_ids=subscriptions.queue_subscription_ids
    )
    manager = DeliveryManager(rt.db, dead_letters, dispatcher, rt.ingestor.notify)

    await source.load()
    if isinstance(source, LeaseSource):
        lease_source = source

        def work_elsewhere(_sender: str = "") -> None:
            lease_source.wake()
            dispatcher.wake()

        def rejoined(_old: str, _new: str) -> None:
            lease_source.rejoined()
            dispatcher.wake()

        rt.ingestor.set_claimer(source.claim_for_ingest, lambda: f"{DUE}:{cluster.id}")
        cluster.on_notice(DUE, work_elsewhere)
        cluster.on_released(work_elsewhere)
        cluster.on_rejoin(rejoined)
    rt.ingestor.add_listener(dispatcher.on_committed)
    rt.ingestor.add_listener(pull.on_committed)
    subscriptions.on_deleted.append(manager.subscription_deleted)
    recorder.start()
    rt.tasks.append(asyncio.create_task(dispatcher.run(), name="mlgrid-dispatcher"))

    async def sweep_pulls(_lease: Lease) -> None:
        await pull.run_sweeper()

    cluster.duty(PULL_SWEEPER_DUTY, sweep_pulls)

    rt.delivery = DeliveryServices(
        dispatcher=dispatcher, pull=pull, deliveries=manager, dead_letters=dead_letters, node_id=cluster.id
    )

    async def close() -> None:
        await dispatcher.stop()
        await recorder.stop()
        await session.close()
        await queues.close()

    rt.closers.append(close)
