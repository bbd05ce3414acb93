"""What an attempt's outcome, a hold or an internal error means for one delivery.

The dispatcher (``dispatcher.py``) decides *when* to attempt and runs the attempt; this module
carries out what follows for each event of the batch and hands the records to the
``OutcomeRecorder``:

* the decision (``retry.decide``) per event: delivered, retry at a time, or dead letter (or
  drop, without a dead-letter destination). The time to live counts from when the delivery
  was created: the publish for ordinary deliveries, the replay or redelivery otherwise;
* a hold without an attempt (open circuit, inactive subscription: ``retry.defer``), which may
  itself end the delivery when its time to live runs out while it waits;
* a delivery whose own handling raised ends as ``UndeliverableDueToInternalError`` with the
  error kept, and nothing else is touched.

Every record carries an ``action`` (``delivered``, ``retry_scheduled``, ``dead_lettered``,
``dropped``) and the ids.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from datetime import UTC, datetime

from mlgrid.config import Settings
from mlgrid.delivery.dead_letters import Undeliverable
from mlgrid.delivery.event_cache import CachedEvent
from mlgrid.delivery.outcome import AttemptOutcome, OutcomeName
from mlgrid.delivery.recorder import OutcomeRecorder
from mlgrid.delivery.retry import DeadLetter, DeadLetterReason, Retry, RetryPolicy, decide, defer
from mlgrid.delivery.work import Work, WorkSource
from mlgrid.domain.deliveries import DeliveryState
from mlgrid.domain.subscription import Subscription
from mlgrid.events.convert import event_id
from mlgrid.store.delivery_outcomes import AttemptUpdate, FinalUpdate

__all__ = ["Settlement", "to_datetime", "undeliverable"]

log = logging.getLogger("mlgrid.delivery")

#: Longest error text kept on a delivery ended by an internal error.
_MAX_ERROR_TEXT = 1000
#: What each stage of ``Settlement.fail`` was doing, for the log and the delivery's ``last_error``.
_STAGE_WORDS = {
    "prepare": "preparing the delivery",
    "launch": "starting the attempt",
    "hold": "holding the delivery back",
    "send": "preparing the request",
    "record": "recording the outcome",
}


def to_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def undeliverable(
    work: Work, sub: Subscription | None, cached: CachedEvent, reason: str, held: bool = False
) -> Undeliverable:
    """The dead-letter record of ``work`` ended without a new attempt (its last attempt's facts)."""
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


class Settlement:
    """Turns outcomes into records for the recorder and gives unfinished work back to the
    source; owns the retry policies (one per ``(max attempts, time to live)``)."""

    def __init__(
        self, *, settings: Settings, recorder: OutcomeRecorder, source: WorkSource, rng: random.Random
    ) -> None:
        self._settings = settings
        self._recorder = recorder
        self._source = source
        self._rng = rng
        self._policies: dict[tuple[int, int], RetryPolicy] = {}

    def policy(self, sub: Subscription) -> RetryPolicy:
        key = (sub.max_delivery_attempts, sub.event_ttl_minutes)
        policy = self._policies.get(key)
        if policy is None:
            policy = self._policies[key] = RetryPolicy.from_minutes(*key)
        return policy

    def jitter_seed(self) -> float:
        """One jitter for a failed batch, so its events stay together."""
        return self._rng.random()

    def delivered(self, work: Work, outcome: AttemptOutcome, now: float) -> None:
        """Finish a delivery its attempt delivered."""
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

    def failed(
        self,
        sub: Subscription,
        work: Work,
        cached: CachedEvent,
        outcome: AttemptOutcome,
        now: float,
        policy: RetryPolicy,
        seed: float,
    ) -> datetime | None:
        """Retry or give up on one event after a failed attempt; returns the retry time."""
        attempts = work.attempts + 1
        decision = decide(
            outcome,
            attempts,
            to_datetime(work.created_at),
            to_datetime(now),
            policy,
            self._settings.retry_schedule,
            self._settings.is_custom_retry_schedule,
            random.Random(seed),
        )
        if isinstance(decision, DeadLetter):
            self._source.done(work.id)
            self._recorder.undeliverable(
                Undeliverable(
                    delivery_id=work.id,
                    subscription_id=sub.id,
                    subscription=sub,
                    event=cached.event,
                    published_at=cached.published_at,
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
            return None
        assert isinstance(decision, Retry)
        update = AttemptUpdate(
            id=work.id,
            attempts=attempts,
            next_attempt_at=decision.at.timestamp(),
            last_outcome=outcome.name,
            last_http_status=outcome.http_status,
            last_error=outcome.detail or None,
            last_attempt_at=now,
            last_duration_ms=outcome.duration_ms,
            last_response=outcome.response,
        )
        work.attempts = attempts
        work.due = update.next_attempt_at
        work.last_outcome = outcome.name
        work.last_http_status = outcome.http_status
        work.last_attempt_at = now
        self._recorder.reschedule(update)
        self._source.requeue(work, written=True)
        if log.isEnabledFor(logging.INFO):
            event = event_id(cached.event)
            log.info(
                "attempt %d of event %s to %s failed (%s); retry at %s",
                attempts,
                event,
                sub.name,
                outcome.name,
                decision.at.isoformat(),
                extra={
                    "action": "retry_scheduled",
                    "delivery_id": work.id,
                    "subscription_id": sub.id,
                    "subscription": sub.name,
                    "event_id": event,
                    "attempts": attempts,
                    "outcome": outcome.name,
                    "http_status": outcome.http_status,
                    "retry_at": work.due,
                },
            )
        return decision.at

    def hold(self, sub: Subscription, work: Work, until: float) -> str | None:
        """Put a delivery back without an attempt until ``until``; when waiting that long would
        outlive its time to live it is done instead, and the dead-letter reason is returned
        (the caller ends it: that needs its event, perhaps a read)."""
        decision = defer(to_datetime(until), to_datetime(work.created_at), self.policy(sub))
        if isinstance(decision, DeadLetter):
            self._source.done(work.id)
            return decision.reason
        work.due = until
        if self._source.persists_holds:
            self._recorder.reschedule(
                AttemptUpdate(work.id, work.attempts, until, None, None, None, None)
            )
        self._source.requeue(work, written=self._source.persists_holds)
        return None

    def fail(
        self, work: Work, sub: Subscription | None, cached: CachedEvent | None, stage: str, exc: BaseException
    ) -> None:
        """End one delivery whose own handling raised: dead-lettered (or dropped) with reason
        ``UndeliverableDueToInternalError`` and the error kept as its ``last_error``. Never
        raises: it runs where an exception would otherwise reach other deliveries."""
        try:
            log.error(
                "delivery %s failed while %s: %s: %s",
                work.id,
                _STAGE_WORDS.get(stage, stage),
                type(exc).__name__,
                exc,
                exc_info=exc,
                extra={
                    "action": "delivery_failed",
                    "stage": stage,
                    "delivery_id": work.id,
                    "subscription_id": work.subscription_id,
                },
            )
            self._source.done(work.id)
            if cached is None:
                return  # its event is gone: the row went with its topic
            item = undeliverable(work, sub, cached, DeadLetterReason.INTERNAL_ERROR)
            error = f"{_STAGE_WORDS.get(stage, stage)}: {type(exc).__name__}: {exc}"
            self._recorder.undeliverable(replace(item, last_error=error[:_MAX_ERROR_TEXT]))
        except Exception:
            log.exception("could not end delivery %s", work.id, extra={"action": "delivery_failed"})
