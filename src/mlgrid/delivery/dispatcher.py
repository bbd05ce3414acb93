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
* the outcome (``settlement.py``): per event delivered, retried at a time or ended, handed to
  the ``OutcomeRecorder``, which writes them in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import islice
from typing import Any

from mlgrid.config import Settings
from mlgrid.delivery.attempt_marks import MarkAttempts
from mlgrid.delivery.batching import plan_batches
from mlgrid.delivery.circuit import CircuitRegistry, endpoint_key
from mlgrid.delivery.destinations import Attempt, Destination, UnsupportedDestination
from mlgrid.delivery.event_cache import CachedEvent, EventCache
from mlgrid.delivery.outcome import AttemptOutcome, ErrorKind, OutcomeName, classify_error
from mlgrid.delivery.recorder import OutcomeRecorder
from mlgrid.delivery.retry import DeadLetterReason
from mlgrid.delivery.settlement import Settlement, to_datetime, undeliverable
from mlgrid.delivery.work import CLAIM_PAGE, Work, WorkSource
from mlgrid.domain.deliveries import CommittedDelivery
from mlgrid.domain.endpoints import EndpointType
from mlgrid.domain.subscription import Subscription
from mlgrid.events.convert import event_id, to_delivery_schema
from mlgrid.metrics import Metrics
from mlgrid.store.delivery_outcomes import AttemptUpdate
from mlgrid.store.faults import DatabaseHealth, log_failure
from mlgrid.tracing import SpanKind, Tracing

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
#: How long work waits when a read it needed failed (the database is away), before it is
#: taken again; nothing is counted against it.
_PUT_BACK_SECONDS = 1.0
#: An answer at least this slow (or none) halves the endpoint's concurrency (``_adapt``).
_SLOW_SECONDS = 5.0
#: The least concurrency backpressure leaves an endpoint.
_MIN_ENDPOINT_CONCURRENCY = 2
#: Ready deliveries in all (saturated subscriptions included) never exceed this many times
#: ``max_ready``: the bound on memory however many subscriptions are saturated.
_READY_HARD_FACTOR = 2
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
        mark_attempts: MarkAttempts | None = None,
        health: DatabaseHealth | None = None,
        endpoint_concurrency: int = 64,
        max_in_flight: int = 1024,
        max_ready: int = 2048,
        tracing: Tracing | None = None,
    ) -> None:
        self._metrics = metrics
        self._tracing = tracing or Tracing.disabled()
        self._lookup = lookup
        self.destinations = destinations
        self._recorder = recorder
        self._events = events
        self._source = source
        self._clock = clock
        self._settlement = Settlement(
            settings=settings, recorder=recorder, source=source, rng=rng or random.Random()
        )
        self._mark_attempts = mark_attempts
        self._health = health
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
        self._endpoint_keys: dict[str, tuple[str, str]] = {}
        self._stopping = False
        self._next_maintenance: float | None = None
        # Isolation between subscriptions: concurrency per endpoint after slow answers, and
        # the subscriptions whose ready queue is full (their work waits in the store).
        self._endpoint_limits: dict[str, float] = {}
        self._saturated: set[str] = set()
        # When the loop will look again by itself (0: it is running now).
        self._sleep_until = 0.0

    # -- inputs -----------------------------------------------------------------------------

    def on_committed(self, deliveries: list[CommittedDelivery]) -> None:
        """Ingest listener: new deliveries are durable; look at them now (their events come
        along, so the first attempt needs no database read)."""
        put = self._events.put_event
        for committed in deliveries:
            if committed.event is not None:
                put(committed.event_seq, committed.event, committed.due_at.timestamp(), committed.event_size,
                    committed.traceparent)
        self._source.committed(deliveries)
        self._wake.set()

    def remember_events(self, events: Sequence[tuple[int, dict[str, Any], float, int, str | None]]) -> None:
        """Events about to be announced by a replay: ``(seq, event, published_at, size, traceparent)``."""
        for seq, event, published_at, size, traceparent in events:
            self._events.put_event(seq, event, published_at, size, traceparent)

    def wake(self) -> None:
        self._wake.set()

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """The loop (the source must be loaded first: ``WorkSource.load``)."""
        while True:
            try:
                self._wake.clear()
                self._sleep_until = await self.step()
                timeout = self._sleep_until - self._clock()
                if timeout > 0 and not self._wake.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout)
                else:
                    await asyncio.sleep(0)  # never hold the event loop for more than one turn
                self._sleep_until = 0.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log_failure(log, self._health, "dispatcher turn failed", exc, "dispatcher_failed")
                await asyncio.sleep(1.0)

    async def step(self) -> float:
        """One turn of the loop: take what is due, admit it, launch what capacity allows, do
        the periodic upkeep. Returns when the loop should look again by itself (epoch
        seconds); ``run`` sleeps until then unless woken. Tests drive it with a fake clock."""
        now = self._clock()
        if self._next_maintenance is None:
            self._next_maintenance = now + _MAINTENANCE_SECONDS
        # Take more only when the ready queues run low: admitting costs a database
        # read, and work taken early only waits longer (on PostgreSQL, under lease).
        self._update_saturated()
        works: list[Work] = []
        if self._wants_work():
            room = min(self._max_ready - self._active_ready(), CLAIM_PAGE)
            works = await self._source.take_due(now, room, self._saturated)
        if works:
            await self._admit(works, now)
        self._launch(self._clock())
        self._metrics.queue_depth.set(len(self._source) + self._ready_count)
        self._metrics.in_flight.set(self._in_flight)
        now = self._clock()
        if now >= self._next_maintenance:
            self._next_maintenance = now + _MAINTENANCE_SECONDS
            await self._source.maintain(now)
        # With the ready queues full, due work waits for capacity: a finished attempt
        # wakes the loop (``_after_attempt``), not the clock.
        wake_at = self._source.next_wake(now) if self._wants_work() else None
        return self._next_maintenance if wake_at is None else min(wake_at, self._next_maintenance)

    @property
    def in_flight(self) -> int:
        """Attempts running now."""
        return self._in_flight

    @property
    def ready(self) -> int:
        """Deliveries admitted (resolved, in memory) and waiting for capacity."""
        return self._ready_count

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
        """Resolve and queue ``works``.

        A failure stays with the work it belongs to: a read that fails (the database is
        away) puts the affected work back for a later turn, untouched; anything that fails
        for one delivery ends that delivery with the error recorded (``Settlement.fail``) and nothing
        else.
        """
        by_subscription: dict[str, list[Work]] = {}
        for work in works:
            by_subscription.setdefault(work.subscription_id, []).append(work)
        try:
            events = await self._events.get_many(w.event_seq for w in works)
        except Exception:
            self._put_back(works, now, "reading their events")
            return
        for subscription_id, group in by_subscription.items():
            try:
                sub = await self._lookup(subscription_id)
            except Exception:
                self._put_back(group, now, "reading their subscription")
                continue
            for work in group:
                cached = events.get(work.event_seq)
                try:
                    self._admit_one(work, sub, cached, now)
                except Exception as exc:
                    self._settlement.fail(work, sub, cached, "prepare", exc)

    def _admit_one(
        self, work: Work, sub: Subscription | None, cached: CachedEvent | None, now: float
    ) -> None:
        if cached is None:
            # The topic was deleted with its events and deliveries: nothing to do.
            self._source.done(work.id)
            return
        if sub is None:
            self._source.done(work.id)
            self._recorder.undeliverable(
                undeliverable(work, None, cached, DeadLetterReason.SUBSCRIPTION_DELETED)
            )
            return
        if sub.endpoint_type == EndpointType.QUEUE:
            self._source.done(work.id)  # receivers fetch pull deliveries themselves
            return
        if now > work.created_at + sub.event_ttl_minutes * 60:
            # Its time to live ran out before this attempt (e.g. the server was down).
            self._source.done(work.id)
            self._recorder.undeliverable(
                undeliverable(work, sub, cached, DeadLetterReason.TIME_TO_LIVE_EXCEEDED)
            )
            return
        if not sub.is_active:
            self._hold(sub, work, now + _INACTIVE_RECHECK_SECONDS, now)
            return
        outgoing = to_delivery_schema(cached.event, sub.source_schema, sub.event_delivery_schema)
        self._subscriptions[sub.id] = sub
        queue = self._ready.get(sub.id)
        if queue is not None and len(queue) >= self._ready_cap(sub, self._endpoint(sub)):
            # Its endpoint has all the work it can take now: this one waits in the store.
            self._saturated.add(sub.id)
            self._set_aside(work)
            return
        self._endpoint(sub)  # an endpoint that cannot be named fails here, for this delivery
        if queue is None:
            queue = self._ready[sub.id] = deque()
        queue.append(_Prepared(work, cached, outgoing))
        self._ready_count += 1

    def _put_back(self, works: Sequence[Work], now: float, doing: str) -> None:
        """Work the dispatcher could not resolve for a reason that is not its own (a failed
        read): it waits a moment and is taken again, with nothing counted against it."""
        log.warning(
            "%d deliveries wait: %s failed",
            len(works),
            doing,
            exc_info=True,
            extra={"action": "admission_deferred", "count": len(works)},
        )
        for work in works:
            work.due = now + _PUT_BACK_SECONDS
            self._source.requeue(work, written=False)

    # -- isolation between subscriptions ---------------------------------------------------

    def _endpoint_limit(self, key: str) -> float:
        """Requests the endpoint may have in flight now: ``endpoint_concurrency``, less after
        slow answers (``_adapt``)."""
        return self._endpoint_limits.get(key, self._endpoint_concurrency)

    def _adapt(self, key: str, seconds: float, outcome: AttemptOutcome) -> None:
        """Backpressure for slow receivers: an answer slower than ``_SLOW_SECONDS`` (or none
        at all) halves the endpoint's concurrency, down to ``_MIN_ENDPOINT_CONCURRENCY``;
        each timely answer gives one request back, up to ``endpoint_concurrency``. A slow
        endpoint so holds a few requests of the node, not its whole capacity."""
        limit = self._endpoint_limit(key)
        if seconds >= _SLOW_SECONDS or outcome.name == OutcomeName.TIMED_OUT:
            limit = max(float(_MIN_ENDPOINT_CONCURRENCY), limit / 2)
        else:
            limit += 1
        if limit >= self._endpoint_concurrency:
            self._endpoint_limits.pop(key, None)
        else:
            if len(self._endpoint_limits) > 10_000:
                self._endpoint_limits.clear()
            self._endpoint_limits[key] = limit

    def _ready_cap(self, sub: Subscription, key: str) -> int:
        """Most deliveries of one subscription admitted and waiting: two rounds of what its
        endpoint may have in flight (in batches), so a slow or hung endpoint's backlog stays
        in the store instead of filling the node's shared ready pool."""
        return max(2, math.ceil(2 * self._endpoint_limit(key)) * max(1, sub.max_events_per_batch))

    def _resume_level(self, subscription_id: str) -> int:
        sub = self._subscriptions.get(subscription_id)
        if sub is None:
            return 0
        return self._ready_cap(sub, self._endpoint(sub)) // 2

    def _update_saturated(self) -> None:
        """Subscriptions whose ready queue is full wait in the store (``take_due`` skips
        them); those that drained to half are resumed."""
        saturated: set[str] = set()
        for subscription_id in self._saturated:
            if len(self._ready.get(subscription_id, ())) > self._resume_level(subscription_id):
                saturated.add(subscription_id)
        resumed = self._saturated - saturated
        self._saturated = saturated
        if resumed:
            self._source.resume(resumed)

    def _active_ready(self) -> int:
        """Ready deliveries of subscriptions that are not saturated: what decides whether the
        node takes more work (a saturated subscription's queue must not stop the others)."""
        held = sum(len(self._ready.get(sid, ())) for sid in self._saturated)
        return self._ready_count - held

    def _wants_work(self) -> bool:
        hard_limit = _READY_HARD_FACTOR * self._max_ready
        return self._active_ready() < self._max_ready // 2 and self._ready_count < hard_limit

    def _set_aside(self, work: Work) -> None:
        """Give unattempted work back to the source (and, with leases, to the store)."""
        if self._source.claims_rows:
            self._recorder.reschedule(AttemptUpdate(work.id, work.attempts, work.due, None, None, None, None))
        self._source.requeue(work, written=self._source.claims_rows)

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
                try:
                    key = self._endpoint(sub)
                    if self._in_flight_by_endpoint.get(key, 0) >= self._endpoint_limit(key):
                        continue
                    if self._in_flight >= self._max_in_flight:
                        break
                    batch = self._take_batch(sub, key, queue, now)
                except Exception as exc:
                    # Only the delivery at the head was being handled: it ends, the rest stay.
                    batch = []
                    if queue:
                        head = queue.popleft()
                        self._ready_count -= 1
                        self._settlement.fail(head.work, sub, head.event, "launch", exc)
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
        """The next batch of ``queue``, taken off it only once it is decided (an exception
        leaves the queue as it was)."""
        first = queue[0]
        if first.work.attempts == 0:
            wait_until = self.circuits.admit(key, to_datetime(now))
            if wait_until is not None:
                queue.popleft()
                self._ready_count -= 1
                try:
                    self._hold(sub, first.work, wait_until.timestamp(), now, endpoint=key)
                except Exception as exc:
                    self._settlement.fail(first.work, sub, first.event, "hold", exc)
                return []
        taken = 1
        if sub.max_events_per_batch > 1:
            candidates = [first]
            for prepared in islice(queue, 1, sub.max_events_per_batch):
                if prepared.work.attempts != first.work.attempts:
                    break
                candidates.append(prepared)
            try:
                plan = plan_batches(
                    [p.event.size for p in candidates], sub.max_events_per_batch, sub.preferred_batch_size_kb
                )
                taken = len(plan[0])
            except ValueError:
                # A size the planner refuses (a bad cached size): this event goes alone.
                log.warning("batch planning failed; sending one event", exc_info=True,
                            extra={"action": "batch_plan_failed", "subscription_id": sub.id})
                taken = 1
        batch = [queue.popleft() for _ in range(taken)]
        self._ready_count -= taken
        return batch

    def _start(self, sub: Subscription, key: str, batch: list[_Prepared]) -> None:
        self._in_flight += 1
        self._in_flight_by_endpoint[key] = self._in_flight_by_endpoint.get(key, 0) + 1
        self._spawn(self._attempt(sub, key, batch))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "dispatcher task failed", exc_info=task.exception(), extra={"action": "dispatcher_failed"}
            )

    # -- one attempt ------------------------------------------------------------------------

    async def _attempt(self, sub: Subscription, key: str, batch: list[_Prepared]) -> None:
        try:
            try:
                destination = self.destinations.get(sub.endpoint_type)
                if destination is None:
                    destination = UnsupportedDestination(sub.endpoint_type)
                attempt = Attempt(delivery_count=batch[0].work.attempts, batch_id=_batch_id(batch))
            except Exception as exc:
                for prepared in batch:
                    self._settlement.fail(prepared.work, sub, prepared.event, "send", exc)
                return
            if self._mark_attempts is not None:
                try:
                    await self._mark_attempts([(p.work.id, p.work.attempts + 1) for p in batch])
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # Not counted, so not sent: the batch waits and is taken again.
                    self._put_back([p.work for p in batch], self._clock(), "counting the attempt")
                    return
            started = time.perf_counter()
            # One span per attempt, continuing the event's own trace: a CloudEvent's traceparent,
            # else the context of the workspace change that emitted it (stored with the event).
            first = batch[0].event
            with self._tracing.span(
                f"deliver {sub.name}",
                kind=SpanKind.CLIENT,
                parent=self._tracing.extract(first.event) or self._tracing.parse(first.traceparent),
                attributes={
                    "messaging.system": "mlgrid", "messaging.destination.name": sub.name,
                    "mlgrid.endpoint_type": sub.endpoint_type,
                    "mlgrid.delivery_count": attempt.delivery_count,
                    "messaging.batch.message_count": len(batch),
                },
            ) as span:
                attempt = replace(attempt, trace_headers=self._tracing.inject(span))
                try:
                    outcome = await destination.send(sub, [p.outgoing for p in batch], attempt)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a destination bug must not lose the events
                    log.exception(
                        "destination %s failed", sub.endpoint_type, extra={"action": "destination_failed"}
                    )
                    outcome = classify_error(ErrorKind.OTHER, f"{type(exc).__name__}: {exc}")
                span.set_attribute("mlgrid.outcome", outcome.name)
                if outcome.http_status is not None:
                    span.set_attribute("http.response.status_code", outcome.http_status)
            self._adapt(key, time.perf_counter() - started, outcome)
            self._observe(
                self._metrics.child(self._metrics.destination_duration, sub.topic_key, sub.name).observe,
                time.perf_counter() - started,
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

    @staticmethod
    def _observe(record: Callable[[float], None], value: float) -> None:
        """Metrics are never worth a delivery: a failing metric is logged and forgotten."""
        try:
            record(value)
        except Exception:
            log.exception("recording a metric failed", extra={"action": "metrics_failed"})

    def _after_attempt(self) -> None:
        """Refill the freed capacity at once; wake the loop only when it must take more work
        (a loop turn per finished attempt would cost more than the attempt's bookkeeping)."""
        now = self._clock()
        self._launch(now)
        if self._saturated and any(
            len(self._ready.get(sid, ())) <= self._resume_level(sid) for sid in self._saturated
        ):
            self._wake.set()  # a saturated subscription has room again: the loop resumes it
        elif self._wants_work():
            # Due now, or earlier than the loop planned to look (a retry just scheduled).
            wake_at = self._source.next_wake(now)
            if wake_at is not None and wake_at < self._sleep_until:
                self._wake.set()

    def _settle(
        self, sub: Subscription, key: str, batch: list[_Prepared], outcome: AttemptOutcome, now: float
    ) -> None:
        """Carry out the outcome for each event of the batch; an exception while recording one
        event ends that event (``Settlement.fail``) and leaves the others' records alone."""
        now_dt = to_datetime(now)
        if outcome.succeeded:
            for prepared in batch:
                try:
                    self._settlement.delivered(prepared.work, outcome, now)
                except Exception as exc:
                    self._settlement.fail(prepared.work, sub, prepared.event, "record", exc)
            self._observe(
                self._metrics.child(self._metrics.delivery_success, sub.topic_key, sub.name).inc, len(batch)
            )
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "delivered %d event(s) to %s",
                    len(batch),
                    sub.name,
                    extra={
                        "action": "delivered",
                        "subscription_id": sub.id,
                        "subscription": sub.name,
                        "delivery_ids": [p.work.id for p in batch],
                        "event_ids": [event_id(p.event.event) for p in batch],
                        "http_status": outcome.http_status,
                    },
                )
            if self.circuits.record_success(key, now_dt):
                held = self._held.pop(key, set())
                if held:
                    self._spawn(self._source.advance(held, now))
            return

        failures = self._metrics.delivery_attempt_failures
        self._observe(failures.labels(sub.topic_key, sub.name, outcome.name).inc, len(batch))
        policy = self._settlement.policy(sub)
        seed = self._settlement.jitter_seed()  # one jitter for the batch, so its events stay together
        latest_retry: datetime | None = None
        for prepared in batch:
            try:
                retry_at = self._settlement.failed(
                    sub, prepared.work, prepared.event, outcome, now, policy, seed
                )
            except Exception as exc:
                self._settlement.fail(prepared.work, sub, prepared.event, "record", exc)
                continue
            if retry_at is not None and (latest_retry is None or retry_at > latest_retry):
                latest_retry = retry_at
        self.circuits.record_failure(key, now_dt, latest_retry)

    # -- holds ------------------------------------------------------------------------------

    def _hold(
        self, sub: Subscription, work: Work, until: float, now: float, endpoint: str | None = None
    ) -> None:
        """Put a delivery back without an attempt (open circuit, inactive subscription)."""
        reason = self._settlement.hold(sub, work, until)
        if reason is not None:
            self._events_for_hold(sub, work, reason)
            return
        if endpoint is not None:
            held = self._held.setdefault(endpoint, set())
            if len(held) >= _MAX_HELD_PER_ENDPOINT:
                held.clear()  # those left out simply wait for their own time; nothing is lost
            held.add(work.id)

    def _events_for_hold(self, sub: Subscription, work: Work, reason: str) -> None:
        async def close() -> None:
            try:
                events = await self._events.get_many([work.event_seq])
            except Exception:
                self._put_back([work], self._clock(), "reading its event")
                return
            cached = events.get(work.event_seq)
            if cached is not None:
                self._recorder.undeliverable(undeliverable(work, sub, cached, reason, held=True))

        self._spawn(close())

    # -- subscription deleted -----------------------------------------------------------------

    def forget_delivery(self, delivery_id: int) -> None:
        """Drop queued work of a delivery ended by someone else (an operator's dead-letter):
        it must not be attempted again. An attempt already in flight finishes; its outcome
        is not recorded (outcomes only change pending rows)."""
        self._source.done(delivery_id)

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
