"""The retry policy: what happens after an attempt, decided as a value.

``decide`` takes the outcome of an attempt, how many attempts were made, when the event was
published and the current time, and returns ``Delivered()``, ``Retry(at=...)`` or
``DeadLetter(reason=...)``. The dispatcher only carries the decision out (a dead letter
without a dead-letter destination becomes a drop, recorded with the same reason). Nothing
here reads a clock or draws randomness of its own: both are arguments, so every rule of
SPEC §6.2–§6.3 is tested exactly.

Rules, in the order they apply:

1. 200–204 → ``Delivered``.
2. A non-retryable outcome (400, 401, 403, 410, 413, a refused endpoint) →
   ``DeadLetter(UndeliverableDueToClientError)`` at once.
3. ``attempts_made`` reached ``maxDeliveryAttempts`` → ``DeadLetter(MaxDeliveryAttemptsExceeded)``.
4. Otherwise the next attempt waits ``schedule[n-1]`` after attempt *n* (the last step
   repeats) plus up to 10 % random jitter; with the default schedule the per-status minimum
   (404 ≥ 5 min, 408 ≥ 2 min, 503 ≥ 30 s) is a floor, with a custom schedule it is not (the
   schedule replaces it); ``Retry-After`` (429) is a floor under either schedule.
5. If that next attempt would fall after ``published_at + eventTimeToLive`` →
   ``DeadLetter(TimeToLiveExceeded)`` now rather than later: Azure checks the TTL at the next
   scheduled attempt, and waiting only to give up would hold the record back for hours.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from mlgrid.delivery.outcome import AttemptOutcome

__all__ = [
    "JITTER_FRACTION",
    "DeadLetter",
    "DeadLetterReason",
    "Decision",
    "Delivered",
    "Retry",
    "RetryPolicy",
    "decide",
    "defer",
    "schedule_delay",
]

#: Each retry step is stretched by a random fraction in [0, JITTER_FRACTION] of itself, so that
#: events failing together do not all come back at the same instant.
JITTER_FRACTION = 0.1


class DeadLetterReason(StrEnum):
    """Azure's ``deadLetterReason`` values (SPEC §6.5), and one of ours."""

    MAX_DELIVERY_ATTEMPTS_EXCEEDED = "MaxDeliveryAttemptsExceeded"
    TIME_TO_LIVE_EXCEEDED = "TimeToLiveExceeded"
    UNDELIVERABLE_DUE_TO_CLIENT_ERROR = "UndeliverableDueToClientError"
    SUBSCRIPTION_DELETED = "SubscriptionDeleted"
    #: Ours: the server could not prepare or record this one delivery (a bug, or an event it
    #: cannot convert); it is ended with the error kept, rather than blocking other work.
    INTERNAL_ERROR = "UndeliverableDueToInternalError"
    #: Ours: an operator dead-lettered the delivery at once (``POST .../deliveries/{id}:deadLetter``).
    DEAD_LETTERED_BY_OPERATOR = "DeadLetteredByOperator"


@dataclass(frozen=True)
class RetryPolicy:
    """A subscription's ``retryPolicy`` (defaults as Azure's: 30 attempts, 1440 minutes).

    The API layer validates the ARM ranges (1–30, 1–1440) and names the field; this class
    only refuses values no policy could mean (``ValueError``), so a bad row cannot loop.
    """

    max_delivery_attempts: int = 30
    event_ttl: timedelta = timedelta(minutes=1440)

    def __post_init__(self) -> None:
        if self.max_delivery_attempts < 1:
            raise ValueError("max_delivery_attempts must be at least 1")
        if self.event_ttl <= timedelta(0):
            raise ValueError("event_ttl must be positive")

    @classmethod
    def from_minutes(cls, max_delivery_attempts: int = 30, event_ttl_minutes: int = 1440) -> RetryPolicy:
        """Build from the ARM fields ``maxDeliveryAttempts`` and ``eventTimeToLiveInMinutes``."""
        return cls(max_delivery_attempts, timedelta(minutes=event_ttl_minutes))


@dataclass(frozen=True)
class Delivered:
    """The attempt succeeded; the delivery is done."""


@dataclass(frozen=True)
class Retry:
    """Attempt again at ``at`` (timezone-aware)."""

    at: datetime


@dataclass(frozen=True)
class DeadLetter:
    """Give up: dead-letter the event (or drop it, without a destination) for ``reason``."""

    reason: str


Decision = Delivered | Retry | DeadLetter


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


def schedule_delay(attempts_made: int, schedule: tuple[float, ...], rng: random.Random) -> timedelta:
    """The wait after attempt number ``attempts_made`` (1-based), jitter included.

    ``schedule[n-1]`` seconds after attempt *n*, the last step repeating, stretched by a
    uniform random fraction in ``[0, JITTER_FRACTION]``: never shorter than the step, at most
    10 % longer.
    """
    if attempts_made < 1:
        raise ValueError("attempts_made must be at least 1 (the first attempt is immediate)")
    if not schedule:
        raise ValueError("the retry schedule must have at least one step")
    step = schedule[min(attempts_made, len(schedule)) - 1]
    if step < 0:
        raise ValueError("retry schedule steps must not be negative")
    return timedelta(seconds=step * (1.0 + rng.uniform(0.0, JITTER_FRACTION)))


def decide(
    outcome: AttemptOutcome,
    attempts_made: int,
    published_at: datetime,
    now: datetime,
    policy: RetryPolicy,
    schedule: tuple[float, ...],
    custom_schedule: bool,
    rng: random.Random,
) -> Decision:
    """Decide what follows an attempt (see the module docstring for the rules).

    ``attempts_made`` counts every attempt so far, the one that produced ``outcome``
    included (so it is at least 1). ``custom_schedule`` is ``Settings.is_custom_retry_schedule``:
    it switches off the per-status minimum delays, which belong to the default schedule.
    """
    _require_aware("published_at", published_at)
    _require_aware("now", now)
    if attempts_made < 1:
        raise ValueError("attempts_made must be at least 1")
    if outcome.succeeded:
        return Delivered()
    if not outcome.retryable:
        return DeadLetter(DeadLetterReason.UNDELIVERABLE_DUE_TO_CLIENT_ERROR)
    if attempts_made >= policy.max_delivery_attempts:
        return DeadLetter(DeadLetterReason.MAX_DELIVERY_ATTEMPTS_EXCEEDED)
    delay = schedule_delay(attempts_made, schedule, rng)
    if not custom_schedule and outcome.min_delay is not None:
        delay = max(delay, outcome.min_delay)
    if outcome.retry_after is not None:
        delay = max(delay, outcome.retry_after)
    at = now + delay
    if at > published_at + policy.event_ttl:
        return DeadLetter(DeadLetterReason.TIME_TO_LIVE_EXCEEDED)
    return Retry(at)


def defer(until: datetime, published_at: datetime, policy: RetryPolicy) -> Retry | DeadLetter:
    """Hold a delivery back until ``until`` without counting an attempt.

    Used when the endpoint's circuit is open (SPEC §6.4): the event waits, it is never
    dropped for that reason, but its time to live still runs, so a wait that would outlive
    it ends in ``TimeToLiveExceeded`` (record ``lastDeliveryOutcome`` as ``Probation`` when
    no attempt was ever made).
    """
    _require_aware("until", until)
    _require_aware("published_at", published_at)
    if until > published_at + policy.event_ttl:
        return DeadLetter(DeadLetterReason.TIME_TO_LIVE_EXCEEDED)
    return Retry(until)
