"""Dead-letter records and blob paths (SPEC §6.5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mlgrid.delivery.dead_letter_record import blob_path, build_record
from mlgrid.delivery.retry import DeadLetterReason

PUBLISHED = datetime(2024, 3, 7, 9, 5, 1, 250000, tzinfo=UTC)
LAST = datetime(2024, 3, 7, 9, 6, 2, tzinfo=UTC)

EG_EVENT = {
    "id": "e1",
    "topic": "/subscriptions/x/resourceGroups/default/providers/Microsoft.EventGrid/topics/t1",
    "subject": "models/m:1",
    "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
    "eventTime": "2024-03-07T09:05:00Z",
    "data": {"ModelName": "m", "ModelVersion": "1"},
    "dataVersion": "",
    "metadataVersion": "1",
}

CE_EVENT = {
    "specversion": "1.0",
    "id": "e1",
    "source": "/subscriptions/x/.../topics/t1",
    "type": "Microsoft.MachineLearningServices.ModelRegistered",
    "subject": "models/m:1",
    "time": "2024-03-07T09:05:00Z",
    "data": {"ModelName": "m"},
}


def test_event_grid_record() -> None:
    record = build_record(
        EG_EVENT,
        "EventGridSchema",
        DeadLetterReason.MAX_DELIVERY_ATTEMPTS_EXCEEDED,
        30,
        "NotFound",
        404,
        PUBLISHED,
        LAST,
    )
    assert {k: record[k] for k in EG_EVENT} == EG_EVENT
    assert record["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
    assert type(record["deadLetterReason"]) is str
    assert record["deliveryAttempts"] == 30
    assert record["lastDeliveryOutcome"] == "NotFound"
    assert record["lastHttpStatusCode"] == 404
    assert record["publishTime"] == "2024-03-07T09:05:01.250000Z"
    assert record["lastDeliveryAttemptTime"] == "2024-03-07T09:06:02.000000Z"


def test_cloud_events_record_uses_lower_case_names() -> None:
    record = build_record(
        CE_EVENT, "CloudEventSchemaV1_0", "TimeToLiveExceeded", 3, "TimedOut", None, PUBLISHED, LAST
    )
    for name in (
        "deadletterreason",
        "deliveryattempts",
        "lastdeliveryoutcome",
        "lasthttpstatuscode",
        "publishtime",
        "lastdeliveryattempttime",
    ):
        assert name in record
    assert "deadLetterReason" not in record
    assert record["deadletterreason"] == "TimeToLiveExceeded"
    assert record["lasthttpstatuscode"] is None
    assert record["specversion"] == "1.0"


def test_record_does_not_modify_the_event() -> None:
    event = dict(EG_EVENT)
    build_record(
        event, "EventGridSchema", "UndeliverableDueToClientError", 1, "BadRequest", 400, PUBLISHED, LAST
    )
    assert event == EG_EVENT


def test_never_attempted_has_null_attempt_time() -> None:
    record = build_record(
        EG_EVENT, "EventGridSchema", "SubscriptionDeleted", 0, "Probation", None, PUBLISHED, None
    )
    assert record["lastDeliveryAttemptTime"] is None
    assert record["deliveryAttempts"] == 0


def test_times_are_converted_to_utc() -> None:
    local = PUBLISHED.astimezone(timezone(timedelta(hours=-5)))
    record = build_record(EG_EVENT, "EventGridSchema", "TimeToLiveExceeded", 1, "Busy", 503, local, LAST)
    assert record["publishTime"] == "2024-03-07T09:05:01.250000Z"


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        build_record(EG_EVENT, "EventGridSchema", "x", 1, "Busy", 503, datetime(2024, 1, 1), None)


def test_blob_path_has_no_zero_padding() -> None:
    when = datetime(2024, 3, 7, 9, 59, tzinfo=UTC)
    assert blob_path("deadletters", "sub-one", when, "6a8c1d1e-1111-2222-3333-444455556666") == (
        "deadletters/SUB-ONE/2024/3/7/9/6a8c1d1e-1111-2222-3333-444455556666.json"
    )


def test_blob_path_two_digit_parts_and_utc() -> None:
    when = datetime(2024, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=2)))  # 21:00 UTC
    assert blob_path("dl", "S", when, "u") == "dl/S/2024/12/31/21/u.json"
    midnight = datetime(2025, 1, 1, 0, 30, tzinfo=UTC)
    assert blob_path("dl", "s", midnight, "u") == "dl/S/2025/1/1/0/u.json"
