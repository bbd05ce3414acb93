"""Pull delivery for ``Queue`` subscriptions (SPEC §7), on the same delivery rows as push.

A receiver takes events under a lock: the row gets a ``lock_token``, ``lease_until`` (the
lock's expiry) and one more ``attempts`` (its ``deliveryCount``). Then:

* acknowledge → ``delivered``;
* release → receivable again after the chosen delay (0, 10, 60, 600 or 3600 s);
* reject → dead-lettered (or dropped) with ``UndeliverableDueToClientError``, last outcome
  ``Rejected``;
* renewLock → the lock runs for another ``receiveLockDurationInSeconds``;
* the lock runs out → receivable again, and the next receive counts one more delivery.

An event handed out ``maxDeliveryCount`` times that comes back (released, or its lock ran
out) is dead-lettered with ``MaxDeliveryAttemptsExceeded``; one older than the subscription's
time to live with ``TimeToLiveExceeded``. Both are noticed when receivers look for events and
by a sweeper, so they also end when nobody receives any more.

Everything is in the database, so receivers on any node share one queue, and a restart loses
no lock (an unacknowledged event simply comes back when its lock runs out). Long polls wait on
an in-process signal that the ingest listener raises as soon as deliveries for the
subscription commit, and otherwise look again every second (for delayed releases, expired
locks, and publishes on other nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import ConfigDict

from mlgrid.body import Body, Invalid, Missing, checker, parse
from mlgrid.delivery.dead_letters import NOT_ATTEMPTED, DeadLetterService, Undeliverable
from mlgrid.delivery.dispatcher import SubscriptionLookup
from mlgrid.delivery.retry import DeadLetterReason
from mlgrid.domain.deliveries import CommittedDelivery
from mlgrid.domain.endpoints import EndpointType
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.domain.subscription import Subscription
from mlgrid.errors import BadRequest, invalid
from mlgrid.events.convert import to_delivery_schema
from mlgrid.events.jsoncodec import loads_exact
from mlgrid.metrics import Metrics
from mlgrid.store import delivery_pull as pull_store
from mlgrid.store.database import Database
from mlgrid.store.delivery_pull import PulledRow
from mlgrid.store.faults import log_failure

__all__ = [
    "MAX_EVENTS_PER_RECEIVE",
    "MAX_LOCK_TOKENS",
    "MAX_WAIT_SECONDS",
    "RELEASE_DELAYS",
    "LockResult",
    "LockTokensBody",
    "PullService",
    "Received",
]

log = logging.getLogger("mlgrid.delivery")

MAX_EVENTS_PER_RECEIVE = 100
MAX_WAIT_SECONDS = 120
MAX_LOCK_TOKENS = 1000
RELEASE_DELAYS = (0, 10, 60, 600, 3600)
REJECTED = "Rejected"
LOCK_EXPIRED = "LockExpired"
#: How often a waiting receive looks at the database without being signalled.
_POLL_SECONDS = 1.0
_SWEEP_SECONDS = 5.0
_LOCK_LOST = "TokenLost"
_LOCK_LOST_MESSAGE = "the lock token is unknown, its lock expired, or its event was already settled"


@dataclass(frozen=True)
class Received:
    lock_token: str
    delivery_count: int
    event: dict[str, Any]
    #: The context stored with the event (``events.traceparent``): the receive span links it.
    traceparent: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "brokerProperties": {"lockToken": self.lock_token, "deliveryCount": self.delivery_count},
            "event": self.event,
        }


@dataclass(frozen=True)
class LockResult:
    succeeded: list[str]
    failed: list[str]

    def as_json(self) -> dict[str, Any]:
        return {
            "succeededLockTokens": self.succeeded,
            "failedLockTokens": [
                {"lockToken": token, "error": {"code": _LOCK_LOST, "message": _LOCK_LOST_MESSAGE}}
                for token in self.failed
            ],
        }


_NON_EMPTY = "must be a non-empty array of lock tokens"


def _tokens(value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise Invalid(_NON_EMPTY)
    if len(value) > MAX_LOCK_TOKENS:
        raise Invalid(f"at most {MAX_LOCK_TOKENS} lock tokens per request")
    for index, token in enumerate(value):
        if not isinstance(token, str) or not token or len(token) > 64:
            raise Invalid("must be a lock token string from a receive", at=f"[{index}]")
    return list(dict.fromkeys(value))


class LockTokensBody(Body):
    """The body of ``:acknowledge``, ``:release``, ``:reject`` and ``:renewLock``. Other
    members are ignored, as they always were."""

    model_config = ConfigDict(extra="ignore")

    lock_tokens: Annotated[Any, Missing(_NON_EMPTY), *checker(_tokens, {
        "type": "array", "minItems": 1, "maxItems": MAX_LOCK_TOKENS,
        "items": {"type": "string", "minLength": 1, "maxLength": 64},
    })]

    @classmethod
    def object_reason(cls) -> str:
        return 'must be a JSON object {"lockTokens": [...]}'


def parse_lock_tokens(body: object) -> list[str]:
    """``{"lockTokens": ["...", ...]}`` → the tokens, once each in order (400 naming
    ``lockTokens`` otherwise)."""
    tokens: list[str] = parse(LockTokensBody, body).lock_tokens
    return tokens


class PullService:
    def __init__(
        self,
        db: Database,
        metrics: Metrics,
        dead_letters: DeadLetterService,
        node_id: str,
        lookup: SubscriptionLookup,
        clock: Callable[[], float] = time.time,
        queue_ids: Callable[[], Sequence[str]] | None = None,
    ) -> None:
        self._db = db
        self._metrics = metrics
        self._dead_letters = dead_letters
        self._node_id = node_id
        self._lookup = lookup
        self._clock = clock
        #: The pull subscriptions' ids from the subscription cache (None: read them from the
        #: database at each sweep).
        self._queue_ids = queue_ids
        self._signals: dict[str, asyncio.Event] = {}

    # -- wake-ups ---------------------------------------------------------------------------

    def on_committed(self, deliveries: list[CommittedDelivery]) -> None:
        """Ingest listener: wake the receivers waiting on these subscriptions."""
        if not self._signals:
            return
        for subscription_id in {d.subscription_id for d in deliveries}:
            self.notify(subscription_id)

    def notify(self, subscription_id: str) -> None:
        signal = self._signals.pop(subscription_id, None)
        if signal is not None:
            signal.set()

    # -- receive --------------------------------------------------------------------------------

    @staticmethod
    def _require_queue(sub: Subscription) -> None:
        if sub.endpoint_type != EndpointType.QUEUE:
            raise BadRequest(
                f"event subscription {sub.name!r} delivers to a {sub.endpoint_type} endpoint; only Queue "
                "subscriptions can be received from",
                code=ErrorCode.INVALID_OPERATION,
            )

    async def receive(
        self,
        sub: Subscription,
        max_events: int,
        max_wait_seconds: float,
        gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> list[Received]:
        """Lock and return up to ``max_events`` events, waiting up to ``max_wait_seconds`` for one.

        ``gone`` tells whether the caller has disconnected: a long poll whose client left
        stops waiting instead of locking events nobody will settle.
        """
        self._require_queue(sub)
        deadline = time.monotonic() + max_wait_seconds
        first = True
        while True:
            if not first and gone is not None and await gone():
                return []
            first = False
            # Take the signal before looking, so a commit between the look and the wait is seen.
            signal = self._signals.get(sub.id)
            if signal is None:
                signal = self._signals[sub.id] = asyncio.Event()
            received = await self._take(sub, max_events)
            remaining = deadline - time.monotonic()
            if received or remaining <= 0:
                return received
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), min(remaining, _POLL_SECONDS))

    async def _take(self, sub: Subscription, max_events: int) -> list[Received]:
        while True:
            now = self._clock()
            ttl_cutoff = now - sub.event_ttl_minutes * 60
            async with self._db.write() as conn:
                rows = await pull_store.receivable(conn, sub.id, now, max_events)
                exhausted = [
                    r for r in rows if r.attempts >= sub.max_delivery_count or r.created_at < ttl_cutoff
                ]
                spent = {r.id for r in exhausted}
                good = [r for r in rows if r.id not in spent]
                expired = [self._expired(sub, r, now) for r in exhausted]
                closed = await self._dead_letters.close(conn, expired, now)
                locks = [(r.id, uuid.uuid4().hex, r.attempts + 1) for r in good]
                await pull_store.lock_for_receiver(
                    conn, locks, self._node_id, now, now + sub.receive_lock_duration_seconds
                )
            self._dead_letters.report(closed)
            if good or len(rows) < max_events:
                return [
                    Received(token, count, self._outgoing(sub, row), row.traceparent)
                    for row, (_, token, count) in zip(good, locks, strict=True)
                ]

    @staticmethod
    def _outgoing(sub: Subscription, row: PulledRow) -> dict[str, Any]:
        event = loads_exact(row.event_body)
        return to_delivery_schema(event, sub.source_schema, sub.event_delivery_schema)

    def _expired(self, sub: Subscription, row: PulledRow, now: float) -> Undeliverable:
        reason = (
            DeadLetterReason.TIME_TO_LIVE_EXCEEDED
            if row.created_at < now - sub.event_ttl_minutes * 60
            else DeadLetterReason.MAX_DELIVERY_ATTEMPTS_EXCEEDED
        )
        # A row still carrying its token was locked when it ran out; otherwise it was released
        # (or never handed out, when only its time to live ran out).
        last = LOCK_EXPIRED if row.lock_token else (row.last_outcome or NOT_ATTEMPTED)
        return self._undeliverable(sub, row, reason, last)

    @staticmethod
    def _undeliverable(sub: Subscription, row: PulledRow, reason: str, last_outcome: str) -> Undeliverable:
        return Undeliverable(
            delivery_id=row.id,
            subscription_id=sub.id,
            subscription=sub,
            event=loads_exact(row.event_body),
            published_at=row.published_at,
            reason=reason,
            attempts=row.attempts,
            last_outcome=last_outcome,
            last_http_status=None,
            last_error=None,
            last_attempt_at=row.last_attempt_at,
        )

    # -- settling -------------------------------------------------------------------------------

    async def acknowledge(self, sub: Subscription, tokens: Sequence[str]) -> LockResult:
        self._require_queue(sub)
        now = self._clock()
        async with self._db.write() as conn:
            done = set(await pull_store.acknowledge_locked(conn, sub.id, tokens, now))
        if done:
            self._metrics.delivery_success.labels(sub.topic_key, sub.name).inc(len(done))
        return _result(tokens, done)

    async def release(self, sub: Subscription, tokens: Sequence[str], delay_seconds: int) -> LockResult:
        """Unlock events; one already handed out ``maxDeliveryCount`` times is dead-lettered."""
        self._require_queue(sub)
        if delay_seconds not in RELEASE_DELAYS:
            raise invalid("releaseDelayInSeconds", "must be one of 0, 10, 60, 600 or 3600")
        now = self._clock()
        async with self._db.write() as conn:
            rows = await pull_store.locked_rows(conn, sub.id, tokens, now)
            spent = [r for r in rows if r.attempts >= sub.max_delivery_count]
            kept = [r for r in rows if r.attempts < sub.max_delivery_count]
            await pull_store.release_rows(conn, [r.id for r in kept], now + delay_seconds)
            closed = await self._dead_letters.close(
                conn,
                [
                    self._undeliverable(sub, r, DeadLetterReason.MAX_DELIVERY_ATTEMPTS_EXCEEDED, "Released")
                    for r in spent
                ],
                now,
            )
        self._dead_letters.report(closed)
        if kept and delay_seconds == 0:
            self.notify(sub.id)
        return _result(tokens, {r.lock_token for r in rows if r.lock_token})

    async def reject(self, sub: Subscription, tokens: Sequence[str]) -> LockResult:
        self._require_queue(sub)
        now = self._clock()
        async with self._db.write() as conn:
            rows = await pull_store.locked_rows(conn, sub.id, tokens, now)
            closed = await self._dead_letters.close(
                conn,
                [
                    self._undeliverable(sub, r, DeadLetterReason.UNDELIVERABLE_DUE_TO_CLIENT_ERROR, REJECTED)
                    for r in rows
                ],
                now,
            )
        self._dead_letters.report(closed)
        done = {entry.item.delivery_id for entry in closed}
        return _result(tokens, {r.lock_token for r in rows if r.lock_token and r.id in done})

    async def renew_locks(self, sub: Subscription, tokens: Sequence[str]) -> LockResult:
        self._require_queue(sub)
        now = self._clock()
        async with self._db.write() as conn:
            renewed = set(
                await pull_store.renew_locked(
                    conn, sub.id, tokens, now, now + sub.receive_lock_duration_seconds
                )
            )
        return _result(tokens, renewed)

    # -- the sweeper --------------------------------------------------------------------------

    async def sweep_once(self) -> int:
        """Dead-letter pull events that ran out of deliveries or time while nobody received."""
        now = self._clock()
        if self._queue_ids is not None:
            ids = list(self._queue_ids())  # no pull subscription: no query at all
        else:
            async with self._db.read() as conn:
                ids = await pull_store.pull_subscription_ids(conn)
        total = 0
        for subscription_id in ids:
            sub = await self._lookup(subscription_id)
            if sub is None or sub.endpoint_type != EndpointType.QUEUE:
                continue
            cutoff = now - sub.event_ttl_minutes * 60
            async with self._db.read() as conn:  # a cheap look first: usually there are none
                if not await pull_store.exhausted_pull_rows(
                    conn, sub.id, sub.max_delivery_count, cutoff, now, 1, lock=False
                ):
                    continue
            async with self._db.write() as conn:
                rows = await pull_store.exhausted_pull_rows(
                    conn, sub.id, sub.max_delivery_count, cutoff, now, 500
                )
                closed = await self._dead_letters.close(conn, [self._expired(sub, r, now) for r in rows], now)
            self._dead_letters.report(closed)
            total += len(closed)
        return total

    async def run_sweeper(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_SECONDS)
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log_failure(log, self._db.health, "pull sweep failed", exc, "pull_sweep_failed")


def _result(tokens: Sequence[str], succeeded: set[str]) -> LockResult:
    return LockResult(
        succeeded=[t for t in tokens if t in succeeded],
        failed=[t for t in tokens if t not in succeeded],
    )
