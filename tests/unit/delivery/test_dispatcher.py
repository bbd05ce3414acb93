"""The dispatcher on its own: a fake clock, an in-memory work source, an in-memory event cache
and recorder, and scripted destinations.

Each test drives ``Dispatcher.step`` (one loop turn) and lets the attempts it launched finish,
then asserts what the destination received and what the recorder was told: ordering,
batching, the circuit breaker, retry timing, shutdown with attempts in flight, and failures
injected at each stage of the dispatcher, which must end only the delivery they belong to.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import pytest

from mlgrid.config import Settings
from mlgrid.delivery.dead_letters import Undeliverable
from mlgrid.delivery.destinations import Attempt
from mlgrid.delivery.dispatcher import Dispatcher
from mlgrid.delivery.event_cache import CachedEvent
from mlgrid.delivery.outcome import AttemptOutcome, ErrorKind, classify_error, classify_response
from mlgrid.delivery.retry import DeadLetterReason
from mlgrid.delivery.work import DueQueue, Work, WorkSource
from mlgrid.domain.endpoints import EndpointType
from mlgrid.domain.event_filter import EventFilter
from mlgrid.domain.subscription import DeliveryAttributeMapping, Subscription
from mlgrid.metrics import Metrics
from mlgrid.store.delivery_outcomes import AttemptUpdate, FinalUpdate

T0 = 1_800_000_000.0
OK = classify_response(200)
SERVER_ERROR = classify_response(500)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Faults:
    """Stages told to fail: each entry is consumed when it fires."""

    def __init__(self) -> None:
        self.pending: dict[str, int] = {}

    def arm(self, stage: str, times: int = 1) -> None:
        self.pending[stage] = times

    def check(self, stage: str) -> None:
        left = self.pending.get(stage, 0)
        if left:
            self.pending[stage] = left - 1
            raise RuntimeError(f"injected failure in {stage}")


class MemoryWork(WorkSource):
    """The SQLite window's own ``DueQueue`` without a database (the store holds nothing
    beyond it), with the ids the dispatcher ended and an injectable failure."""

    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self.queue = DueQueue()
        self.done_ids: list[int] = []

    @property
    def works(self) -> dict[int, Work]:
        """What waits in the queue (set aside included), by id."""
        return {w.id: w for w in self.queue.works()}

    def add(self, work: Work) -> None:
        self.queue.add(work)

    def requeue(self, work: Work, written: bool = False) -> None:
        self.queue.add(work)

    def done(self, delivery_id: int) -> None:
        self.done_ids.append(delivery_id)
        self.queue.remove(delivery_id)

    async def take_due(self, now: float, limit: int, skip: Collection[str] = ()) -> list[Work]:
        self._faults.check("take_due")
        return self.queue.take_due(now, limit, skip)

    def resume(self, subscription_ids: Iterable[str]) -> None:
        self.queue.resume(subscription_ids)

    def next_wake(self, now: float) -> float | None:
        return self.queue.next_due()

    async def advance(self, ids: Iterable[int], now: float) -> None:
        self.queue.advance(ids, now)

    def __len__(self) -> int:
        return len(self.queue)


class MemoryEvents:
    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self.items: dict[int, CachedEvent] = {}

    async def get_many(self, seqs: Iterable[int]) -> dict[int, CachedEvent]:
        wanted = list(seqs)
        self._faults.check("get_events")
        return {seq: self.items[seq] for seq in wanted if seq in self.items}


class MemoryRecorder:
    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self.delivered_updates: list[FinalUpdate] = []
        self.rescheduled: list[AttemptUpdate] = []
        self.ended: list[Undeliverable] = []
        self.fail_delivered_ids: set[int] = set()

    def delivered(self, update: FinalUpdate) -> None:
        if update.id in self.fail_delivered_ids:
            raise RuntimeError(f"injected failure recording {update.id}")
        self.delivered_updates.append(update)

    def reschedule(self, update: AttemptUpdate) -> None:
        self.rescheduled.append(update)

    def undeliverable(self, item: Undeliverable) -> None:
        self.ended.append(item)

    @property
    def delivered_ids(self) -> list[int]:
        return [u.id for u in self.delivered_updates]


class ScriptedDestination:
    """Answers with the scripted outcomes (then 200); may hold every request until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any], Attempt]] = []
        self.outcomes: deque[AttemptOutcome | Exception] = deque()
        self.gate: asyncio.Event | None = None
        self.hung: dict[str, asyncio.Event] = {}  # subscription name -> released when set
        self.by_name: dict[str, AttemptOutcome] = {}

    async def send(
        self, subscription: Subscription, events: Sequence[Mapping[str, Any]], attempt: Attempt
    ) -> AttemptOutcome:
        self.calls.append((subscription.name, list(events), attempt))
        if self.gate is not None:
            await self.gate.wait()
        hang = self.hung.get(subscription.name)
        if hang is not None:
            await hang.wait()
        if subscription.name in self.by_name:
            return self.by_name[subscription.name]
        if self.outcomes:
            outcome = self.outcomes.popleft()
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        return OK

    def ids(self) -> list[list[str]]:
        return [[e["id"] for e in events] for _, events, _ in self.calls]


def subscription(name: str, **changes: Any) -> Subscription:
    values: dict[str, Any] = {
        "id": f"id-{name}",
        "name": name,
        "topic_key": "t",
        "topic_name": "t",
        "topic_kind": "custom",
        "stored_schema": "EventGridSchema",
        "input_schema": "EventGridSchema",
        "endpoint_type": EndpointType.WEBHOOK,
        "event_filter": EventFilter(),
        "event_delivery_schema": "EventGridSchema",
        "endpoint_url": f"http://{name}.example/hook",
        "etag": "1",
    }
    values.update(changes)
    return Subscription(**values)


class Harness:
    def __init__(self, *, schedule: tuple[float, ...] = (10.0, 60.0), **dispatcher_options: Any) -> None:
        self.clock = Clock()
        self.faults = Faults()
        self.source = MemoryWork(self.faults)
        self.events = MemoryEvents(self.faults)
        self.recorder = MemoryRecorder(self.faults)
        self.destination = ScriptedDestination()
        self.subscriptions: dict[str, Subscription] = {}
        self._next_id = 1

        async def lookup(subscription_id: str) -> Subscription | None:
            self.faults.check(f"lookup:{subscription_id}")
            return self.subscriptions.get(subscription_id)

        self.dispatcher = Dispatcher(
            settings=Settings(retry_schedule=schedule),
            metrics=Metrics(),
            lookup=lookup,
            destinations={EndpointType.WEBHOOK: self.destination},
            recorder=self.recorder,  # type: ignore[arg-type]
            events=self.events,  # type: ignore[arg-type]
            source=self.source,
            clock=self.clock,
            rng=random.Random(7),
            **dispatcher_options,
        )

    def add_subscription(self, sub: Subscription) -> Subscription:
        self.subscriptions[sub.id] = sub
        return sub

    def add_work(
        self,
        sub: Subscription,
        *,
        due: float | None = None,
        event: dict[str, Any] | None = None,
        size: int = 100,
    ) -> int:
        delivery_id = self._next_id
        self._next_id += 1
        seq = 1000 + delivery_id
        created = self.clock.now
        body = event if event is not None else {"id": f"e{delivery_id}", "eventType": "T", "data": {}}
        self.events.items[seq] = CachedEvent(seq, body, created, size)
        self.source.add(Work(delivery_id, seq, sub.id, 0, created, created if due is None else due))
        return delivery_id

    async def turn(self) -> float:
        """One loop turn, then let every attempt it launched run to its end."""
        wake_at = await self.dispatcher.step()
        for _ in range(100):  # bounded: each pass lets pending tasks advance
            await asyncio.sleep(0)
            if self.dispatcher.in_flight == 0 or self.destination.gate is not None:
                break
            if self.destination.hung and all(
                len([c for c in self.destination.calls if c[0] == name]) > 0
                for name in self.destination.hung
            ):
                continue
        return wake_at


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# -- ordering ---------------------------------------------------------------------------------


def test_due_work_goes_out_in_time_order_and_not_before_it_is_due() -> None:
    async def scenario() -> None:
        h = Harness(endpoint_concurrency=1)
        sub = h.add_subscription(subscription("order"))
        late = h.add_work(sub, due=T0 + 5)
        first = h.add_work(sub, due=T0 - 2)
        second = h.add_work(sub, due=T0 - 1)
        wake_at = await h.turn()
        await h.turn()
        assert h.recorder.delivered_ids == [first, second]
        assert wake_at == T0 + 5  # it plans to look again exactly when the next one is due
        h.clock.now = T0 + 5
        await h.turn()
        assert h.recorder.delivered_ids == [first, second, late]
        assert h.destination.ids() == [["e2"], ["e3"], ["e1"]]

    run(scenario())


def test_one_subscription_with_a_long_queue_does_not_starve_another() -> None:
    async def scenario() -> None:
        h = Harness(max_in_flight=2)
        busy = h.add_subscription(subscription("busy"))
        quiet = h.add_subscription(subscription("quiet"))
        for _ in range(10):
            h.add_work(busy)
        h.add_work(quiet)
        h.destination.gate = asyncio.Event()
        await h.turn()
        # Two slots: one batch per subscription per pass, so the quiet one gets the second.
        assert [name for name, _, _ in h.destination.calls] == ["busy", "quiet"]
        h.destination.gate.set()
        h.destination.gate = None
        for _ in range(12):
            await h.turn()
        assert len(h.recorder.delivered_ids) == 11

    run(scenario())


# -- batching ---------------------------------------------------------------------------------


def test_batches_follow_max_events_and_preferred_size() -> None:
    async def scenario() -> None:
        h = Harness(endpoint_concurrency=1)
        by_count = h.add_subscription(subscription("count", max_events_per_batch=3))
        for _ in range(7):
            h.add_work(by_count)
        for _ in range(5):
            await h.turn()
        assert [len(ids) for ids in h.destination.ids()] == [3, 3, 1]

        h2 = Harness(endpoint_concurrency=1)
        by_size = h2.add_subscription(
            subscription("size", max_events_per_batch=100, preferred_batch_size_kb=1)
        )
        for size in (400, 400, 400, 3000, 100):
            h2.add_work(by_size, size=size)
        for _ in range(6):
            await h2.turn()
        assert [len(ids) for ids in h2.destination.ids()] == [2, 1, 1, 1]
        assert len(h2.recorder.delivered_ids) == 5

    run(scenario())


def test_a_batch_never_mixes_first_attempts_with_retries() -> None:
    async def scenario() -> None:
        h = Harness()
        sub = h.add_subscription(subscription("mixed", max_events_per_batch=10))
        retried = h.add_work(sub)
        h.source.works[retried].attempts = 2
        for _ in range(3):
            h.add_work(sub)
        await h.turn()
        await h.turn()
        assert sorted(len(ids) for ids in h.destination.ids()) == [1, 3]
        counts = sorted(attempt.delivery_count for _, _, attempt in h.destination.calls)
        assert counts == [0, 2]  # aeg-delivery-count: attempts made before this one

    run(scenario())


# -- retry timing -----------------------------------------------------------------------------


def test_failed_attempts_are_retried_on_the_schedule_with_bounded_jitter() -> None:
    async def scenario() -> None:
        h = Harness(schedule=(10.0, 60.0))
        sub = h.add_subscription(subscription("retry", max_delivery_attempts=3))
        delivery = h.add_work(sub)
        h.destination.outcomes.extend([SERVER_ERROR, SERVER_ERROR, SERVER_ERROR])
        await h.turn()
        [first] = h.recorder.rescheduled
        assert first.attempts == 1 and first.last_http_status == 500
        assert T0 + 10 <= first.next_attempt_at <= T0 + 11  # step + at most 10 % jitter
        h.clock.now = first.next_attempt_at - 0.001
        await h.turn()
        assert len(h.destination.calls) == 1  # not a moment early
        h.clock.now = first.next_attempt_at
        await h.turn()
        second = h.recorder.rescheduled[1]
        assert second.attempts == 2
        assert h.clock.now + 60 <= second.next_attempt_at <= h.clock.now + 66
        h.clock.now = second.next_attempt_at
        await h.turn()
        [ended] = h.recorder.ended
        assert ended.delivery_id == delivery
        assert ended.reason == DeadLetterReason.MAX_DELIVERY_ATTEMPTS_EXCEEDED
        assert ended.attempts == 3
        assert [attempt.delivery_count for _, _, attempt in h.destination.calls] == [0, 1, 2]

    run(scenario())


def test_a_client_error_and_an_unsendable_request_end_at_once() -> None:
    async def scenario() -> None:
        h = Harness()
        sub = h.add_subscription(subscription("final"))
        h.add_work(sub)
        h.add_work(sub)
        unsendable = AttemptOutcome(
            succeeded=False, retryable=False, name="InvalidDeliveryRequest", detail="header refused"
        )
        h.destination.outcomes.extend([classify_response(400), unsendable])
        await h.turn()
        assert h.recorder.rescheduled == []
        reasons = {item.last_outcome: item.reason for item in h.recorder.ended}
        assert reasons == {
            "BadRequest": DeadLetterReason.UNDELIVERABLE_DUE_TO_CLIENT_ERROR,
            "InvalidDeliveryRequest": DeadLetterReason.UNDELIVERABLE_DUE_TO_CLIENT_ERROR,
        }
        assert {item.last_error for item in h.recorder.ended} == {"HTTP 400", "header refused"}

    run(scenario())


# -- circuit breaker --------------------------------------------------------------------------


def test_an_open_circuit_holds_first_attempts_until_a_probe_succeeds() -> None:
    async def scenario() -> None:
        h = Harness(schedule=(10.0,))
        sub = h.add_subscription(subscription("flaky"))
        for _ in range(10):
            h.add_work(sub)
        h.destination.outcomes.extend([SERVER_ERROR] * 10)
        await h.turn()
        assert len(h.recorder.rescheduled) == 10  # ten failures in a row: the circuit opens
        latest_retry = max(u.next_attempt_at for u in h.recorder.rescheduled)

        newcomer = h.add_work(sub)
        await h.turn()
        assert len(h.destination.calls) == 10  # no doomed first attempt
        held = h.source.works[newcomer]
        assert held.attempts == 0 and held.due == latest_retry

        # The retries fall due and are the probes; the first success closes the circuit and
        # the held first attempt is released with them.
        h.clock.now = latest_retry
        await h.turn()
        await h.turn()
        assert newcomer in h.recorder.delivered_ids
        assert len(h.recorder.delivered_ids) == 11

    run(scenario())


# -- shutdown ---------------------------------------------------------------------------------


def test_stop_cancels_attempts_in_flight_and_records_nothing_for_them() -> None:
    async def scenario() -> None:
        h = Harness()
        sub = h.add_subscription(subscription("hung"))
        ids = [h.add_work(sub) for _ in range(3)]
        h.destination.gate = asyncio.Event()  # the endpoint never answers
        await h.turn()
        assert h.dispatcher.in_flight == 3
        await asyncio.wait_for(h.dispatcher.stop(), 5)
        assert h.dispatcher.in_flight == 0
        # No outcome was recorded: the rows stay pending and are attempted after a restart.
        assert h.recorder.delivered_ids == [] and h.recorder.rescheduled == [] and h.recorder.ended == []
        assert not set(ids) & set(h.source.done_ids)
        # A stopped dispatcher starts nothing new.
        h.destination.gate = None
        h.add_work(sub)
        await h.turn()
        assert len(h.destination.calls) == 3

    run(scenario())


# -- failures injected per stage ----------------------------------------------------------------


def test_taking_work_fails_then_recovers_with_nothing_lost() -> None:
    async def scenario() -> None:
        h = Harness()
        sub = h.add_subscription(subscription("a"))
        ids = [h.add_work(sub) for _ in range(3)]
        h.faults.arm("take_due")
        with pytest.raises(RuntimeError):
            await h.turn()  # ``run`` logs this and goes on
        await h.turn()
        assert sorted(h.recorder.delivered_ids) == ids

    run(scenario())


def test_a_failed_event_read_puts_the_turns_work_back_untouched() -> None:
    async def scenario() -> None:
        h = Harness()
        a = h.add_subscription(subscription("a"))
        b = h.add_subscription(subscription("b"))
        ids = [h.add_work(a), h.add_work(b)]
        h.faults.arm("get_events")
        await h.turn()
        assert h.destination.calls == [] and h.recorder.ended == []
        assert sorted(h.source.works) == ids
        assert all(w.attempts == 0 for w in h.source.works.values())
        h.clock.now += 1.0
        await h.turn()
        assert sorted(h.recorder.delivered_ids) == ids

    run(scenario())


def test_a_failed_subscription_lookup_defers_only_that_subscriptions_work() -> None:
    async def scenario() -> None:
        h = Harness()
        broken = h.add_subscription(subscription("broken"))
        healthy = h.add_subscription(subscription("healthy"))
        waiting = h.add_work(broken)
        delivered = h.add_work(healthy)
        h.faults.arm(f"lookup:{broken.id}")
        await h.turn()
        assert h.recorder.delivered_ids == [delivered]
        assert list(h.source.works) == [waiting]
        h.clock.now += 1.0
        await h.turn()
        assert h.recorder.delivered_ids == [delivered, waiting]

    run(scenario())


def test_an_event_that_cannot_be_prepared_ends_alone_with_its_reason() -> None:
    async def scenario() -> None:
        h = Harness()
        sub = h.add_subscription(subscription("mixed", event_delivery_schema="CloudEventSchemaV1_0"))
        before = h.add_work(sub)
        # A stored event without an event type cannot be converted to a CloudEvent.
        bad = h.add_work(sub, event={"id": "no-type", "data": {}})
        after = h.add_work(sub)
        await h.turn()
        assert sorted(h.recorder.delivered_ids) == [before, after]
        [ended] = h.recorder.ended
        assert ended.delivery_id == bad
        assert ended.reason == DeadLetterReason.INTERNAL_ERROR
        assert ended.last_error is not None and "preparing the delivery" in ended.last_error
        assert "KeyError" in ended.last_error

    run(scenario())


def test_a_subscription_whose_endpoint_cannot_be_named_does_not_stop_others() -> None:
    async def scenario() -> None:
        h = Harness()
        broken = h.add_subscription(subscription("broken", endpoint_url="http://[::1/unclosed"))
        healthy = h.add_subscription(subscription("healthy"))
        bad = [h.add_work(broken), h.add_work(broken)]
        good = [h.add_work(healthy), h.add_work(healthy)]
        await h.turn()
        await h.turn()
        assert sorted(h.recorder.delivered_ids) == good
        assert sorted(item.delivery_id for item in h.recorder.ended) == bad
        assert all(item.reason == DeadLetterReason.INTERNAL_ERROR for item in h.recorder.ended)
        assert all("preparing the delivery" in (item.last_error or "") for item in h.recorder.ended)

    run(scenario())


def test_a_failure_starting_an_attempt_ends_the_delivery_at_the_head_only() -> None:
    async def scenario() -> None:
        h = Harness(endpoint_concurrency=1)
        sub = h.add_subscription(subscription("launch"))
        ids = [h.add_work(sub) for _ in range(3)]
        circuits = h.dispatcher.circuits
        real_admit = circuits.admit
        calls = 0

        def admit(key: str, now: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("injected failure in the circuit breaker")
            return real_admit(key, now)

        circuits.admit = admit  # type: ignore[method-assign]
        for _ in range(4):
            await h.turn()
        [ended] = h.recorder.ended
        assert ended.delivery_id == ids[0]
        assert "starting the attempt" in (ended.last_error or "")
        assert h.recorder.delivered_ids == ids[1:]

    run(scenario())


def test_a_bad_batch_size_sends_the_event_alone() -> None:
    async def scenario() -> None:
        h = Harness(endpoint_concurrency=1)
        sub = h.add_subscription(subscription("sizes", max_events_per_batch=10))
        ids = [h.add_work(sub), h.add_work(sub, size=-1), h.add_work(sub)]
        for _ in range(4):
            await h.turn()
        assert sorted(h.recorder.delivered_ids) == ids and h.recorder.ended == []

    run(scenario())


def test_a_destination_that_raises_is_a_retryable_failure_of_that_batch_only() -> None:
    async def scenario() -> None:
        h = Harness(endpoint_concurrency=1)
        sub = h.add_subscription(subscription("raises"))
        failing = h.add_work(sub)
        fine = h.add_work(sub)
        h.destination.outcomes.append(RuntimeError("destination bug"))
        await h.turn()
        await h.turn()
        assert h.recorder.delivered_ids == [fine]
        [retry] = h.recorder.rescheduled
        assert retry.id == failing and retry.last_outcome == "GenericError"
        assert "destination bug" in (retry.last_error or "")

    run(scenario())


def test_recording_one_outcome_fails_and_only_that_delivery_ends() -> None:
    async def scenario() -> None:
        h = Harness()
        sub = h.add_subscription(subscription("batch", max_events_per_batch=5))
        ids = [h.add_work(sub) for _ in range(3)]
        h.recorder.fail_delivered_ids.add(ids[1])
        await h.turn()
        assert h.recorder.delivered_ids == [ids[0], ids[2]]
        [ended] = h.recorder.ended
        assert ended.delivery_id == ids[1]
        assert ended.reason == DeadLetterReason.INTERNAL_ERROR
        assert "recording the outcome" in (ended.last_error or "")
        assert ids[1] not in h.source.works  # not attempted again

    run(scenario())


# -- custom schema ------------------------------------------------------------------------------


def test_custom_input_schema_delivers_the_published_object_unchanged() -> None:
    async def scenario() -> None:
        h = Harness()
        sub = h.add_subscription(
            subscription(
                "custom",
                input_schema="CustomEventSchema",
                event_delivery_schema="CustomInputSchema",
                delivery_attribute_mappings=(DeliveryAttributeMapping("X-Kind", "Static", value="k"),),
            )
        )
        published = {"myId": "p-1", "kind": "Contoso.Item", "n": 1}
        stored = {"id": "p-1", "eventType": "Contoso.Item", "subject": "", "data": published}
        h.add_work(sub, event=stored)
        await h.turn()
        [(_, events, _)] = h.destination.calls
        assert events == [published] and events[0] is published
        assert len(h.recorder.delivered_ids) == 1 and h.recorder.ended == []

    run(scenario())


# -- attempts are counted before they are made ---------------------------------------------------


def test_attempts_are_counted_before_the_request_and_a_failed_count_sends_nothing() -> None:
    async def scenario() -> None:
        marks: list[list[tuple[int, int]]] = []
        faults = Faults()
        h: Harness

        async def mark(batch: Sequence[tuple[int, int]]) -> None:
            faults.check("mark")
            assert len(h.destination.calls) == len(marks)  # nothing sent before its count
            marks.append(list(batch))

        h = Harness(mark_attempts=mark)
        sub = h.add_subscription(subscription("counted", max_events_per_batch=2))
        ids = [h.add_work(sub), h.add_work(sub)]
        faults.arm("mark")
        await h.turn()
        assert h.destination.calls == [] and h.recorder.ended == []
        assert sorted(h.source.works) == ids  # put back, nothing counted against them
        h.clock.now += 1.0
        await h.turn()
        assert marks == [[(ids[0], 1), (ids[1], 1)]]
        assert sorted(h.recorder.delivered_ids) == ids

    run(scenario())


# -- isolation between subscriptions --------------------------------------------------------------


def test_a_hung_endpoint_keeps_a_bounded_queue_and_its_backlog_waits_in_the_source() -> None:
    async def scenario() -> None:
        h = Harness(endpoint_concurrency=4, max_ready=64)
        hung = h.add_subscription(subscription("hung"))
        healthy = h.add_subscription(subscription("healthy"))
        release = h.destination.hung["hung"] = asyncio.Event()
        backlog = [h.add_work(hung) for _ in range(500)]
        await h.turn()
        await h.turn()
        assert h.dispatcher.in_flight == 4
        assert h.dispatcher.ready <= 8  # two rounds of its endpoint's concurrency
        # New work for a healthy subscription still goes out at once, turn after turn.
        for round_ in range(3):
            fresh = [h.add_work(healthy) for _ in range(20)]
            for _ in range(10):  # its own queue holds 8 at a time: a few turns
                await h.turn()
            assert set(fresh) <= set(h.recorder.delivered_ids), round_
            assert h.dispatcher.in_flight == 4  # the hung requests, still there
        assert len(h.source.works) >= 500 - 4 - 8  # the hung backlog waits in the source
        release.set()
        for _ in range(200):
            await h.turn()
            if len(h.recorder.delivered_ids) == 560:
                break
        assert set(backlog) <= set(h.recorder.delivered_ids)

    run(scenario())


def test_slow_answers_shrink_an_endpoints_concurrency_and_timely_ones_restore_it() -> None:
    async def scenario() -> None:
        h = Harness(endpoint_concurrency=8)
        slow = h.add_subscription(subscription("slow"))
        h.destination.by_name["slow"] = classify_error(ErrorKind.TIMEOUT, "no answer")
        for _ in range(8):
            h.add_work(slow)
        await h.turn()  # eight time-outs: the limit halves down to its floor of 2
        del h.destination.by_name["slow"]
        release = h.destination.hung["slow"] = asyncio.Event()
        for _ in range(20):
            h.add_work(slow)
        await h.turn()
        assert h.dispatcher.in_flight == 2
        release.set()
        del h.destination.hung["slow"]
        for _ in range(40):
            await h.turn()
        assert len(h.recorder.delivered_ids) == 20
        # Twenty timely answers later it may use all eight again.
        gate = h.destination.hung["slow"] = asyncio.Event()
        for _ in range(20):
            h.add_work(slow)
        await h.turn()
        assert h.dispatcher.in_flight == 8
        gate.set()

    run(scenario())
