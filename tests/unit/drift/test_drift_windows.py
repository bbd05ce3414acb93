"""Drift monitor windows: Day/Week/Month in UTC, complete windows only, latency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mlgrid.errors import InvalidField
from mlgrid.workspace.drift.windows import (
    Frequency,
    complete_windows,
    due_windows,
    next_window_start,
    parse_frequency,
    window_containing,
    window_start,
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_day_windows_cover_the_range_and_leave_out_partial_days() -> None:
    windows = complete_windows(utc(2024, 3, 1, 6), utc(2024, 3, 4, 12), "Day")
    assert windows == [(utc(2024, 3, 2), utc(2024, 3, 3)), (utc(2024, 3, 3), utc(2024, 3, 4))]


def test_an_aligned_range_includes_its_first_and_last_window() -> None:
    windows = complete_windows(utc(2024, 3, 1), utc(2024, 3, 4), Frequency.DAY)
    assert [start.day for start, _ in windows] == [1, 2, 3]
    assert windows[-1][1] == utc(2024, 3, 4)


def test_weeks_run_monday_to_sunday() -> None:
    # 2024-01-03 is a Wednesday; the first complete week starts Monday 2024-01-08
    windows = complete_windows(utc(2024, 1, 3), utc(2024, 1, 28), "Week")
    assert windows == [(utc(2024, 1, 8), utc(2024, 1, 15)), (utc(2024, 1, 15), utc(2024, 1, 22))]
    assert all(start.weekday() == 0 for start, _ in windows)


def test_week_containing_a_sunday_started_the_monday_before() -> None:
    assert window_containing(utc(2024, 1, 7, 23, 59), "Week") == (utc(2024, 1, 1), utc(2024, 1, 8))


def test_months_have_their_calendar_lengths() -> None:
    windows = complete_windows(utc(2023, 11, 1), utc(2024, 5, 1), "Month")
    lengths = [(end - start).days for start, end in windows]
    assert [start.month for start, _ in windows] == [11, 12, 1, 2, 3, 4]
    assert lengths == [30, 31, 31, 29, 31, 30]  # 2024 is a leap year
    assert windows[1] == (utc(2023, 12, 1), utc(2024, 1, 1))


def test_month_range_ending_mid_month_drops_the_partial_month() -> None:
    assert complete_windows(utc(2024, 1, 15), utc(2024, 3, 31), "Month") == [
        (utc(2024, 2, 1), utc(2024, 3, 1))
    ]


def test_windows_are_aligned_to_utc_whatever_offset_the_input_has() -> None:
    plus_two = timezone(timedelta(hours=2))
    start = datetime(2024, 1, 2, 1, 0, tzinfo=plus_two)  # 2024-01-01T23:00Z
    end = datetime(2024, 1, 4, 1, 0, tzinfo=plus_two)  # 2024-01-03T23:00Z
    windows = complete_windows(start, end, "Day")
    assert windows == [(utc(2024, 1, 2), utc(2024, 1, 3))]
    assert all(s.utcoffset() == timedelta(0) for s, _ in windows)


def test_empty_or_reversed_range_has_no_windows() -> None:
    assert complete_windows(utc(2024, 1, 1, 1), utc(2024, 1, 1, 23), "Day") == []
    assert complete_windows(utc(2024, 1, 5), utc(2024, 1, 1), "Day") == []


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(InvalidField):
        complete_windows(datetime(2024, 1, 1), utc(2024, 1, 5), "Day")


@pytest.mark.parametrize("spelling", ["Day", "day", "DAY"])
def test_frequency_spellings(spelling: str) -> None:
    assert parse_frequency(spelling) is Frequency.DAY


def test_unknown_frequency_is_an_invalid_field() -> None:
    with pytest.raises(InvalidField) as caught:
        parse_frequency("Fortnight")
    assert caught.value.status == 400
    assert "frequency" in caught.value.message


def test_window_start_and_next_window_start() -> None:
    moment = utc(2024, 12, 18, 15, 30)
    assert window_start(moment, "Day") == utc(2024, 12, 18)
    assert window_start(moment, "Week") == utc(2024, 12, 16)
    assert window_start(moment, "Month") == utc(2024, 12, 1)
    assert next_window_start(utc(2024, 12, 1), "Month") == utc(2025, 1, 1)


def test_a_window_is_due_only_after_its_end_plus_latency() -> None:
    since = utc(2024, 1, 1)
    assert due_windows(utc(2024, 1, 3, 5, 59), 6, "Day", since) == [(utc(2024, 1, 1), utc(2024, 1, 2))]
    assert due_windows(utc(2024, 1, 3, 6), 6, "Day", since) == [
        (utc(2024, 1, 1), utc(2024, 1, 2)),
        (utc(2024, 1, 2), utc(2024, 1, 3)),
    ]


def test_zero_latency_makes_a_window_due_the_moment_it_ends() -> None:
    assert due_windows(utc(2024, 1, 2), 0, "Day", utc(2024, 1, 1)) == [(utc(2024, 1, 1), utc(2024, 1, 2))]
    assert due_windows(utc(2024, 1, 1, 23, 59), 0, "Day", utc(2024, 1, 1)) == []


def test_an_unaligned_since_starts_at_the_next_boundary() -> None:
    assert due_windows(utc(2024, 1, 20), 0, "Week", utc(2024, 1, 3)) == [(utc(2024, 1, 8), utc(2024, 1, 15))]


def test_negative_latency_is_refused() -> None:
    with pytest.raises(InvalidField):
        due_windows(utc(2024, 1, 5), -1, "Day", utc(2024, 1, 1))


@pytest.mark.parametrize("frequency", list(Frequency))
def test_ticking_scheduler_with_restarts_analyses_each_window_exactly_once(frequency: Frequency) -> None:
    """A scheduler that remembers only the end of its last window, ticking at odd times."""
    since = utc(2024, 1, 1)
    analysed: list[tuple[datetime, datetime]] = []
    now = since
    while now < utc(2024, 4, 1):
        now += timedelta(hours=7, minutes=13)
        for window in due_windows(now, 30, frequency, since):
            assert window[1] + timedelta(hours=30) <= now
            analysed.append(window)
            since = window[1]  # what a restart would read back from the stored runs
    expected = complete_windows(utc(2024, 1, 1), now - timedelta(hours=30), frequency)
    assert analysed == expected
