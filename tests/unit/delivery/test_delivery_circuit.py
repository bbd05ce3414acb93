"""The per-endpoint circuit breaker (SPEC §6.4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlgrid.delivery.circuit import (
    CircuitBreaker,
    CircuitRegistry,
    CircuitSnapshot,
    CircuitState,
    endpoint_key,
)

T0 = datetime(2024, 3, 7, 9, 0, 0, tzinfo=UTC)


def seconds(n: float) -> datetime:
    return T0 + timedelta(seconds=n)


def trip(breaker: CircuitBreaker, retry_at: datetime, failures: int = 10) -> None:
    for _ in range(failures):
        breaker.record_failure(T0, retry_at)


def test_closed_breaker_admits_everything() -> None:
    breaker = CircuitBreaker()
    assert breaker.admit(T0) is None
    assert breaker.state(T0) is CircuitState.CLOSED


def test_nine_failures_keep_it_closed() -> None:
    breaker = CircuitBreaker()
    trip(breaker, seconds(60), failures=9)
    assert breaker.state(T0) is CircuitState.CLOSED
    assert breaker.admit(T0) is None
    assert breaker.consecutive_failures == 9


def test_ten_consecutive_failures_open_it_until_the_scheduled_retry() -> None:
    breaker = CircuitBreaker()
    trip(breaker, seconds(60))
    assert breaker.state(seconds(1)) is CircuitState.OPEN
    assert breaker.admit(seconds(1)) == seconds(60)
    assert breaker.admit(seconds(59)) == seconds(60)


def test_a_success_resets_the_streak() -> None:
    breaker = CircuitBreaker()
    trip(breaker, seconds(60), failures=9)
    assert breaker.record_success(T0) is False
    trip(breaker, seconds(60), failures=9)
    assert breaker.state(T0) is CircuitState.CLOSED


def test_new_events_wait_behind_the_latest_scheduled_retry() -> None:
    """The oldest failing delivery is deepest in the schedule: its retry is the latest."""
    breaker = CircuitBreaker()
    breaker.record_failure(T0, seconds(600))  # the oldest delivery, 5th attempt
    for _ in range(9):
        breaker.record_failure(seconds(1), seconds(11))  # young deliveries, 1st attempt
    assert breaker.admit(seconds(2)) == seconds(600)


def test_retries_that_already_passed_are_forgotten() -> None:
    breaker = CircuitBreaker()
    breaker.record_failure(T0, seconds(5))
    for _ in range(9):
        breaker.record_failure(seconds(10), seconds(20))
    assert breaker.admit(seconds(11)) == seconds(20)


def test_half_open_admits_one_probe() -> None:
    breaker = CircuitBreaker()
    trip(breaker, seconds(60))
    assert breaker.state(seconds(60)) is CircuitState.HALF_OPEN
    assert breaker.admit(seconds(60)) is None  # the probe
    # While the probe is in flight, others wait for its timeout (or its result).
    assert breaker.admit(seconds(61)) == seconds(90)


def test_a_probe_that_never_reports_is_replaced() -> None:
    breaker = CircuitBreaker()
    trip(breaker, seconds(60))
    assert breaker.admit(seconds(60)) is None
    assert breaker.admit(seconds(90)) is None


def test_probe_success_closes_and_says_so() -> None:
    breaker = CircuitBreaker()
    trip(breaker, seconds(60))
    assert breaker.admit(seconds(60)) is None
    assert breaker.record_success(seconds(61)) is True
    assert breaker.state(seconds(61)) is CircuitState.CLOSED
    assert breaker.consecutive_failures == 0
    assert breaker.admit(seconds(61)) is None


def test_probe_failure_reopens_until_its_retry() -> None:
    breaker = CircuitBreaker()
    trip(breaker, seconds(60))
    assert breaker.admit(seconds(60)) is None
    breaker.record_failure(seconds(61), seconds(361))
    assert breaker.state(seconds(62)) is CircuitState.OPEN
    assert breaker.admit(seconds(62)) == seconds(361)


def test_a_final_failure_leaves_nothing_to_wait_behind() -> None:
    """Dead-lettered deliveries schedule no retry: nothing is held back for them."""
    breaker = CircuitBreaker()
    for _ in range(10):
        breaker.record_failure(T0, None)
    assert breaker.state(T0) is CircuitState.HALF_OPEN
    assert breaker.admit(T0) is None


def test_younger_retries_do_not_shorten_the_wait() -> None:
    breaker = CircuitBreaker()
    trip(breaker, seconds(600))
    breaker.record_failure(seconds(30), seconds(90))
    assert breaker.admit(seconds(31)) == seconds(600)


def test_snapshot_for_the_ui() -> None:
    breaker = CircuitBreaker()
    trip(breaker, seconds(60))
    assert breaker.snapshot(seconds(1)) == CircuitSnapshot(CircuitState.OPEN, 10, seconds(60))
    assert breaker.snapshot(seconds(60)) == CircuitSnapshot(CircuitState.HALF_OPEN, 10, None)
    assert CircuitState.HALF_OPEN.value == "half-open"


def test_threshold_and_clock_checks() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker().admit(datetime(2024, 1, 1))


@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["ok", "fail", "final", "admit"]),
            st.integers(min_value=0, max_value=120),
        ),
        max_size=60,
    )
)
def test_admit_never_drops_and_never_points_to_the_past(events: list[tuple[str, int]]) -> None:
    """Whatever happens, admit answers 'go' or a time strictly after now, never forever."""
    breaker = CircuitBreaker(failure_threshold=3)
    now = T0
    for action, step in events:
        now = now + timedelta(seconds=step)
        if action == "ok":
            breaker.record_success(now)
        elif action == "fail":
            breaker.record_failure(now, now + timedelta(seconds=step + 1))
        elif action == "final":
            breaker.record_failure(now, None)
        else:
            wait = breaker.admit(now)
            assert wait is None or wait > now
            if wait is not None:
                assert wait <= now + timedelta(seconds=400)


# -- registry ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://Example.org/hook?code=1", "https://example.org:443"),
        ("http://example.org/a", "http://example.org:80"),
        ("http://127.0.0.1:8080/x", "http://127.0.0.1:8080"),
        ("HTTP://[::1]:9000/", "http://[::1]:9000"),
    ],
)
def test_endpoint_key(url: str, key: str) -> None:
    assert endpoint_key(url) == key


def test_registry_keeps_one_breaker_per_endpoint() -> None:
    registry = CircuitRegistry()
    a = endpoint_key("https://a.example/one")
    b = endpoint_key("https://b.example/two")
    for _ in range(10):
        registry.record_failure(a, T0, seconds(60))
    assert registry.admit(a, seconds(1)) == seconds(60)
    assert registry.admit(b, seconds(1)) is None
    assert registry.admit(endpoint_key("https://a.example/other?x=1"), seconds(1)) == seconds(60)
    assert registry.state(a, seconds(1)) == CircuitSnapshot(CircuitState.OPEN, 10, seconds(60))
    assert registry.state(b, seconds(1)) == CircuitSnapshot(CircuitState.CLOSED, 0)
    assert set(registry.snapshot(seconds(1))) == {a}


def test_registry_forgets_healthy_endpoints() -> None:
    registry = CircuitRegistry(failure_threshold=2)
    key = endpoint_key("https://a.example/")
    registry.record_failure(key, T0, seconds(5))
    registry.record_failure(key, T0, seconds(5))
    assert registry.record_success(key, seconds(6)) is True
    assert registry.snapshot(seconds(6)) == {}
    assert registry.record_success(key, seconds(7)) is False
