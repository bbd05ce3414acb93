"""Drift computation for data-drift monitors: pure functions on pandas DataFrames.

* ``columns`` — which columns are analysed, and as numeric or categorical;
* ``windows`` — Day/Week/Month windows in UTC, complete and due windows;
* ``metrics`` — per-feature distances and summary statistics;
* ``classifier`` — the domain classifier behind the coefficient;
* ``compute`` — ``compute_drift`` (one window against the baseline) and ``drift_detected``.

Only ``windows`` is imported eagerly: it needs nothing but ``datetime``, so the scheduler can
use it without the server paying for pandas and scikit-learn at start-up. The other names load
their module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
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

_LAZY = {
    "ColumnKind": "columns",
    "ColumnTyping": "columns",
    "type_column": "columns",
    "type_columns": "columns",
    "DEFAULT_MAX_ROWS": "compute",
    "DEFAULT_THRESHOLD": "compute",
    "MIN_ROWS": "compute",
    "DriftResult": "compute",
    "compute_drift": "compute",
    "drift_detected": "compute",
    "select_features": "compute",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


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
