"""Drift computation for data-drift monitors: pure functions on pandas DataFrames.

* ``columns`` — which columns are analysed, and as numeric or categorical;
* ``windows`` — Day/Week/Month windows in UTC, complete and due windows;
* ``metrics`` — per-feature distances and summary statistics;
* ``classifier`` — the domain classifier behind the coefficient;
* ``compute`` — ``compute_drift`` (one window against the baseline) and ``drift_detected``.
"""

from mlgrid.workspace.drift.columns import ColumnKind, ColumnTyping, type_column, type_columns
from mlgrid.workspace.drift.compute import (
    DEFAULT_MAX_ROWS,
    DEFAULT_THRESHOLD,
    MIN_ROWS,
    DriftResult,
    compute_drift,
    drift_detected,
    select_features,
)
from mlgrid.workspace.drift.windows import (
    Frequency,
    Window,
    complete_windows,
    due_windows,
    next_window_start,
    parse_frequency,
    window_containing,
    window_start,
)

__all__ = [
    "DEFAULT_MAX_ROWS",
    "DEFAULT_THRESHOLD",
    "MIN_ROWS",
    "ColumnKind",
    "ColumnTyping",
    "DriftResult",
    "Frequency",
    "Window",
    "complete_windows",
    "compute_drift",
    "drift_detected",
    "due_windows",
    "next_window_start",
    "parse_frequency",
    "select_features",
    "type_column",
    "type_columns",
    "window_containing",
    "window_start",
]
