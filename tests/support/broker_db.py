"""Test-side access to a running server's database, through the store modules.

For what the HTTP API cannot show (yet) or cannot set up: the delivery rows ingest created,
a subscription's internal id, a system topic without the workspace API, a role on a
workspace. Everything goes through ``mlgrid.store`` functions, never raw SQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from mlgrid.auth.secretbox import SecretBox, load_or_create_key
from mlgrid.broker.topics import TopicService
from mlgrid.config import Settings
from mlgrid.domain.records import DeliveryRow
from mlgrid.store import deliveries as delivery_store
from mlgrid.store import principals as principal_store
from mlgrid.store import subscriptions as subscription_store
from mlgrid.store.database import Database
from mlgrid.store.subscriptions import SubscriptionRow
from tests.support.server import ServerProcess

T = TypeVar("T")


def database_url(server: ServerProcess) -> str:
    return server.database_url or f"sqlite:///{server.data_dir / 'mlgrid.db'}"


def _run(server: ServerProcess, work: Callable[[Database], Awaitable[T]]) -> T:
    async def main() -> T:
        db = Database.connect_unpooled(database_url(server))
        try:
            return await work(db)
        finally:
            await db.close()

    return asyncio.run(main())


def subscription_row(server: ServerProcess, topic: str, name: str) -> SubscriptionRow | None:
    async def work(db: Database) -> SubscriptionRow | None:
        async with db.read() as conn:
            return await subscription_store.get(conn, topic.lower(), name)

    return _run(server, work)


def deliveries_of(server: ServerProcess, subscription_id: str) -> list[tuple[DeliveryRow, str, str]]:
    """(delivery, event id, event type) of a subscription, oldest first."""

    async def work(db: Database) -> list[tuple[DeliveryRow, str, str]]:
        async with db.read() as conn:
            return await delivery_store.list_for_subscription(conn, subscription_id, None, 0, 10_000)

    return _run(server, work)


def delivered_event_ids(server: ServerProcess, topic: str, name: str) -> list[str]:
    """Ids of the events ingest matched to the subscription (one delivery row each)."""
    row = subscription_row(server, topic, name)
    assert row is not None, f"subscription {topic}/{name} does not exist"
    return [event_id for _, event_id, _ in deliveries_of(server, row.id)]


def create_system_topic(server: ServerProcess, workspace: str, resource_group: str = "default") -> None:
    """A workspace's system topic, as the workspace service will create it."""
    box = SecretBox(load_or_create_key(server.data_dir / "secret.key"))

    async def work(db: Database) -> None:
        topics = TopicService(db, Settings(), box, subscription_id="unused")
        async with db.write() as conn:
            await topics.create_system_topic(conn, workspace, resource_group)

    _run(server, work)


def assign_role(server: ServerProcess, scope_kind: str, scope_name: str, principal: str, role: str) -> None:
    """A role assignment, e.g. on a workspace before the workspace API exists."""

    async def work(db: Database) -> None:
        async with db.write() as conn:
            await principal_store.assign_role(
                conn, scope_kind, scope_name, principal, role, datetime.now(UTC)
            )

    _run(server, work)
