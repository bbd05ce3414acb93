"""One drift analysis: a target window against the baseline, as a value.

``compute_drift`` is the whole computation of a monitor run; the service around it loads the
frames, stores the ``DriftResult`` and emits DatasetDriftDetected when ``drift_detected`` says
so. Nothing here touches a database, a clock or the network, so every rule is unit-tested on
synthetic frames.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlgrid.workspace.drift.cache import NullCache
from mlgrid.workspace.drift.calibration import (
    DEFAULT_FALSE_ALARM_RATE,
    NullDistribution,
    draws_for,
    null_rows,
    simulate_null,
    window_statistic,
)
from mlgrid.workspace.drift.columns import ColumnKind, type_columns
from mlgrid.workspace.drift.feature_tests import FeatureTest
from mlgrid.workspace.drift.metrics import categorical_metrics, numeric_metrics

MIN_ROWS = 50
"""Fewer rows than this in the window or in the baseline: no coefficient (the run says why)."""

DEFAULT_THRESHOLD = 0.2
DEFAULT_MAX_ROWS = 50_000
"""Rows per side the classifier and the tests use at most (a uniform sample beyond): every row
of ordinary windows and baselines, a bounded cost for a multi-million-row one."""

MAX_DRIFTED_FEATURES = 10
"""Features listed in the event's ``DriftedFeatures`` at most (the run keeps every feature)."""

NO_SINGLE_FEATURE = "no single feature explains this window"


@dataclass(frozen=True)
class DriftResult:
    """What one monitor run found.

    * ``coefficient`` — in [0, 1]: the Azure-style ``max(0, MCC)`` of the classifier's held-out
      predictions, both classes weighted equally; ``None`` when nothing could be computed, and
      then ``reason`` says why.
    * ``auroc`` — the classifier's cross-fitted held-out AUROC (0.5: no separation).
    * ``p_value`` — the calibrated p-value of the window (``calibration``); ``None`` when the
      monitor decides by ``threshold`` only (``false_alarm_rate`` None) or without a result.
    * ``feature_tests`` — every analysed feature's test, ranked by evidence (most first), as
      JSON-ready dicts (see ``feature_tests.FeatureTest.as_json``).
    * ``explanation`` — one sentence: which feature moved most, or ``NO_SINGLE_FEATURE`` when
      the window is separable but no feature's own test is significant.
    * ``feature_contributions`` — each analysed feature's share of what the classifier used to
      separate the samples (sums to 1; empty without a coefficient).
    * ``feature_metrics`` — per analysed feature, distances and summary statistics (see
      ``metrics``); computed whenever both sides have rows, even without a coefficient.
    * ``row_counts`` — rows in the inputs, ``{"baseline": n, "target": m}``, before sampling.
    * ``rows_compared`` — window rows the classifier saw (every row up to ``max_rows``; with a
      ``false_alarm_rate`` and a baseline under twice the window, the null's window size).
    * ``null_rows`` / ``null_draws`` — the size and number of the baseline windows the p-value
      was calibrated with.
    * ``skipped_features`` — requested or present columns that were not analysed, with why.
    """

    coefficient: float | None
    reason: str | None
    feature_contributions: dict[str, float] = field(default_factory=dict)
    feature_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    row_counts: dict[str, int] = field(default_factory=dict)
    skipped_features: dict[str, str] = field(default_factory=dict)
    rows_compared: int = 0
    auroc: float | None = None
    p_value: float | None = None
    classifier_p_value: float | None = None
    feature_tests: list[dict[str, Any]] = field(default_factory=list)
    explanation: str | None = None
    false_alarm_rate: float | None = None
    null_rows: int = 0
    null_draws: int = 0

    @property
    def drifted_features(self) -> list[dict[str, Any]]:
        """The features whose own test is significant, most evidence first (the event's list)."""
        return [t for t in self.feature_tests if t.get("drifted")][:MAX_DRIFTED_FEATURES]


def drift_detected(coefficient: float | None, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """The ``threshold`` rule: drift when the coefficient reaches the threshold (``>=``)."""
    return coefficient is not None and coefficient >= threshold


def decide(
    coefficient: float | None,
    p_value: float | None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    false_alarm_rate: float | None = DEFAULT_FALSE_ALARM_RATE,
) -> bool:
    """The monitor's decision.

    With a ``false_alarm_rate`` (the default), drift when the calibrated p-value is at most
    that rate: no-drift windows then alarm at that rate. Without one (``None``), the Azure-style
    rule: drift when the coefficient reaches ``threshold``.
    """
    if false_alarm_rate is None:
        return drift_detected(coefficient, threshold)
    return p_value is not None and p_value <= false_alarm_rate


def explain(tests: list[FeatureTest], auroc: float, alarmed: bool) -> str:
    """One sentence for people: what moved, or that no single feature did."""
    drifted = [t for t in tests if t.drifted]
    if drifted:
        top = drifted[0]
        others = f" (and {len(drifted) - 1} more)" if len(drifted) > 1 else ""
        return (
            f"{top.feature} moved most: {top.test} p={top.adjusted_p_value:.3g} after correction, "
            f"effect {top.effect_size:.3g} {top.effect_measure}{others}"
        )
    if alarmed:
        return f"{NO_SINGLE_FEATURE}: the classifier separates it from the baseline (AUROC {auroc:.3f})"
    return "no feature moved significantly"


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
    *,
    false_alarm_rate: float | None = None,
    nulls: NullCache[NullDistribution] | None = None,
    baseline_key: Hashable | None = None,
) -> DriftResult:
    """Analyse one target window against the baseline.

    Every row of both sides is used (a uniform sample of ``max_rows`` beyond that). With a
    ``false_alarm_rate`` (monitors default to 0.05; here the default is none, as computing a
    null costs ``calibration.draws_for(rate)`` analyses) the window gets a calibrated
    p-value from a null of baseline windows of its size (``calibration``), taken from
    ``nulls`` under ``baseline_key`` when given (a monitor's cache) and computed otherwise.
    The same ``seed`` gives the same result. ``timestamp_column`` (the target dataset's) is
    never treated as a feature.
    """
    if max_rows < MIN_ROWS:
        raise ValueError(f"max_rows must be at least {MIN_ROWS}")
    row_counts = {"baseline": len(baseline), "target": len(target_window)}
    baseline = baseline.rename(columns=str)
    target_window = target_window.rename(columns=str)
    kinds, skipped = select_features(baseline, target_window, features, timestamp_column=timestamp_column)
    metrics = _metrics(baseline, target_window, kinds, seed) if len(baseline) and len(target_window) else {}

    def without(reason: str) -> DriftResult:
        return DriftResult(None, reason, {}, metrics, row_counts, skipped, false_alarm_rate=false_alarm_rate)

    if len(target_window) < MIN_ROWS:
        return without(f"the target window has {len(target_window)} rows; at least {MIN_ROWS} are needed")
    if len(baseline) < MIN_ROWS:
        return without(f"the baseline has {len(baseline)} rows; at least {MIN_ROWS} are needed")
    if not kinds:
        return without("no usable features (see skipped features)")

    rng = np.random.default_rng(seed)
    reference = _sample(baseline, min(len(baseline), max_rows), rng)
    window = _sample(target_window, min(len(target_window), max_rows), rng)
    rate = DEFAULT_FALSE_ALARM_RATE if false_alarm_rate is None else false_alarm_rate
    p_value: float | None = None
    size = draws = 0
    if false_alarm_rate is None:
        found = window_statistic(reference, window, kinds, seed, rate)
    else:
        size, draws = null_rows(len(window), len(reference)), draws_for(false_alarm_rate)
        # Compared exactly as a null window is (calibration, "a small baseline"): with the
        # baseline less ``size`` rows, and at ``size`` rows when the baseline was too small
        # for a null of the window's own size.
        matched = np.random.default_rng([seed, 0x6D61746368])
        compared = _sample(reference, len(reference) - size, matched)
        if size < min(len(window), null_rows(len(window), len(window) * 4)):
            window = _sample(window, size, matched)
        found = window_statistic(compared, window, kinds, seed, rate)

        def build() -> NullDistribution:
            return simulate_null(reference, kinds, size, draws, seed, false_alarm_rate)

        key = (baseline_key, tuple(kinds.items()), len(reference), size, draws, seed, max_rows)
        null = build() if nulls is None or baseline_key is None else nulls.get(key, build)
        p_value = null.p_value(found.separation.z, found.feature_evidence)
    alarmed = decide(found.separation.coefficient, p_value, false_alarm_rate=false_alarm_rate, threshold=0.0)
    return DriftResult(
        coefficient=found.separation.coefficient,
        reason=None,
        feature_contributions=found.separation.importances,
        feature_metrics=metrics,
        row_counts=row_counts,
        skipped_features=skipped,
        rows_compared=len(window),
        auroc=found.separation.auroc,
        p_value=p_value,
        classifier_p_value=found.separation.p_value,
        feature_tests=[t.as_json() for t in found.tests],
        explanation=explain(found.tests, found.separation.auroc, alarmed and false_alarm_rate is not None),
        false_alarm_rate=false_alarm_rate,
        null_rows=size,
        null_draws=draws,
    )
