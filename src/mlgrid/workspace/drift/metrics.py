"""Per-feature drift metrics: what moved, in the feature's own terms.

The coefficient says *whether* the window differs from the baseline; these metrics say *how*,
one feature at a time, so a person can check the classifier's verdict against something they
can read:

* numeric features: the Wasserstein (earth mover's) distance, in the feature's unit — how far,
  on average, probability mass had to move — plus mean/min/max of each side and the share of
  nulls;
* categorical features: the Euclidean distance between the two relative-frequency vectors over
  the union of categories (a missing value counts as a category of its own, because a jump in
  missing values is drift too), plus distinct counts and how many target categories the
  baseline never had.

Every number is a plain ``float``/``int`` (``None`` where undefined, never NaN) so results can go
straight into JSON.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

MAX_METRIC_VALUES = 100_000
"""Distances use at most this many values per side (a uniform sample beyond that), so a
multi-million-row baseline does not make every window slow; means, minima and maxima always use
every row."""


class _Missing:
    """The one category every kind of null (None, NaN, NA, NaT) is counted as."""

    def __repr__(self) -> str:
        return "<null>"


MISSING = _Missing()


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def numeric_values(series: pd.Series) -> np.ndarray:
    """The column as float64, with nulls, unparseable values and infinities as NaN."""
    values = pd.to_numeric(series, errors="coerce")
    array = np.array(values.to_numpy(dtype="float64", na_value=np.nan), dtype=np.float64, copy=True)
    array[~np.isfinite(array)] = np.nan
    return array


def _bounded(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(values) <= MAX_METRIC_VALUES:
        return values
    return values[np.sort(rng.choice(len(values), MAX_METRIC_VALUES, replace=False))]


def pooled_order(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two samples' values sorted together, and 1 where a sorted value came from ``second``.

    One sort serves the Wasserstein distance here and the KS and Mann–Whitney tests in
    ``feature_tests`` (scipy's own functions sort each sample again, several times).
    """
    pooled = np.concatenate([first, second])
    order = np.argsort(pooled)
    return pooled[order], (order >= len(first)).astype(np.int64)


def wasserstein_sorted(
    ordered: np.ndarray, from_second: np.ndarray, first_rows: int, second_rows: int
) -> float:
    """The Wasserstein-1 distance, the area between the two empirical distribution functions,
    from ``pooled_order``'s output."""
    if len(ordered) < 2:
        return 0.0
    second_below = np.cumsum(from_second)[:-1]
    first_below = np.arange(1, len(ordered)) - second_below
    gaps = np.abs(first_below / first_rows - second_below / second_rows)
    return float(np.dot(gaps, np.diff(ordered)))


def wasserstein(first: np.ndarray, second: np.ndarray) -> float:
    """The Wasserstein-1 distance of two non-empty samples (as ``scipy.stats.wasserstein_distance``)."""
    ordered, from_second = pooled_order(first, second)
    return wasserstein_sorted(ordered, from_second, len(first), len(second))


def _summary(values: np.ndarray, prefix: str) -> dict[str, Any]:
    present = values[~np.isnan(values)]
    if len(present) == 0:
        return {f"{prefix}_mean": None, f"{prefix}_min": None, f"{prefix}_max": None}
    return {
        f"{prefix}_mean": _finite_or_none(present.mean()),
        f"{prefix}_min": _finite_or_none(present.min()),
        f"{prefix}_max": _finite_or_none(present.max()),
    }


def _null_share(size: int, nulls: int) -> float | None:
    return nulls / size if size else None


def numeric_metrics(baseline: pd.Series, target: pd.Series, seed: int = 0) -> dict[str, Any]:
    """Wasserstein distance and summary statistics of one numeric feature."""
    rng = np.random.default_rng(seed)
    base = numeric_values(baseline)
    tgt = numeric_values(target)
    base_present = base[~np.isnan(base)]
    tgt_present = tgt[~np.isnan(tgt)]
    distance: float | None = None
    if len(base_present) and len(tgt_present):
        distance = _finite_or_none(
            wasserstein(_bounded(base_present, rng), _bounded(tgt_present, rng))
        )
    return {
        "kind": "numeric",
        "wasserstein_distance": distance,
        **_summary(base, "baseline"),
        **_summary(tgt, "target"),
        "baseline_null_share": _null_share(len(base), len(base) - len(base_present)),
        "target_null_share": _null_share(len(tgt), len(tgt) - len(tgt_present)),
    }


def category_labels(series: pd.Series) -> pd.Series:
    """Values as hashable labels with every kind of null folded into the ``MISSING`` label."""
    labels = series.astype(object)
    return labels.where(series.notna(), MISSING)


def _frequencies(labels: pd.Series) -> dict[Any, float]:
    if len(labels) == 0:
        return {}
    counts = labels.value_counts(dropna=False)
    total = float(counts.sum())
    return {key: float(count) / total for key, count in counts.items()}


def categorical_metrics(baseline: pd.Series, target: pd.Series, seed: int = 0) -> dict[str, Any]:
    """Euclidean distance between category frequencies, and distinct counts, of one feature."""
    rng = np.random.default_rng(seed)
    base = category_labels(baseline)
    tgt = category_labels(target)
    if len(base) > MAX_METRIC_VALUES:
        base = base.iloc[np.sort(rng.choice(len(base), MAX_METRIC_VALUES, replace=False))]
    if len(tgt) > MAX_METRIC_VALUES:
        tgt = tgt.iloc[np.sort(rng.choice(len(tgt), MAX_METRIC_VALUES, replace=False))]
    base_freq = _frequencies(base)
    tgt_freq = _frequencies(tgt)
    distance: float | None = None
    if base_freq and tgt_freq:
        union = set(base_freq) | set(tgt_freq)
        distance = math.sqrt(sum((base_freq.get(c, 0.0) - tgt_freq.get(c, 0.0)) ** 2 for c in union))
    base_distinct = {c for c in base_freq if c is not MISSING}
    tgt_distinct = {c for c in tgt_freq if c is not MISSING}
    return {
        "kind": "categorical",
        "euclidean_distance": distance,
        "baseline_distinct": int(baseline.nunique(dropna=True)),
        "target_distinct": int(target.nunique(dropna=True)),
        "target_new_categories": len(tgt_distinct - base_distinct),
        "baseline_null_share": _null_share(len(baseline), int(baseline.isna().sum())),
        "target_null_share": _null_share(len(target), int(target.isna().sum())),
    }
