"""The dispatcher: takes due deliveries, attempts them, and carries out the retry policy.

One loop per node. Each turn it takes what is due from its ``WorkSource`` (memory on SQLite,
leased claims on PostgreSQL), resolves the subscriptions and events, queues the work per
subscription, and launches attempts while capacity allows: at most ``endpoint_concurrency``
requests in flight per endpoint (scheme, host and port, shared by every subscription posting
there) and ``max_in_flight`` in all. Attempts run as tasks on the one aiohttp session of the
webhook destination; each finished attempt wakes the loop to launch the next.

Around each attempt:

* batching (``batching.plan_batches``): deliveries of one subscription that are due together
  and have made the same number of attempts go out as one request, within
  ``maxEventsPerBatch`` and ``preferredBatchSizeInKilobytes``; never waiting to fill a batch;
  the outcome applies to every event of the batch;
* the circuit breaker (``circuit.py``, SPEC §6.4): a *first* attempt to an endpoint whose
  circuit is open waits (``retry.defer``) behind the retries already scheduled there; retries
  are the probes; when a probe succeeds the held events are released at once;
* the decision (``retry.decide``) per event: delivered, retry at a time, or dead letter (or
  drop, without a dead-letter destination). The time to live counts from when the delivery
  was created: the publish for ordinary deliveries, the replay or redelivery otherwise.

Outcomes go to the ``OutcomeRecorder``, which writes them in batches. Every record carries an
``action`` (``delivered``, ``retry_scheduled``, ``dead_lettered``, ``dropped``) and the ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlgrid.config import Settings
from mlgrid.delivery.batching import plan_batches
from mlgrid.delivery.circuit import CircuitRegistry, endpoint_key
from mlgrid.delivery.dead_letters import Undeliverable
from mlgrid.delivery.destinations import Attempt, Destination, UnsupportedDestination
from mlgrid.delivery.event_cache import CachedEvent, EventCache
from mlgrid.delivery.outcome import AttemptOutcome, ErrorKind, OutcomeName, classify_error
from mlgrid.delivery.recorder import OutcomeRecorder
from mlgrid.delivery.retry import DeadLetter, DeadLetterReason, Retry, RetryPolicy, decide, defer
from mlgrid.delivery.work import CLAIM_PAGE, Work, WorkSource
from mlgrid.domain.deliveries import CommittedDelivery, DeliveryState
from mlgrid.domain.endpoints import EndpointType
from mlgrid.domain.subscription import Subscription
from mlgrid.events.convert import event_id, to_delivery_schema
from mlgrid.metrics import Metrics
from mlgrid.store.deliveries import AttemptUpdate, FinalUpdate

__all__ = ["Dispatcher", "SubscriptionLookup"]

log = logging.getLogger("mlgrid.delivery")

#: Finds a subscription by id (the subscription service's cached ``get_by_id``).
SubscriptionLookup = Callable[[str], Awaitable[Subscription | None]]

#: How long work of a subscription that is not active (awaiting validation) waits to look again.
_INACTIVE_RECHECK_SECONDS = 5.0
#: How often leases are renewed and circuit snapshots trimmed.
_MAINTENANCE_SECONDS = 10.0
#: Held-back deliveries remembered per endpoint, to release early when its circuit closes.
_MAX_HELD_PER_ENDPOINT = 100_000


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


@dataclass(slots=True)
class _Prepared:
    """A due delivery with its subscription resolved and its event in the delivery schema."""

    work: Work
    event: CachedEvent
    outgoing: Mapping[str, Any]


class Dispatcher:
    def __init__(
        self,
        *,
        settings: Settings,
        metrics: Metrics,
        lookup: SubscriptionLookup,
        destinations: dict[str, Destination],
        recorder: OutcomeRecorder,
        events: EventCache,
        source: WorkSource,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        endpoint_concurrency: int = 64,
        max_in_flight: int = 1024,
        max_ready: int = 2048,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._lookup = lookup
        self.destinations = destinations
        self._recorder = recorder
        self._events = events
        self._source = source
        self._clock = clock
        self._rng = rng or random.Random()
        self._endpoint_concurrency = endpoint_concurrency
        self._max_in_flight = max_in_flight
        self._max_ready = max_ready
        self.circuits = CircuitRegistry()
        self._ready: OrderedDict[str, deque[_Prepared]] = OrderedDict()
        self._ready_count = 0
        self._subscriptions: dict[str, Subscription] = {}
        self._in_flight = 0
        self._in_flight_by_endpoint: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: dict[str, set[int]] = {}
        self._wake = asyncio.Event()
        self._policies: dict[tuple[int, int], RetryPolicy] = {}
        self._endpoint_keys: dict[str, tuple[str, str]] = {}
        self._stopping = False
        # When the loop will look again by itself (0: it is running now).
        self._sleep_until = 0.0

    # -- inputs -----------------------------------------------------------------------------

    def on_committed(self, deliveries: list[CommittedDelivery]) -> None:
        """Ingest listener: new deliveries are durable; look at them now (their events come
        along, so the first attempt needs no database read)."""
        put = self._events.put_event
        for committed in deliveries:
            if committed.event is not None:
                put(committed.event_seq, committed.event, committed.due_at.timestamp(), committed.event_size)
        self._source.committed(deliveries)
        self._wake.set()

    def remember_events(self, events: Sequence[tuple[int, dict[str, Any], float, int]]) -> None:
        """Events about to be announced by a replay: ``(seq, event, published_at, size)``."""
        for seq, event, published_at, size in events:
            self._events.put_event(seq, event, published_at, size)

    def wake(self) -> None:
        self._wake.set()

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """The loop (the source must be loaded first: ``WorkSource.load``)."""
        next_maintenance = self._clock() + _MAINTENANCE_SECONDS
        while True:
            try:
                self._wake.clear()
                now = self._clock()
                # Take more only when the ready queues run low: admitting costs a database
                # read, and work taken early only waits longer (on PostgreSQL, under lease).
                works: list[Work] = []
                if self._ready_count < self._max_ready // 2:
                    room = min(self._max_ready - self._ready_count, CLAIM_PAGE)
                    works = await self._source.take_due(now, room)
                if works:
                    await self._admit(works, now)
                self._launch(self._clock())
                self._metrics.queue_depth.set(len(self._source) + self._ready_count)
                self._metrics.in_flight.set(self._in_flight)
                now = self._clock()
                if now >= next_maintenance:
                    next_maintenance = now + _MAINTENANCE_SECONDS
                    await self._source.maintain(now)
                # With the ready queues full, due work waits for capacity: a finished attempt
                # wakes the loop (``_after_attempt``), not the clock.
                full = self._ready_count >= self._max_ready // 2
                wake_at = None if full else self._source.next_wake(now)
                self._sleep_until = next_maintenance if wake_at is None else min(wake_at, next_maintenance)
                timeout = self._sleep_until - now
                if timeout > 0 and not self._wake.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout)
                else:
                    await asyncio.sleep(0)  # never hold the event loop for more than one turn
                self._sleep_until = 0.0
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatcher turn failed", extra={"action": "dispatcher_failed"})
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        """Cancel attempts in flight: their deliveries stay pending and are attempted again."""
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- admission: resolve subscription and event ------------------------------------------

    async def _admit(self, works: Sequence[Work], now: float) -> None:
        by_subscription: dict[str, list[Work]] = {}
        for work in works:
            by_subscription.setdefault(work.subscription_id, []).append(work)
        events = await self._events.get_many(w.event_seq for w in works)
        for subscription_id, group in by_subscription.items():
            sub = await self._lookup(subscription_id)
            for work in group:
                cached = events.get(work.event_seq)
                if cached is None:
                    # The topic was deleted with its events and deliveries: nothing to do.
                    self._source.done(work.id)
                    continue
                if sub is None:
                    self._source.done(work.id)
                    self._recorder.undeliverable(
                        self._undeliverable(work, None, cached, DeadLetterReason.SUBSCRIPTION_DELETED)
                    )
                    continue
                if sub.endpoint_type == EndpointType.QUEUE:
                    self._source.done(work.id)  # receivers fetch pull deliveries themselves
                    continue
                if now > work.created_at + sub.event_ttl_minutes * 60:
                    # Its time to live ran out before this attempt (e.g. the server was down).
                    self._source.done(work.id)
                    self._recorder.undeliverable(
                        self._undeliverable(work, sub, cached, DeadLetterReason.TIME_TO_LIVE_EXCEEDED)
                    )
                    continue
                if not sub.is_active:
                    self._hold(sub, work, now + _INACTIVE_RECHECK_SECONDS, now)
                    continue
                self._subscriptions[subscription_id] = sub
                outgoing = to_delivery_schema(cached.event, sub.stored_schema, sub.event_delivery_schema)
                queue = self._ready.get(subscription_id)
                if queue is None:
                    queue = self._ready[subscription_id] = deque()
                queue.append(_Prepared(work, cached, outgoing))
                self._ready_count += 1

    # -- launching --------------------------------------------------------------------------

    def _endpoint(self, sub: Subscription) -> str:
        """The key of the subscription's endpoint (cached: it is asked on every launch)."""
        cached = self._endpoint_keys.get(sub.id)
        if cached is not None and cached[0] == sub.etag:
            return cached[1]
        if sub.endpoint_type == EndpointType.WEBHOOK and sub.endpoint_url:
            key = endpoint_key(sub.endpoint_url)
        else:
            key = f"{sub.endpoint_type}:{sub.id}"
        if len(self._endpoint_keys) > 10_000:
            self._endpoint_keys.clear()
        self._endpoint_keys[sub.id] = (sub.etag, key)
        return key

    def _launch(self, now: float) -> None:
        # Passes of one batch per subscription, so a long queue cannot starve the others.
        launched = not self._stopping
        while launched and self._ready and self._in_flight < self._max_in_flight:
            launched = False
            for subscription_id in list(self._ready):
                queue = self._ready[subscription_id]
                sub = self._subscriptions[subscription_id]
                key = self._endpoint(sub)
                if self._in_flight_by_endpoint.get(key, 0) >= self._endpoint_concurrency:
                    continue
                if self._in_flight >= self._max_in_flight:
                    break
                batch = self._take_batch(sub, key, queue, now)
                if batch:
                    self._start(sub, key, batch)
                    launched = True
                elif queue:
                    launched = True  # a held event was taken off; look at the next one
                if not queue:
                    del self._ready[subscription_id]

    def _take_batch(
        self, sub: Subscription, key: str, queue: deque[_Prepared], now: float
    ) -> list[_Prepared]:
        first = queue.popleft()
        self._ready_count -= 1
        if first.work.attempts == 0:
            wait_until = self.circuits.admit(key, _dt(now))
            if wait_until is not None:
                self._hold(sub, first.work, wait_until.timestamp(), now, endpoint=key)
                return []
        if sub.max_events_per_batch <= 1:
            return [first]
        candidates = [first]
        while (
            queue
            and len(candidates) < sub.max_events_per_batch
            and queue[0].work.attempts == first.work.attempts
        ):
            candidates.append(queue.popleft())
            self._ready_count -= 1
        plan = plan_batches(
            [p.event.size for p in candidates], sub.max_events_per_batch, sub.preferred_batch_size_kb
        )
        taken = len(plan[0])
        for rest in reversed(candidates[taken:]):
            queue.appendleft(rest)
            self._ready_count += 1
        return candidates[:taken]

    def _start(self, sub: Subscription, key: str, batch: list[_Prepared]) -> None:
        self._in_flight += 1
        self._in_flight_by_endpoint[key] = self._in_flight_by_endpoint.get(key, 0) + 1
        task = asyncio.create_task(self._attempt(sub, key, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- one attempt ------------------------------------------------------------------------

    async def _attempt(self, sub: Subscription, key: str, batch: list[_Prepared]) -> None:
        try:
            destination = self.destinations.get(sub.endpoint_type)
            if destination is None:
                destination = UnsupportedDestination(sub.endpoint_type)
            attempt = Attempt(delivery_count=batch[0].work.attempts, batch_id=_batch_id(batch))
            started = time.perf_counter()
            try:
                outcome = await destination.send(sub, [p.outgoing for p in batch], attempt)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a destination bug must not lose the events
                log.exception(
                    "destination %s failed", sub.endpoint_type, extra={"action": "destination_failed"}
                )
                outcome = classify_error(ErrorKind.OTHER, f"{type(exc).__name__}: {exc}")
            self._metrics.child(self._metrics.destination_duration, sub.topic_key, sub.name).observe(
                time.perf_counter() - started
            )
            self._settle(sub, key, batch, outcome, self._clock())
        finally:
            self._in_flight -= 1
            remaining = self._in_flight_by_endpoint.get(key, 1) - 1
            if remaining > 0:
                self._in_flight_by_endpoint[key] = remaining
            else:
                self._in_flight_by_endpoint.pop(key, None)
            self._after_attempt()

    def _after_attempt(self) -> None:
        """Refill the freed capacity at once; wake the loop only when it must take more work
        (a loop turn per finished attempt would cost more than the attempt's bookkeeping)."""
        now = self._clock()
        self._launch(now)
        if self._ready_count < self._max_ready // 2:
            # Due now, or earlier than the loop planned to look (a retry just scheduled).
            wake_at = self._source.next_wake(now)
            if wake_at is not None and wake_at < self._sleep_until:
                self._wake.set()

    def _policy(self, sub: Subscription) -> RetryPolicy:
        key = (sub.max_delivery_attempts, sub.event_ttl_minutes)
        policy = self._policies.get(key)
        if policy is None:
            policy = self._policies[key] = RetryPolicy.from_minutes(*key)
        return policy

    def _settle(
        self, sub: Subscription, key: str, batch: list[_Prepared], outcome: AttemptOutcome, now: float
    ) -> None:
        now_dt = _dt(now)
        ids = [p.work.id for p in batch]
        if outcome.succeeded:
            for prepared in batch:
                work = prepared.work
                self._source.done(work.id)
                self._recorder.delivered(
                    FinalUpdate(
                        id=work.id,
                        state=DeliveryState.DELIVERED,
                        attempts=work.attempts + 1,
                        last_outcome=outcome.name,
                        last_http_status=outcome.http_status,
                        last_error=None,
                        last_attempt_at=now,
                        final_reason=None,
                        finished_at=now,
                        last_duration_ms=outcome.duration_ms,
                    )
                )
            self._metrics.child(self._metrics.delivery_success, sub.topic_key, sub.name).inc(len(batch))
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "delivered %d event(s) to %s",
                    len(batch),
                    sub.name,
                    extra={
                        "action": "delivered",
                        "subscription_id": sub.id,
                        "subscription": sub.name,
                        "delivery_ids": ids,
                        "event_ids": [event_id(p.event.event) for p in batch],
                        "http_status": outcome.http_status,
                    },
                )
            if self.circuits.record_success(key, now_dt):
                held = self._held.pop(key, set())
                if held:
                    task = asyncio.create_task(self._source.advance(held, now))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            return

        self._metrics.delivery_attempt_failures.labels(sub.topic_key, sub.name, outcome.name).inc(len(batch))
        policy = self._policy(sub)
        seed = self._rng.random()  # one jitter for the batch, so its events stay together
        latest_retry: datetime | None = None
        for prepared in batch:
            work = prepared.work
            attempts = work.attempts + 1
            decision = decide(
                outcome,
                attempts,
                _dt(work.created_at),
                now_dt,
                policy,
                self._settings.retry_schedule,
                self._settings.is_custom_retry_schedule,
                random.Random(seed),
            )
            if isinstance(decision, Retry):
                work.attempts = attempts
                work.due = decision.at.timestamp()
                work.last_outcome = outcome.name
                work.last_http_status = outcome.http_status
                work.last_attempt_at = now
                self._recorder.reschedule(
                    AttemptUpdate(
                        id=work.id,
                        attempts=attempts,
                        next_attempt_at=work.due,
                        last_outcome=outcome.name,
                        last_http_status=outcome.http_status,
                        last_error=outcome.detail or None,
                        last_attempt_at=now,
                        last_duration_ms=outcome.duration_ms,
                        last_response=outcome.response,
                    )
                )
                self._source.requeue(work)
                if latest_retry is None or decision.at > latest_retry:
                    latest_retry = decision.at
                log.info(
                    "attempt %d of event %s to %s failed (%s); retry at %s",
                    attempts,
                    event_id(prepared.event.event),
                    sub.name,
                    outcome.name,
                    decision.at.isoformat(),
                    extra={
                        "action": "retry_scheduled",
                        "delivery_id": work.id,
                        "subscription_id": sub.id,
                        "subscription": sub.name,
                        "event_id": event_id(prepared.event.event),
                        "attempts": attempts,
                        "outcome": outcome.name,
                        "http_status": outcome.http_status,
                        "retry_at": work.due,
                    },
                )
            else:
                assert isinstance(decision, DeadLetter)
                self._source.done(work.id)
                self._recorder.undeliverable(
                    Undeliverable(
                        delivery_id=work.id,
                        subscription_id=sub.id,
                        subscription=sub,
                        event=prepared.event.event,
                        published_at=prepared.event.published_at,
                        reason=decision.reason,
                        attempts=attempts,
                        last_outcome=outcome.name,
                        last_http_status=outcome.http_status,
                        last_error=outcome.detail or None,
                        last_attempt_at=now,
                        last_duration_ms=outcome.duration_ms,
                        last_response=outcome.response,
                    )
                )
        self.circuits.record_failure(key, now_dt, latest_retry)

    # -- holds ------------------------------------------------------------------------------

    def _hold(
        self, sub: Subscription, work: Work, until: float, now: float, endpoint: str | None = None
    ) -> None:
        """Put a delivery back without an attempt (open circuit, inactive subscription)."""
        decision = defer(_dt(until), _dt(work.created_at), self._policy(sub))
        if isinstance(decision, DeadLetter):
            self._source.done(work.id)
            self._events_for_hold(sub, work, decision.reason)
            return
        work.due = until
        if self._source.persists_holds:
            self._recorder.reschedule(
                AttemptUpdate(work.id, work.attempts, until, None, None, None, None)
            )
        self._source.requeue(work)
        if endpoint is not None:
            held = self._held.setdefault(endpoint, set())
            if len(held) >= _MAX_HELD_PER_ENDPOINT:
                held.clear()  # those left out simply wait for their own time; nothing is lost
            held.add(work.id)

    def _events_for_hold(self, sub: Subscription, work: Work, reason: str) -> None:
        async def close() -> None:
            events = await self._events.get_many([work.event_seq])
            cached = events.get(work.event_seq)
            if cached is not None:
                self._recorder.undeliverable(self._undeliverable(work, sub, cached, reason, held=True))

        task = asyncio.create_task(close())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _undeliverable(
        self, work: Work, sub: Subscription | None, cached: CachedEvent, reason: str, held: bool = False
    ) -> Undeliverable:
        last_outcome = work.last_outcome
        if last_outcome is None and reason == DeadLetterReason.TIME_TO_LIVE_EXCEEDED and held:
            last_outcome = OutcomeName.PROBATION  # held back by the circuit breaker, never tried
        return Undeliverable(
            delivery_id=work.id,
            subscription_id=work.subscription_id,
            subscription=sub,
            event=cached.event,
            published_at=cached.published_at,
            reason=reason,
            attempts=work.attempts,
            last_outcome=last_outcome,
            last_http_status=work.last_http_status,
            last_error=None,
            last_attempt_at=work.last_attempt_at,
        )

    # -- subscription deleted -----------------------------------------------------------------

    def forget_subscription(self, subscription_id: str) -> None:
        """Drop queued work of a deleted subscription (its rows are closed by the caller)."""
        queue = self._ready.pop(subscription_id, None)
        if queue is not None:
            self._ready_count -= len(queue)
            for prepared in queue:
                self._source.done(prepared.work.id)
        self._subscriptions.pop(subscription_id, None)


def _batch_id(batch: Sequence[_Prepared]) -> str:
    """Stable across retries of the same events: derived from their delivery ids."""
    if len(batch) == 1:
        return f"msg_{batch[0].work.id}"
    digest = hashlib.sha256(",".join(str(p.work.id) for p in batch).encode()).hexdigest()
    return f"msg_{digest[:32]}"
