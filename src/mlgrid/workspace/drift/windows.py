"""Calendar windows of a drift monitor: Day, Week (Monday–Sunday) and Month, all in UTC.

A window is the half-open interval ``[start, end)``. Windows are aligned to the calendar in
UTC (midnight, Monday midnight, the first of the month) rather than to the monitor's creation
time, so two monitors on the same dataset analyse the same windows and a backfill and the
scheduler never disagree about where a window begins.

Everything here is pure: the scheduler passes ``now`` in, which is what makes "restarts neither
skip nor repeat a window" testable without a clock.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta

from mlgrid.errors import invalid

Window = tuple[datetime, datetime]
"""``(start, end)`` of one window, both timezone-aware UTC, end exclusive."""


class Frequency(enum.StrEnum):
    """The length of a monitor's windows; the values are the API's spelling."""

    DAY = "Day"
    WEEK = "Week"
    MONTH = "Month"


def parse_frequency(value: Frequency | str) -> Frequency:
    """Accept ``Day``/``Week``/``Month`` in any letter case; raise ``InvalidField`` otherwise."""
    if isinstance(value, Frequency):
        return value
    for frequency in Frequency:
        if isinstance(value, str) and value.lower() == frequency.value.lower():
            return frequency
    raise invalid("frequency", f"must be one of Day, Week, Month (got {value!r})")


def _utc(moment: datetime, name: str) -> datetime:
    """Naive datetimes are refused: guessing their zone would move windows by hours."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise invalid(name, "must be a timezone-aware datetime (ISO 8601 with an offset)")
    return moment.astimezone(UTC)


def window_start(moment: datetime, frequency: Frequency | str) -> datetime:
    """Start of the window that contains ``moment`` (floor to the calendar, in UTC)."""
    frequency = parse_frequency(frequency)
    moment = _utc(moment, "moment")
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if frequency is Frequency.DAY:
        return midnight
    if frequency is Frequency.WEEK:
        return midnight - timedelta(days=midnight.weekday())
    return midnight.replace(day=1)


def next_window_start(start: datetime, frequency: Frequency | str) -> datetime:
    """Start of the window after the one beginning at ``start`` (``start`` must be aligned)."""
    frequency = parse_frequency(frequency)
    start = _utc(start, "start")
    if frequency is Frequency.DAY:
        return start + timedelta(days=1)
    if frequency is Frequency.WEEK:
        return start + timedelta(days=7)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def window_containing(moment: datetime, frequency: Frequency | str) -> Window:
    """The window ``[start, end)`` that ``moment`` falls into."""
    start = window_start(moment, frequency)
    return start, next_window_start(start, frequency)


def _first_start_at_or_after(moment: datetime, frequency: Frequency) -> datetime:
    start = window_start(moment, frequency)
    return start if start == moment else next_window_start(start, frequency)


def complete_windows(start: datetime, end: datetime, frequency: Frequency | str) -> list[Window]:
    """Every window lying entirely inside ``[start, end)``, in time order.

    A window that is only partly covered (the range starts mid-day, say) is left out: a backfill
    analyses whole windows only, so its results equal what the scheduler would have produced.
    """
    frequency = parse_frequency(frequency)
    start = _utc(start, "start")
    end = _utc(end, "end")
    windows: list[Window] = []
    current = _first_start_at_or_after(start, frequency)
    while True:
        following = next_window_start(current, frequency)
        if following > end:
            return windows
        windows.append((current, following))
        current = following


def due_windows(
    now: datetime,
    latency_hours: float,
    frequency: Frequency | str,
    since: datetime,
) -> list[Window]:
    """Windows the scheduler should analyse now: complete, with ``end + latency <= now``.

    ``since`` is where the scheduler's record ends: the end of the last window it analysed (or
    the moment the schedule was enabled). Passing that value back after a restart yields exactly
    the windows not yet analysed, none twice and none skipped. An unaligned ``since`` starts
    at the next window boundary, because the window it falls into began before the schedule did.
    """
    if latency_hours < 0:
        raise invalid("latency", "must be zero or more hours")
    cutoff = _utc(now, "now") - timedelta(hours=latency_hours)
    since = _utc(since, "since")
    if cutoff <= since:
        return []
    return complete_windows(since, cutoff, frequency)
