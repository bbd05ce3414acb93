"""Server-rendered SVG charts: the drift chart's points, threshold line and tooltips."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from mlgrid.ui.charts import HEIGHT, PAD_BOTTOM, PAD_TOP, DriftPoint, drift_chart, line_chart

DAY = datetime(2026, 3, 1, tzinfo=UTC)


def points(*coefficients: float | None) -> list[DriftPoint]:
    found = []
    for i, c in enumerate(coefficients):
        note = "fewer than 50 rows" if c is None else ""
        found.append(DriftPoint(DAY + timedelta(days=i), DAY + timedelta(days=i + 1), c, note))
    return found


def y_of(value: float) -> float:
    return HEIGHT - PAD_BOTTOM - value * (HEIGHT - PAD_TOP - PAD_BOTTOM)


def test_points_at_or_above_the_threshold_are_drawn_as_drift() -> None:
    svg = str(drift_chart(points(0.05, 0.2, 0.19, 0.7), threshold=0.2))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('class="point drifted"') == 2  # 0.2 (equal) and 0.7
    assert svg.count('class="point"') == 2
    assert 'data-coefficient="0.700000"' in svg
    assert "threshold 0.2" in svg


def test_the_threshold_line_sits_at_its_value_on_the_zero_to_one_axis() -> None:
    svg = str(drift_chart(points(0.1, 0.9), threshold=0.25))
    line = re.search(r'<line class="threshold" [^>]*y1="([0-9.]+)"', svg)
    assert line is not None
    assert abs(float(line.group(1)) - y_of(0.25)) < 0.1


def test_windows_without_a_coefficient_are_hollow_markers_with_the_reason() -> None:
    svg = str(drift_chart(points(0.1, None, 0.3), threshold=0.2))
    assert svg.count('class="point empty"') == 1
    assert "no coefficient: fewer than 50 rows" in svg
    # the series line joins only the measured windows
    series = re.search(r'<polyline class="series" points="([^"]+)"', svg)
    assert series is not None and len(series.group(1).split()) == 2


def test_labels_are_escaped_and_the_chart_is_labelled_for_screen_readers() -> None:
    hostile = [DriftPoint(DAY, DAY + timedelta(days=1), None, '<script>alert("x")</script>')]
    svg = str(drift_chart(hostile, threshold=0.2))
    assert "<script>" not in svg
    assert 'role="img"' in svg and "aria-label=" in svg


def test_empty_charts_render() -> None:
    assert 'class="threshold"' in str(drift_chart([], threshold=0.3))
    assert str(line_chart([], "nothing")).startswith("<svg")


def test_line_chart_draws_one_point_per_step() -> None:
    svg = str(line_chart([(1, 0.5), (2, 0.75), (3, 0.9)], "accuracy by step"))
    assert svg.count('<circle class="point"') == 3
    assert "step 2: 0.75" in svg


def test_the_runs_decision_marks_drift_when_the_monitor_is_calibrated() -> None:
    """A calibrated monitor can alarm below the threshold line (and not above it): the run's
    decision, not the line, says which points are drift."""
    decided = [DriftPoint(DAY, DAY + timedelta(days=1), 0.08, "", True),
               DriftPoint(DAY + timedelta(days=1), DAY + timedelta(days=2), 0.3, "", False)]
    svg = str(drift_chart(decided, threshold=0.2))
    assert svg.count('class="point drifted"') == 1
    assert re.search(r'class="point drifted"[^>]*data-coefficient="0.080000"', svg)
