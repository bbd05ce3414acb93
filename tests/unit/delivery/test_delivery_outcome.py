"""Outcome classification (SPEC §6.2) and Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mlgrid.delivery.outcome import (
    MAX_RETRY_AFTER,
    AttemptOutcome,
    ErrorKind,
    OutcomeName,
    classify_error,
    classify_response,
    parse_retry_after,
)

NOW = datetime(2024, 3, 7, 9, 30, 0, tzinfo=UTC)


@pytest.mark.parametrize("status", [200, 201, 202, 203, 204])
def test_success_is_200_to_204(status: int) -> None:
    outcome = classify_response(status)
    assert outcome.succeeded
    assert outcome.name == "Succeeded"
    assert outcome.http_status == status
    assert outcome.min_delay is None


@pytest.mark.parametrize("status", [100, 205, 206, 226, 299, 301, 302, 303, 307, 308, 500, 502, 504, 418])
def test_other_statuses_are_retryable_failures(status: int) -> None:
    outcome = classify_response(status)
    assert not outcome.succeeded
    assert outcome.retryable
    assert outcome.name == "GenericError"
    assert outcome.http_status == status
    assert outcome.min_delay is None


def test_redirect_is_a_failure_that_says_so() -> None:
    outcome = classify_response(302)
    assert not outcome.succeeded
    assert "redirect" in outcome.detail


@pytest.mark.parametrize(
    ("status", "name"),
    [(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (410, "Gone"), (413, "PayloadTooLarge")],
)
def test_client_errors_are_not_retried(status: int, name: str) -> None:
    outcome = classify_response(status)
    assert not outcome.succeeded
    assert not outcome.retryable
    assert outcome.name == name
    assert outcome.http_status == status


@pytest.mark.parametrize(
    ("status", "name", "minimum"),
    [
        (404, "NotFound", timedelta(minutes=5)),
        (408, "TimedOut", timedelta(minutes=2)),
        (503, "Busy", timedelta(seconds=30)),
    ],
)
def test_statuses_with_a_minimum_delay(status: int, name: str, minimum: timedelta) -> None:
    outcome = classify_response(status)
    assert outcome.retryable
    assert outcome.name == name
    assert outcome.min_delay == minimum
    assert outcome.retry_after is None


def test_429_is_busy_and_keeps_retry_after() -> None:
    outcome = classify_response(429, timedelta(seconds=42))
    assert outcome.name == "Busy"
    assert outcome.retryable
    assert outcome.retry_after == timedelta(seconds=42)
    assert outcome.min_delay is None


def test_retry_after_is_only_kept_for_429() -> None:
    assert classify_response(503, timedelta(seconds=42)).retry_after is None
    assert classify_response(500, timedelta(seconds=42)).retry_after is None


def test_429_without_retry_after_follows_the_schedule() -> None:
    outcome = classify_response(429)
    assert outcome.retry_after is None
    assert outcome.min_delay is None


@pytest.mark.parametrize(
    ("kind", "name", "retryable"),
    [
        (ErrorKind.TIMEOUT, "TimedOut", True),
        (ErrorKind.CONNECTION_REFUSED, "SocketError", True),
        (ErrorKind.CONNECTION_RESET, "SocketError", True),
        (ErrorKind.TLS, "SocketError", True),
        (ErrorKind.DNS, "ResolutionError", True),
        (ErrorKind.REDIRECT, "GenericError", True),
        (ErrorKind.OTHER, "GenericError", True),
        (ErrorKind.UNSAFE_ENDPOINT, "EndpointNotAllowed", False),
    ],
)
def test_errors_without_a_response(kind: ErrorKind, name: str, retryable: bool) -> None:
    outcome = classify_error(kind)
    assert not outcome.succeeded
    assert outcome.name == name
    assert outcome.retryable is retryable
    assert outcome.http_status is None
    assert outcome.min_delay is None
    assert outcome.retry_after is None


def test_classify_error_accepts_the_string_value_and_keeps_detail() -> None:
    outcome = classify_error("dns", "no such host hook.invalid")
    assert outcome.name == OutcomeName.RESOLUTION_ERROR
    assert outcome.detail == "no such host hook.invalid"
    with pytest.raises(ValueError):
        classify_error("martian")


def test_outcome_is_frozen() -> None:
    outcome = classify_response(200)
    assert isinstance(outcome, AttemptOutcome)
    with pytest.raises(AttributeError):
        outcome.retryable = True  # type: ignore[misc]


def test_outcome_names_are_plain_strings() -> None:
    assert classify_response(503).name == "Busy"
    assert f"{classify_response(404).name}" == "NotFound"


# -- Retry-After ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", timedelta(0)),
        ("120", timedelta(seconds=120)),
        (" 7 ", timedelta(seconds=7)),
        ("1.5", timedelta(seconds=1.5)),
    ],
)
def test_retry_after_delta_seconds(value: str, expected: timedelta) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_retry_after_http_date() -> None:
    assert parse_retry_after("Thu, 07 Mar 2024 09:32:00 GMT", NOW) == timedelta(minutes=2)


def test_retry_after_http_date_with_other_now_offset() -> None:
    now = NOW.astimezone(timezone(timedelta(hours=5)))
    assert parse_retry_after("Thu, 07 Mar 2024 09:31:00 GMT", now) == timedelta(minutes=1)


def test_retry_after_date_in_the_past_means_now() -> None:
    assert parse_retry_after("Wed, 06 Mar 2024 09:00:00 GMT", NOW) == timedelta(0)


@pytest.mark.parametrize("value", ["", "  ", "-5", "soon", "1e3", "+3", "Thu, 99 Foo 2024"])
def test_retry_after_garbage_is_ignored(value: str) -> None:
    assert parse_retry_after(value, NOW) is None


def test_retry_after_is_capped() -> None:
    assert parse_retry_after("999999999999999999999", NOW) == MAX_RETRY_AFTER
    assert parse_retry_after("Fri, 01 Jan 9999 00:00:00 GMT", NOW) == MAX_RETRY_AFTER


def test_retry_after_needs_an_aware_now() -> None:
    with pytest.raises(ValueError):
        parse_retry_after("5", datetime(2024, 1, 1))
