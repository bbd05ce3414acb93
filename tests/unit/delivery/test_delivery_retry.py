"""The retry policy as a value (SPEC §6.2, §6.3)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlgrid.config import DEFAULT_RETRY_SCHEDULE
from mlgrid.delivery.outcome import AttemptOutcome, ErrorKind, classify_error, classify_response
from mlgrid.delivery.retry import (
    DeadLetter,
    DeadLetterReason,
    Decision,
    Delivered,
    Retry,
    RetryPolicy,
    decide,
    defer,
    schedule_delay,
)

PUBLISHED = datetime(2024, 3, 7, 9, 0, 0, tzinfo=UTC)
DEFAULT = RetryPolicy()
SERVER_ERROR = classify_response(500)


class FixedRandom(random.Random):
    """A Random whose uniform() always returns the given end of the interval."""

    def __init__(self, at_max: bool) -> None:
        super().__init__(0)
        self.at_max = at_max

    def uniform(self, a: float, b: float) -> float:
        return b if self.at_max else a


NO_JITTER = FixedRandom(at_max=False)
FULL_JITTER = FixedRandom(at_max=True)


def run_decide(
    outcome: AttemptOutcome = SERVER_ERROR,
    attempts: int = 1,
    now: datetime = PUBLISHED,
    policy: RetryPolicy = DEFAULT,
    schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE,
    custom: bool = False,
    rng: random.Random = NO_JITTER,
) -> Decision:
    return decide(outcome, attempts, PUBLISHED, now, policy, schedule, custom, rng)


def test_defaults_are_azures() -> None:
    assert DEFAULT.max_delivery_attempts == 30
    assert DEFAULT.event_ttl == timedelta(minutes=1440)
    assert RetryPolicy.from_minutes(5, 30) == RetryPolicy(5, timedelta(minutes=30))


@pytest.mark.parametrize("kwargs", [{"max_delivery_attempts": 0}, {"event_ttl": timedelta(0)}])
def test_policy_refuses_meaningless_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_success_is_delivered() -> None:
    assert run_decide(classify_response(200)) == Delivered()
    assert run_decide(classify_response(204), attempts=30) == Delivered()


@pytest.mark.parametrize("status", [400, 401, 403, 410, 413])
def test_client_errors_dead_letter_at_once(status: int) -> None:
    decision = run_decide(classify_response(status))
    assert decision == DeadLetter("UndeliverableDueToClientError")


def test_refused_endpoint_dead_letters_at_once() -> None:
    assert run_decide(classify_error(ErrorKind.UNSAFE_ENDPOINT)) == DeadLetter(
        DeadLetterReason.UNDELIVERABLE_DUE_TO_CLIENT_ERROR
    )


def test_default_schedule_without_jitter() -> None:
    expected = [10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 43200, 43200, 43200]
    policy = RetryPolicy(30, timedelta(days=30))  # out of the API's range, but shows the steps
    for attempts, seconds in enumerate(expected, start=1):
        decision = run_decide(attempts=attempts, policy=policy)
        assert decision == Retry(PUBLISHED + timedelta(seconds=seconds)), attempts


def test_first_retry_after_10_seconds() -> None:
    assert run_decide(attempts=1) == Retry(PUBLISHED + timedelta(seconds=10))


def test_jitter_is_at_most_ten_percent() -> None:
    decision = run_decide(attempts=2, rng=FULL_JITTER)
    assert decision == Retry(PUBLISHED + timedelta(seconds=33))


def test_custom_schedule_last_step_repeats() -> None:
    schedule = (0.1, 0.2, 0.5)
    waits = [run_decide(attempts=n, schedule=schedule, custom=True) for n in range(1, 6)]
    assert waits == [Retry(PUBLISHED + timedelta(seconds=s)) for s in (0.1, 0.2, 0.5, 0.5, 0.5)]


@pytest.mark.parametrize(
    ("status", "minimum"),
    [(404, timedelta(minutes=5)), (408, timedelta(minutes=2)), (503, timedelta(seconds=30))],
)
def test_minimum_delays_apply_with_the_default_schedule(status: int, minimum: timedelta) -> None:
    decision = run_decide(classify_response(status), attempts=1)
    assert decision == Retry(PUBLISHED + minimum)


def test_minimum_delay_does_not_shorten_a_longer_step() -> None:
    decision = run_decide(classify_response(503), attempts=4)  # step 5 min > 30 s
    assert decision == Retry(PUBLISHED + timedelta(minutes=5))


@pytest.mark.parametrize("status", [404, 408, 503])
def test_custom_schedule_replaces_minimum_delays(status: int) -> None:
    decision = run_decide(classify_response(status), schedule=(0.1,), custom=True)
    assert decision == Retry(PUBLISHED + timedelta(seconds=0.1))


@pytest.mark.parametrize("custom", [False, True])
def test_retry_after_is_always_honoured(custom: bool) -> None:
    outcome = classify_response(429, timedelta(seconds=20))
    schedule = (0.1,) if custom else DEFAULT_RETRY_SCHEDULE
    decision = run_decide(outcome, schedule=schedule, custom=custom)
    assert decision == Retry(PUBLISHED + timedelta(seconds=20))


def test_retry_after_shorter_than_the_step_does_not_shorten_it() -> None:
    outcome = classify_response(429, timedelta(seconds=1))
    assert run_decide(outcome, attempts=3) == Retry(PUBLISHED + timedelta(minutes=1))


def test_max_delivery_attempts() -> None:
    policy = RetryPolicy(max_delivery_attempts=3)
    assert isinstance(run_decide(attempts=2, policy=policy), Retry)
    assert run_decide(attempts=3, policy=policy) == DeadLetter("MaxDeliveryAttemptsExceeded")
    assert run_decide(attempts=1, policy=RetryPolicy(1)) == DeadLetter("MaxDeliveryAttemptsExceeded")


def test_client_error_wins_over_max_attempts() -> None:
    policy = RetryPolicy(max_delivery_attempts=1)
    assert run_decide(classify_response(400), policy=policy) == DeadLetter("UndeliverableDueToClientError")


def test_ttl_is_checked_at_the_next_scheduled_attempt() -> None:
    policy = RetryPolicy(30, timedelta(minutes=1))
    # Attempt 2 at +10 s: the next one (+30 s → +40 s) is still inside the minute.
    now = PUBLISHED + timedelta(seconds=10)
    assert run_decide(attempts=2, now=now, policy=policy) == Retry(PUBLISHED + timedelta(seconds=40))
    # Attempt 3 at +40 s: the next one (+60 s → +100 s) would be after the TTL.
    now = PUBLISHED + timedelta(seconds=40)
    assert run_decide(attempts=3, now=now, policy=policy) == DeadLetter("TimeToLiveExceeded")


def test_ttl_boundary_is_inclusive() -> None:
    policy = RetryPolicy(30, timedelta(seconds=10))
    assert run_decide(attempts=1, policy=policy) == Retry(PUBLISHED + timedelta(seconds=10))
    assert run_decide(attempts=1, policy=policy, rng=FULL_JITTER) == DeadLetter("TimeToLiveExceeded")


def test_a_minimum_delay_can_push_past_the_ttl() -> None:
    policy = RetryPolicy(30, timedelta(minutes=3))
    assert run_decide(classify_response(404), policy=policy) == DeadLetter("TimeToLiveExceeded")


def test_azure_example_ttl_30_minutes_stops_after_6_attempts() -> None:
    """Azure's note: TTL 30 min, 10 attempts → at most 6 attempts, then dead-lettered."""
    policy = RetryPolicy(10, timedelta(minutes=30))
    now = PUBLISHED
    attempts = 0
    while True:
        attempts += 1
        decision = run_decide(attempts=attempts, now=now, policy=policy)
        if not isinstance(decision, Retry):
            break
        now = decision.at
    assert attempts == 6
    assert decision == DeadLetter("TimeToLiveExceeded")


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError):
        decide(
            SERVER_ERROR,
            1,
            datetime(2024, 1, 1),
            PUBLISHED,
            DEFAULT,
            DEFAULT_RETRY_SCHEDULE,
            False,
            NO_JITTER,
        )
    with pytest.raises(ValueError):
        run_decide(attempts=0)


def test_schedule_delay_validates() -> None:
    with pytest.raises(ValueError):
        schedule_delay(0, (1.0,), NO_JITTER)
    with pytest.raises(ValueError):
        schedule_delay(1, (), NO_JITTER)


def test_defer_keeps_the_event_unless_ttl_runs_out() -> None:
    policy = RetryPolicy(30, timedelta(minutes=10))
    assert defer(PUBLISHED + timedelta(minutes=5), PUBLISHED, policy) == Retry(
        PUBLISHED + timedelta(minutes=5)
    )
    assert defer(PUBLISHED + timedelta(minutes=11), PUBLISHED, policy) == DeadLetter("TimeToLiveExceeded")


@given(
    schedule=st.lists(st.floats(min_value=0, max_value=1e5, allow_nan=False), min_size=1, max_size=12),
    seed=st.integers(min_value=0, max_value=2**32),
    attempts=st.integers(min_value=1, max_value=40),
)
def test_jitter_stays_within_ten_percent(schedule: list[float], seed: int, attempts: int) -> None:
    steps = tuple(schedule)
    step = steps[min(attempts, len(steps)) - 1]
    delay = schedule_delay(attempts, steps, random.Random(seed)).total_seconds()
    assert step - 1e-6 <= delay <= step * 1.1 + 1e-6


@given(seed=st.integers(min_value=0, max_value=2**32))
def test_default_schedule_waits_never_shrink(seed: int) -> None:
    """With jitter the waits still grow: each step is more than 1.1x the one before it,
    and the repeating last step keeps within its own 10 %."""
    rng = random.Random(seed)
    waits = [schedule_delay(n, DEFAULT_RETRY_SCHEDULE, rng) for n in range(1, 31)]
    for earlier, later, n in zip(waits, waits[1:], range(2, 31), strict=False):
        if n <= len(DEFAULT_RETRY_SCHEDULE):
            assert later > earlier
        else:
            assert later >= earlier / 1.1


@given(
    seed=st.integers(min_value=0, max_value=2**32),
    max_attempts=st.integers(min_value=1, max_value=30),
    ttl_minutes=st.integers(min_value=1, max_value=1440),
    status=st.sampled_from([404, 408, 429, 500, 503]),
)
def test_every_delivery_ends_and_retries_move_forward(
    seed: int, max_attempts: int, ttl_minutes: int, status: int
) -> None:
    """Walking the policy always ends in a dead letter, within the attempt budget and TTL."""
    rng = random.Random(seed)
    policy = RetryPolicy(max_attempts, timedelta(minutes=ttl_minutes))
    outcome = classify_response(status, timedelta(seconds=20) if status == 429 else None)
    now = PUBLISHED
    for attempts in range(1, max_attempts + 1):
        decision = decide(outcome, attempts, PUBLISHED, now, policy, DEFAULT_RETRY_SCHEDULE, False, rng)
        if isinstance(decision, DeadLetter):
            assert decision.reason in {"MaxDeliveryAttemptsExceeded", "TimeToLiveExceeded"}
            if decision.reason == "MaxDeliveryAttemptsExceeded":
                assert attempts == max_attempts
            return
        assert isinstance(decision, Retry)
        assert decision.at > now
        assert decision.at <= PUBLISHED + policy.event_ttl
        now = decision.at
    pytest.fail("the policy never gave up")
