"""Drift monitor request bodies and window slicing: the pure parts of the monitor service."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlgrid.errors import InvalidField
from mlgrid.workspace.drift.windows import Frequency
from mlgrid.workspace.drift_monitor_bodies import MonitorSpec, parse_monitor_body, parse_range
from mlgrid.workspace.drift_monitors import Frames, _plain, prepare_target, run_id_for, window_rows

BASE = str(uuid.uuid4())
TARGET = str(uuid.uuid4())


def _body(**properties: Any) -> dict[str, Any]:
    return {"properties": {"baselineDatasetId": BASE, "targetDatasetId": TARGET, **properties}}


def test_defaults_fill_what_is_missing() -> None:
    assert parse_monitor_body(_body()) == MonitorSpec(BASE, TARGET)
    spec = parse_monitor_body(_body(features=["a", "b"], frequency="week", latency=Decimal("1.5"),
                                    threshold=Decimal("0.35"), scheduleEnabled=True))
    assert spec == MonitorSpec(BASE, TARGET, ["a", "b"], Frequency.WEEK, 1.5, 0.35, True)
    assert parse_monitor_body(_body(threshold=1, latency=0, features=None)).threshold == 1.0
    assert parse_monitor_body(_body()).false_alarm_rate is None  # SPEC §2.2: the threshold rule
    assert parse_monitor_body(_body(falseAlarmRate=None)).false_alarm_rate is None  # threshold rule
    assert parse_monitor_body(_body(falseAlarmRate=Decimal("0.01"))).false_alarm_rate == 0.01
    # What a GET answered can be sent back.
    assert parse_monitor_body({"id": BASE, "name": "m", "etag": "x", "type": "t",
                               **_body(createdTime="2024-01-01T00:00:00Z", scheduledUntil=None)})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({}, "properties"),
        ({"properties": {"targetDatasetId": TARGET}}, "properties.baselineDatasetId"),
        (_body(targetDatasetId=5), "properties.targetDatasetId"),
        (_body(features="a"), "properties.features"),
        (_body(features=["a", "a"]), "properties.features[1]"),
        (_body(features=["a", ""]), "properties.features[1]"),
        (_body(frequency="Daily"), "properties.frequency"),
        (_body(latency=True), "properties.latency"),
        (_body(latency=8761), "properties.latency"),
        (_body(threshold=-0.1), "properties.threshold"),
        (_body(falseAlarmRate=0.0005), "properties.falseAlarmRate"),
        (_body(falseAlarmRate=True), "properties.falseAlarmRate"),
        (_body(threshold=Decimal("1.0000001")), "properties.threshold"),
        (_body(scheduleEnabled=1), "properties.scheduleEnabled"),
        ({**_body(), "location": "x"}, "location"),
    ],
)
def test_a_bad_body_names_the_field(body: Any, field: str) -> None:
    with pytest.raises(InvalidField) as caught:
        parse_monitor_body(body)
    assert caught.value.field_name == field
    assert caught.value.status == 400


def test_a_range_is_the_complete_windows_inside_it() -> None:
    windows = parse_range({"start": "2024-01-01T02:00:00+02:00", "end": "2024-01-04"}, Frequency.DAY)
    assert [(s.day, e.day) for s, e in windows] == [(1, 2), (2, 3), (3, 4)]
    assert parse_range({"start": "2024-01-03", "end": "2024-01-10"}, Frequency.MONTH) == []
    assert len(parse_range({"start": "2024-01-01", "end": "2025-02-04"}, Frequency.DAY)) == 400
    with pytest.raises(InvalidField) as caught:
        parse_range({"start": "2024-01-01", "end": "2025-02-05"}, Frequency.DAY)
    assert caught.value.field_name == "end" and "401" in caught.value.message
    with pytest.raises(InvalidField) as caught:
        parse_range({"start": "0001-01-01", "end": "9999-01-01"}, Frequency.MONTH)
    assert caught.value.field_name == "end"
    with pytest.raises(InvalidField) as caught:
        parse_range({"start": "9999-12-01", "end": "9999-12-31T23:00:00"}, Frequency.MONTH)
    assert caught.value.field_name == "end"


def test_window_rows_are_a_time_ordered_slice() -> None:
    stamps = pd.to_datetime(
        ["2024-01-02T00:00:00Z", "2024-01-01T23:59:59Z", None, "2024-01-01T00:00:00Z",
         "2024-01-03T00:00:00Z"],
        utc=True,
    )
    frame = prepare_target(pd.DataFrame({"ts": stamps, "x": [3, 2, 9, 1, 4]}), "ts")
    assert list(frame["x"]) == [1, 2, 3, 4]
    frames = Frames(pd.DataFrame({"x": [0]}), frame, "ts")
    day = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))
    assert list(window_rows(frames, day)["x"]) == [1, 2]
    assert window_rows(frames, (datetime(2023, 1, 1, tzinfo=UTC), datetime(2023, 1, 2, tzinfo=UTC))).empty


def test_results_become_plain_json_values() -> None:
    assert _plain({"a": np.float64(0.5), "b": np.int64(3), "c": float("nan"), "d": np.bool_(True),
                   "e": [np.float32(1.5), None, "x"], 1: (1, 2)}) == {
        "a": 0.5, "b": 3, "c": None, "d": True, "e": [1.5, None, "x"], "1": [1, 2]
    }


def test_run_ids_name_the_monitor_and_the_window() -> None:
    run_id = run_id_for("sales-drift", datetime(2024, 1, 8, tzinfo=UTC))
    name, day, suffix = run_id.rsplit("_", 2)
    assert (name, day, len(suffix)) == ("sales-drift", "20240108", 8)
    assert run_id != run_id_for("sales-drift", datetime(2024, 1, 8, tzinfo=UTC))
