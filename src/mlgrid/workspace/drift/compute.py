"""One drift analysis: a target window against the baseline, as a value.

``compute_drift`` is the whole computation of a monitor run; the service around it loads the
frames, stores the ``DriftResult`` and emits DatasetDriftDetected when ``drift_detected`` says
so. Nothing here touches a database, a clock or the network, so every rule is unit-tested on
synthetic frames.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlgrid.workspace.drift.classifier import encode, separability
from mlgrid.workspace.drift.columns import ColumnKind, type_columns
from mlgrid.workspace.drift.metrics import categorical_metrics, numeric_metrics

MIN_ROWS = 50
"""Fewer rows than this in the window or in the baseline: no coefficient (the run says why)."""

DEFAULT_THRESHOLD = 0.2
DEFAULT_MAX_ROWS = 5000


@dataclass(frozen=True)
class DriftResult:
    """What one monitor run found.

    * ``coefficient`` — in [0, 1]: ``max(0, MCC)`` of a classifier separating baseline rows from
      window rows on held-out rows; ``None`` when it could not be computed, and then
      ``reason`` says why.
    * ``feature_contributions`` — each analysed feature's share of what the classifier used to
      separate the samples (sums to 1; empty without a coefficient).
    * ``feature_metrics`` — per analysed feature, distances and summary statistics (see
      ``metrics``); computed whenever both sides have rows, even without a coefficient.
    * ``row_counts`` — rows in the inputs, ``{"baseline": n, "target": m}``, before sampling.
    * ``rows_compared`` — rows per side the classifier actually saw (balanced sample).
    * ``skipped_features`` — requested or present columns that were not analysed, with why.
    """

    coefficient: float | None
    reason: str | None
    feature_contributions: dict[str, float] = field(default_factory=dict)
    feature_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    row_counts: dict[str, int] = field(default_factory=dict)
    skipped_features: dict[str, str] = field(default_factory=dict)
    rows_compared: int = 0


def drift_detected(coefficient: float | None, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """The monitor's decision: drift when the coefficient reaches the threshold (``>=``)."""
    return coefficient is not None and coefficient >= threshold


def select_features(
    baseline: pd.DataFrame,
    target_window: pd.DataFrame,
    features: list[str] | None,
    timestamp_column: str | None = None,
) -> tuple[dict[str, ColumnKind], dict[str, str]]:
    """Decide which features are analysed (with their kind) and why the others are not.

    Columns are typed on the baseline: the baseline is the fixed reference of a monitor, so
    every window is compared on the same features. ``features=None`` means every usable
    baseline column.
    """
    typing = type_columns(baseline, timestamp_column=timestamp_column)
    window_columns = Counter(str(name) for name in target_window.columns)
    requested = list(typing) if features is None else list(dict.fromkeys(features))
    kinds: dict[str, ColumnKind] = {}
    skipped: dict[str, str] = {}
    for name in requested:
        column = typing.get(name)
        if column is None:
            skipped[name] = "not a column of the baseline"
        elif column.skip_reason is not None:
            skipped[name] = column.skip_reason
        elif window_columns[name] == 0:
            skipped[name] = "not a column of the target window"
        elif window_columns[name] > 1:
            skipped[name] = "duplicate column name in the target window"
        else:
            kinds[name] = column.kind
    return kinds, skipped


def _metrics(
    baseline: pd.DataFrame, target: pd.DataFrame, kinds: dict[str, ColumnKind], seed: int
) -> dict[str, dict[str, Any]]:
    return {
        name: (
            categorical_metrics(baseline[name], target[name], seed)
            if kind is ColumnKind.CATEGORICAL
            else numeric_metrics(baseline[name], target[name], seed)
        )
        for name, kind in kinds.items()
    }


def _sample(frame: pd.DataFrame, size: int, rng: np.random.Generator) -> pd.DataFrame:
    """``size`` rows drawn uniformly without replacement, kept in their original order."""
    if len(frame) == size:
        return frame.reset_index(drop=True)
    rows = np.sort(rng.choice(len(frame), size=size, replace=False))
    return frame.iloc[rows].reset_index(drop=True)


def compute_drift(
    baseline: pd.DataFrame,
    target_window: pd.DataFrame,
    features: list[str] | None = None,
    seed: int = 0,
    max_rows: int = DEFAULT_MAX_ROWS,
    timestamp_column: str | None = None,
) -> DriftResult:
    """Analyse one target window against the baseline.

    Both sides are sampled to the same size, ``min(len(baseline), len(target_window),
    max_rows)`` rows each, so the coefficient is not driven by class imbalance and a window
    costs a bounded time however large the data. The same ``seed`` gives the same result.
    ``timestamp_column`` (the target dataset's) is never treated as a feature.
    """
    if max_rows < MIN_ROWS:
        raise ValueError(f"max_rows must be at least {MIN_ROWS}")
    row_counts = {"baseline": len(baseline), "target": len(target_window)}
    baseline = baseline.rename(columns=str)
    target_window = target_window.rename(columns=str)
    kinds, skipped = select_features(baseline, target_window, features, timestamp_column=timestamp_column)
    metrics = _metrics(baseline, target_window, kinds, seed) if len(baseline) and len(target_window) else {}

    def without(reason: str) -> DriftResult:
        return DriftResult(None, reason, {}, metrics, row_counts, skipped)

    if len(target_window) < MIN_ROWS:
        return without(f"the target window has {len(target_window)} rows; at least {MIN_ROWS} are needed")
    if len(baseline) < MIN_ROWS:
        return without(f"the baseline has {len(baseline)} rows; at least {MIN_ROWS} are needed")
    if not kinds:
        return without("no usable features (see skipped features)")

    rng = np.random.default_rng(seed)
    per_side = min(len(baseline), len(target_window), max_rows)
    sample = encode(_sample(baseline, per_side, rng), _sample(target_window, per_side, rng), kinds)
    found = separability(sample, seed)
    return DriftResult(
        coefficient=found.coefficient,
        reason=None,
        feature_contributions=found.importances,
        feature_metrics=metrics,
        row_counts=row_counts,
        skipped_features=skipped,
        rows_compared=per_side,
    )
