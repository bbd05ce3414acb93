"""A circuit breaker per endpoint, so an unhealthy endpoint is not hammered (SPEC §6.4).

After ``failure_threshold`` (10) consecutive failed attempts to one endpoint, new events for
it stop making their own doomed first attempt: they wait behind the next scheduled retry of
the deliveries that are already failing. When that time comes the circuit is *half-open*:
one attempt goes through as a probe; a success closes the circuit, a failure opens it again
until the next retry that failure scheduled. Nothing is ever dropped because of the circuit:
``admit`` only ever says "not before this time"; the retry policy (``retry.defer``) decides
whether the event's time to live allows that wait.

Which time new events wait for. The caller reports every failure with the retry it
scheduled (``next_retry_at``, ``None`` when the delivery was final). The breaker waits for the
latest of those reported since the circuit last closed. With an exponential schedule the
delivery that has been failing longest is the one deepest in the schedule, so its retry is
the latest one: this is "wait behind the retry of the oldest one" without the breaker having
to know delivery ids. A failure that scheduled no retry leaves nothing to wait behind, so
the next attempt is simply the probe.

Retries already scheduled are not gated: they *are* the probes. The dispatcher calls
``admit`` before a first attempt only. While a probe is in flight other first attempts wait
``probe_timeout`` (the 30 s request timeout); ``record_success`` returns ``True`` when it
closed an open circuit, which tells the dispatcher to release what it held back.

Everything is pure state: methods take ``now``; no clock, no IO, no locks (the dispatcher
runs on one event loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_PROBE_TIMEOUT",
    "CircuitBreaker",
    "CircuitRegistry",
    "CircuitSnapshot",
    "CircuitState",
    "endpoint_key",
]

DEFAULT_FAILURE_THRESHOLD = 10
DEFAULT_PROBE_TIMEOUT = timedelta(seconds=30)

_DEFAULT_PORTS = {"http": 80, "https": 443}


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(frozen=True)
class CircuitSnapshot:
    """What the UI shows for an endpoint: its state, the failure streak, the wait."""

    state: CircuitState
    consecutive_failures: int
    open_until: datetime | None = None


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


class CircuitBreaker:
    """The health of one endpoint, driven by reported outcomes."""

    def __init__(
        self,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        probe_timeout: timedelta = DEFAULT_PROBE_TIMEOUT,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.probe_timeout = probe_timeout
        self.consecutive_failures = 0
        self._wait_until: datetime | None = None
        self._probe_started_at: datetime | None = None

    @property
    def is_tripped(self) -> bool:
        """True once the failure streak reached the threshold (open or half-open)."""
        return self.consecutive_failures >= self.failure_threshold

    def state(self, now: datetime) -> CircuitState:
        _require_aware("now", now)
        if not self.is_tripped:
            return CircuitState.CLOSED
        if self._wait_until is not None and now < self._wait_until:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    def snapshot(self, now: datetime) -> CircuitSnapshot:
        state = self.state(now)
        open_until = self._wait_until if state is CircuitState.OPEN else None
        return CircuitSnapshot(state, self.consecutive_failures, open_until)

    def admit(self, now: datetime) -> datetime | None:
        """May a new event make its first attempt now?

        ``None``: go ahead. A datetime: hold the event back until then (and ask again).
        In the half-open state the first caller gets ``None`` and its attempt is the probe.
        """
        state = self.state(now)
        if state is CircuitState.CLOSED:
            return None
        if state is CircuitState.OPEN and self._wait_until is not None:
            return self._wait_until
        if self._probe_started_at is not None:
            probe_deadline = self._probe_started_at + self.probe_timeout
            if now < probe_deadline:
                return probe_deadline
        # No probe in flight (or the last one never reported back): this attempt is the probe.
        self._probe_started_at = now
        return None

    def record_success(self, now: datetime) -> bool:
        """An attempt to the endpoint succeeded. Returns True if that closed a tripped circuit."""
        _require_aware("now", now)
        was_tripped = self.is_tripped
        self.consecutive_failures = 0
        self._wait_until = None
        self._probe_started_at = None
        return was_tripped

    def record_failure(self, now: datetime, next_retry_at: datetime | None) -> None:
        """An attempt to the endpoint failed; ``next_retry_at`` is the retry it scheduled.

        Any failure answers an outstanding probe: the endpoint is still unhealthy.
        """
        _require_aware("now", now)
        if next_retry_at is not None:
            _require_aware("next_retry_at", next_retry_at)
        self.consecutive_failures += 1
        self._probe_started_at = None
        if self._wait_until is not None and self._wait_until <= now:
            # The previous wait is over; the reported retries before it have happened.
            self._wait_until = None
        # The latest retry still ahead, also while the streak is below the threshold, so
        # that the circuit opens behind the deliveries that tripped it.
        if next_retry_at is not None and (self._wait_until is None or next_retry_at > self._wait_until):
            self._wait_until = next_retry_at


def endpoint_key(url: str) -> str:
    """The key one circuit covers: scheme, host and port of ``url`` (``https://host:443``).

    Two subscriptions posting to the same server share its health; the path and the query
    string (often a per-subscription secret) do not matter.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = _DEFAULT_PORTS.get(scheme, 0)
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


class CircuitRegistry:
    """The circuit breakers of all endpoints, by ``endpoint_key``.

    Healthy endpoints (closed, no failures) hold no entry, so the registry only grows with
    the endpoints that are failing right now.
    """

    def __init__(
        self,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        probe_timeout: timedelta = DEFAULT_PROBE_TIMEOUT,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.probe_timeout = probe_timeout
        self._breakers: dict[str, CircuitBreaker] = {}

    def _breaker(self, key: str) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = CircuitBreaker(self.failure_threshold, self.probe_timeout)
            self._breakers[key] = breaker
        return breaker

    def admit(self, key: str, now: datetime) -> datetime | None:
        breaker = self._breakers.get(key)
        return None if breaker is None else breaker.admit(now)

    def record_success(self, key: str, now: datetime) -> bool:
        breaker = self._breakers.pop(key, None)
        return False if breaker is None else breaker.record_success(now)

    def record_failure(self, key: str, now: datetime, next_retry_at: datetime | None) -> None:
        self._breaker(key).record_failure(now, next_retry_at)

    def state(self, key: str, now: datetime) -> CircuitSnapshot:
        breaker = self._breakers.get(key)
        if breaker is None:
            _require_aware("now", now)
            return CircuitSnapshot(CircuitState.CLOSED, 0)
        return breaker.snapshot(now)

    def snapshot(self, now: datetime) -> dict[str, CircuitSnapshot]:
        """Every endpoint with a failure streak, for the delivery-health page."""
        return {key: breaker.snapshot(now) for key, breaker in self._breakers.items()}
