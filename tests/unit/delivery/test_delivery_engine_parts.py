"""The dispatcher's in-memory due queue, lock-token parsing, the pull result shape and the
blob store, without a server."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mlgrid.blobs import InvalidBlobName, local_blobs
from mlgrid.delivery.blobs import DeadLetterBlobs
from mlgrid.delivery.pull import LockResult, parse_lock_tokens
from mlgrid.delivery.work import INGEST_CLAIM, DueQueue, LeaseSource, Work
from mlgrid.domain.deliveries import CommittedDelivery
from mlgrid.errors import InvalidField
from mlgrid.store.database import Database


def committed(delivery_id: int, at: float) -> CommittedDelivery:
    return CommittedDelivery(delivery_id, delivery_id * 10, "sub", datetime.fromtimestamp(at, tz=UTC))


def work(delivery_id: int, at: float) -> Work:
    return Work.from_committed(committed(delivery_id, at))


def test_due_queue_hands_out_due_work_in_time_order() -> None:
    queue = DueQueue()
    for w in (work(1, 100.0), work(2, 50.0), work(3, 200.0)):
        queue.add(w)
    assert len(queue) == 3
    assert queue.next_due() == 50.0
    due = queue.take_due(150.0, 10)
    assert [w.id for w in due] == [2, 1]
    assert queue.next_due() == 200.0
    assert queue.take_due(150.0, 10) == []


def test_due_queue_respects_the_limit_and_ignores_repeats() -> None:
    queue = DueQueue()
    for i in range(1, 6):
        queue.add(work(i, float(i)))
    queue.add(work(1, 1.0))  # added twice: still one
    first = queue.take_due(10.0, 2)
    rest = queue.take_due(10.0, 10)
    assert [w.id for w in first] == [1, 2]
    assert [w.id for w in rest] == [3, 4, 5]


def test_requeued_work_waits_for_its_new_time_and_can_be_advanced() -> None:
    queue = DueQueue()
    queue.add(work(7, 10.0))
    [taken] = queue.take_due(10.0, 10)
    taken.attempts, taken.due = 1, 500.0
    queue.add(taken)
    assert queue.take_due(100.0, 10) == []
    assert queue.advance([7, 8], 100.0) == [8]  # 8 is not here
    assert queue.next_due() == 100.0
    [again] = queue.take_due(100.0, 10)
    assert again.id == 7 and again.attempts == 1
    assert queue.next_due() is None  # the stale heap entry at 500 is skipped


def test_work_of_a_waiting_subscription_is_set_aside_or_spilled_until_it_resumes() -> None:
    queue = DueQueue()
    for i in range(1, 5):
        queue.add(replace(work(i, float(i)), subscription_id="busy" if i % 2 else "free"))
    taken = queue.take_due(10.0, 10, skip={"busy"}, spill=lambda w: w.id == 3)
    assert [w.id for w in taken] == [2, 4]
    assert 1 in queue and 3 not in queue  # 1 set aside, 3 spilled (out of memory)
    assert queue.take_due(10.0, 10) == []
    queue.resume(["busy"])
    assert [w.id for w in queue.take_due(10.0, 10)] == [1]


def test_work_from_committed_delivery_is_a_first_attempt() -> None:
    work = Work.from_committed(committed(3, 42.0))
    assert (work.id, work.event_seq, work.attempts, work.created_at, work.due) == (3, 30, 0, 42.0, 42.0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({}, "lockTokens"),
        ({"lockTokens": []}, "lockTokens"),
        ({"lockTokens": "abc"}, "lockTokens"),
        ({"lockTokens": ["ok", 3]}, "lockTokens[1]"),
        ({"lockTokens": ["x" * 65]}, "lockTokens[0]"),
        ({"lockTokens": ["t"] * 1001}, "lockTokens"),
    ],
)
def test_lock_token_bodies_are_checked(body: object, field: str) -> None:
    with pytest.raises(InvalidField) as raised:
        parse_lock_tokens(body)
    assert raised.value.field_name == field


def test_lock_tokens_are_deduplicated_in_order() -> None:
    assert parse_lock_tokens({"lockTokens": ["b", "a", "b"]}) == ["b", "a"]


def test_lock_results_have_the_sdk_shape() -> None:
    body = LockResult(succeeded=["a"], failed=["b"]).as_json()
    assert body["succeededLockTokens"] == ["a"]
    [failed] = body["failedLockTokens"]
    assert failed["lockToken"] == "b"
    assert set(failed["error"]) == {"code", "message"}


def test_blob_store_writes_json_arrays_under_the_container(tmp_path: Path) -> None:
    store = DeadLetterBlobs(local_blobs(tmp_path))
    name = "dead/SUB/2026/1/2/3/x.json"
    asyncio.run(store.write_json_array(name, [{"id": "1", "n": 1}]))
    assert json.loads((tmp_path / "blobs" / name).read_text()) == [{"id": "1", "n": 1}]
    assert asyncio.run(store.read(name)) == (tmp_path / "blobs" / name).read_bytes()
    assert [p.name for p in (tmp_path / "blobs" / "dead/SUB/2026/1/2/3").iterdir()] == ["x.json"]


@pytest.mark.parametrize("name", ["../escape.json", "/abs/x.json", "dead/../../b.json", "", "dead/"])
def test_blob_names_cannot_leave_the_store(tmp_path: Path, name: str) -> None:
    store = DeadLetterBlobs(local_blobs(tmp_path))
    with pytest.raises((ValueError, InvalidBlobName)):
        asyncio.run(store.write_json_array(name, []))
    assert not (tmp_path / "blobs").exists() or not any((tmp_path / "blobs").rglob("*.json"))


def test_lease_source_hands_over_what_ingest_claimed_without_claiming_again() -> None:
    """Deliveries inserted already claimed by this node go straight to its dispatcher; ingest
    claims at most ``INGEST_CLAIM`` unstarted ones, so a burst stays free for other nodes."""
    leases = LeaseSource(Database.connect_unpooled("sqlite:///unused-by-these-tests.db"), "node-a",
                         clock=lambda: 1000.0)
    first = leases.claim_for_ingest()
    assert first is not None
    assert (first.node_id, first.lease_until, first.limit) == ("node-a", 1030.0, INGEST_CLAIM)
    mine = [replace(committed(i, 990.0), claimed=True) for i in range(1, INGEST_CLAIM + 1)]
    leases.committed(mine)
    assert leases.claim_for_ingest() is None  # full: the next publishes leave theirs free
    assert leases.next_wake(1000.0) == 1000.0
    # Handed over without a claim of its own: the limit is met by what arrived (no database).
    taken = asyncio.run(leases.take_due(1000.0, 10))
    assert [w.id for w in taken] == list(range(1, 11))
    room = leases.claim_for_ingest()
    assert room is not None and room.limit == 10
    assert len(leases) == INGEST_CLAIM  # all still leased by this node (renewed until done)
    for work in taken:
        leases.done(work.id)
    assert len(leases) == INGEST_CLAIM - 10


def test_a_dead_letter_container_named_like_the_workspace_container_stays_in_blobs(tmp_path: Path) -> None:
    """The local layout keeps every dead-letter container under ``<data-dir>/blobs``, even one
    named like the workspace files' container (``mlgrid``, whose files are ``workspaces/``)."""
    store = DeadLetterBlobs(local_blobs(tmp_path))
    asyncio.run(store.write_json_array("mlgrid/SUB/2026/1/2/3/x.json", []))
    assert (tmp_path / "blobs" / "mlgrid" / "SUB/2026/1/2/3/x.json").read_bytes() == b"[]"
    assert not (tmp_path / "workspaces").exists()
