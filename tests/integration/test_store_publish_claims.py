"""A publish's rows, written by ``store.ingest.store_publish`` on both databases.

Deliveries come back with the ids of their own rows, in the order of the events and their
subscribers, only for events that were new; on PostgreSQL a ``Claim`` makes the first
``limit`` deliveries of the claimable (pushed) subscriptions this node's at insert, and leaves
the others free. SQLite has no claims.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from mlgrid.store import deliveries as delivery_store
from mlgrid.store.database import Database
from mlgrid.store.deliveries import Claim
from mlgrid.store.events import NewEvent
from mlgrid.store.ingest import StoredPublish, commit_publish, store_publish


@pytest.fixture
def db(migrated_db: Database) -> Database:
    return migrated_db


def _events(topic: str, ids: list[str]) -> list[NewEvent]:
    return [NewEvent(topic, i, "Test.Claimed", "/s", json.dumps({"id": i})) for i in ids]


async def _in_callers_transaction(
    db: Database, events: list[NewEvent], subscribers: dict[Any, list[str]], now: datetime,
    claim: Claim | None, claimable: set[str],
) -> StoredPublish:
    async with db.write() as conn:
        return await store_publish(conn, events, subscribers, now, claim, claimable)


async def _in_its_own_transaction(
    db: Database, events: list[NewEvent], subscribers: dict[Any, list[str]], now: datetime,
    claim: Claim | None, claimable: set[str],
) -> StoredPublish:
    return await commit_publish(db, events, subscribers, now, claim, claimable)


# Both ways a publish is written: inside a workspace change (``emit``) and as the ingest
# group commit (one SQLite trip; asyncpg's own transaction on PostgreSQL).
WRITERS = pytest.mark.parametrize("write", [_in_callers_transaction, _in_its_own_transaction],
                                  ids=["in-callers-transaction", "group-commit"])


@WRITERS
async def test_deliveries_match_their_rows_and_claims_stop_at_the_limit(db: Database, write: Any) -> None:
    topic = "claims-" + uuid.uuid4().hex[:8]
    pushed_a, pushed_b, pulled = (str(uuid.uuid4()) for _ in range(3))
    events = _events(topic, ["e1", "e2", "e3"])
    subscribers = {
        (topic, "e1"): [pushed_a, pulled, pushed_b],
        (topic, "e2"): [pulled],
        (topic, "e3"): [pushed_b, pushed_a],
    }
    claim = Claim("node-x", 2_000_000_000.0, limit=3)
    now = datetime.now(UTC)
    stored = await write(db, events, subscribers, now, claim, {pushed_a, pushed_b})
    expected_order = [
        ("e1", pushed_a), ("e1", pulled), ("e1", pushed_b), ("e2", pulled), ("e3", pushed_b), ("e3", pushed_a)
    ]
    assert [(d.event_key[1], d.subscription_id) for d in stored.deliveries] == expected_order
    async with db.read() as conn:
        rows = await delivery_store.get_many(conn, [d.id for d in stored.deliveries])
    for delivery in stored.deliveries:
        row = rows[delivery.id]
        assert (row.event_seq, row.subscription_id) == (delivery.event_seq, delivery.subscription_id)
        assert row.event_seq == stored.seqs[delivery.event_key]
    claimed = [(d.event_key[1], d.subscription_id) for d in stored.deliveries if d.claimed]
    by_node = [(d.event_key[1], d.subscription_id) for d in stored.deliveries
               if rows[d.id].claimed_by == "node-x"]
    if db.is_sqlite:
        assert claimed == [] and by_node == []
        assert all(rows[d.id].lease_until is None for d in stored.deliveries)
    else:
        # The first three pushed deliveries, never the pulled ones; the fourth pushed one is free.
        assert claimed == by_node == [("e1", pushed_a), ("e1", pushed_b), ("e3", pushed_b)]
        for delivery in stored.deliveries:
            lease = rows[delivery.id].lease_until
            assert (lease is not None) == delivery.claimed
            if lease is not None:
                assert lease.timestamp() == claim.lease_until


@WRITERS
async def test_a_duplicate_event_gets_no_deliveries(db: Database, write: Any) -> None:
    topic = "dups-" + uuid.uuid4().hex[:8]
    sub = str(uuid.uuid4())
    now = datetime.now(UTC)
    first = await write(db, _events(topic, ["a"]), {(topic, "a"): [sub]}, now, None, set())
    both = {(topic, "a"): [sub], (topic, "b"): [sub]}
    again = await write(db, _events(topic, ["a", "b"]), both, now, None, set())
    assert len(first.deliveries) == 1
    assert list(again.seqs) == [(topic, "b")]
    assert [(d.event_key, d.subscription_id) for d in again.deliveries] == [((topic, "b"), sub)]
