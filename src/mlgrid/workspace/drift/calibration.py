"""The calibrated decision: a Monte Carlo test against windows drawn from the baseline itself.

One number sums up a window's evidence of drift (``WindowStatistic.evidence``): the larger of

* the domain classifier's evidence, ``-log10`` of its AUROC p-value (``classifier``), and
* the per-feature tests' evidence, ``-log10`` of the smallest Bonferroni-adjusted p-value
  (``feature_tests``).

Neither is a calibrated p-value on its own (cross-fitted folds share training rows, and the
maximum of two dependent tests has no closed form), so the decision calibrates the *combined*
number empirically, as a Monte Carlo test: ``B`` windows of the same size are drawn from the
baseline itself (without replacement; the rest of the baseline is their reference), each is
scored exactly like a real window, and the window's p-value is

    p = (1 + #{null windows with evidence >= the window's}) / (B + 1).

If the window comes from the baseline's distribution, its evidence is exchangeable with the B
null draws, its rank among the B + 1 values is uniform, and ``p <= falseAlarmRate`` happens
with probability ``floor(falseAlarmRate * (B + 1)) / (B + 1)``: at most the setting, exactly
it when ``falseAlarmRate * (B + 1)`` is a whole number (``draws_for`` picks such a B: 79 at
5 %). That is the false-alarm guarantee, at every window size, with no distributional
assumption on the data.

The null depends on the baseline, the analysed features, the window size and the seed only, so
it is computed once per (monitor, window size) and reused by every window of that size. Window
sizes are rounded to a grid of nice numbers (``null_rows``: 100, 120, 150, 200, 250, 300, 400,
500, 600, 800, 1,000, ...) so a daily monitor whose windows hold 950 to 1,050 rows pays for
one null, not a hundred. Where it is kept: ``cache.NullCache``, in the memory of the process, because
the computation is deterministic (same inputs and seed, same null): a restarted server or a
second node recomputes exactly what it lost, the store needs no table and no invalidation
(registered datasets never change; a monitor whose features change gets a new key).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlgrid.workspace.drift.classifier import Separability, encode, separability
from mlgrid.workspace.drift.columns import ColumnKind
from mlgrid.workspace.drift.feature_tests import FeatureTest, family_evidence, rank_features

DEFAULT_FALSE_ALARM_RATE = 0.05
MIN_FALSE_ALARM_RATE = 0.001
MAX_FALSE_ALARM_RATE = 0.5
MAX_DRAWS = 999
NULL_QUANTUM = 4
"""The Monte Carlo test's k: the window must beat all but ``k - 1`` of the null draws. With
k = 4 instead of 1 the test loses little power to the finite number of draws."""

_NICE = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
MIN_NULL_ROWS = 20


def draws_for(false_alarm_rate: float) -> int:
    """Null draws B for a rate: ``k / (B + 1)`` equals the rate for ``k = NULL_QUANTUM``."""
    return max(1, min(MAX_DRAWS, round(NULL_QUANTUM / false_alarm_rate) - 1))


def null_rows(window_rows: int, baseline_rows: int) -> int:
    """The window size a null is computed at: the nearest nice number (log scale), at most
    half the baseline (the other half is the null windows' reference)."""
    if window_rows <= 0:
        return 0
    exponent = math.floor(math.log10(window_rows))
    candidates = [m * 10.0**e for e in (exponent - 1, exponent, exponent + 1) for m in _NICE]
    nearest = min(candidates, key=lambda c: abs(math.log(c) - math.log(window_rows)))
    return int(max(1, min(round(nearest), baseline_rows // 2)))


@dataclass(frozen=True)
class WindowStatistic:
    """Everything one window's analysis measures, and the evidence the decision calibrates."""

    separation: Separability
    tests: list[FeatureTest]
    evidence: float


def window_statistic(
    baseline: pd.DataFrame,
    window: pd.DataFrame,
    kinds: dict[str, ColumnKind],
    seed: int,
    false_alarm_rate: float,
    *,
    importances: bool = True,
) -> WindowStatistic:
    """Classifier and per-feature tests of one window against a reference, combined."""
    separation = separability(encode(baseline, window, kinds), seed, importances=importances)
    tests = rank_features(baseline, window, kinds, false_alarm_rate)
    return WindowStatistic(separation, tests, max(separation.evidence, family_evidence(tests)))


@dataclass(frozen=True)
class NullDistribution:
    """Evidence of ``draws`` no-drift windows of ``window_rows`` rows drawn from the baseline."""

    window_rows: int
    reference_rows: int
    evidence: tuple[float, ...]

    @property
    def draws(self) -> int:
        return len(self.evidence)

    def p_value(self, evidence: float) -> float:
        """The Monte Carlo p-value of a window's evidence (ties count against the window)."""
        at_least = sum(1 for value in self.evidence if value >= evidence)
        return (1 + at_least) / (self.draws + 1)


def simulate_null(
    baseline: pd.DataFrame,
    kinds: dict[str, ColumnKind],
    window_rows: int,
    draws: int,
    seed: int,
    false_alarm_rate: float,
) -> NullDistribution:
    """Score ``draws`` windows drawn from the baseline against the rest of the baseline."""
    rng = np.random.default_rng([seed, window_rows, 0x6E756C6C])
    values: list[float] = []
    for draw in range(draws):
        order = rng.permutation(len(baseline))
        window = baseline.iloc[np.sort(order[:window_rows])].reset_index(drop=True)
        reference = baseline.iloc[np.sort(order[window_rows:])].reset_index(drop=True)
        found = window_statistic(
            reference, window, kinds, seed + draw + 1, false_alarm_rate, importances=False
        )
        values.append(found.evidence)
    return NullDistribution(window_rows, len(baseline) - window_rows, tuple(values))
