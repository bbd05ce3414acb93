"""The calibrated decision: a Monte Carlo test against windows drawn from the baseline itself.

A window's evidence of drift has two parts:

* the domain classifier's standard score ``z`` of its cross-fitted held-out AUROC
  (``classifier``): it sees multivariate shifts no single feature shows;
* the per-feature tests' evidence, ``-log10`` of the smallest Bonferroni-adjusted p-value over
  the features (``feature_tests.family_evidence``): it sees one feature's move in the smallest
  windows.

They are combined into one number on a common scale (``combined``): the classifier's ``z`` is
first **standardised by the null itself** — centred on the median and divided by the
interquartile range / 1.349 of the ``z`` of the B + 1 windows (the null draws and the window) —
turned into ``-log10`` of its normal tail, and the larger of that and the feature evidence is
the window's evidence. Why standardise: the folds' models share training rows, so under no drift
``z`` spreads wider than a standard normal (measured: 1.1-1.4) and, taken at face value, it
would fill the null's upper tail and drown the feature tests' evidence; standardised, each part
competes on its own null scale. The centre and scale are symmetric functions of all B + 1
windows, so the exchangeability argument below is untouched.

Neither part is a calibrated p-value on its own, and the maximum of two dependent tests has no
closed form, so the decision calibrates the *combined* number empirically, as a Monte Carlo
test: ``B`` windows of the same size are drawn from the baseline itself (without replacement;
the rest of the baseline is their reference), each is scored exactly like a real window, and
the window's p-value is

    p = (1 + #{null windows with evidence >= the window's}) / (B + 1).

If the window comes from the baseline's distribution, its pair ``(z, feature evidence)`` is
exchangeable with the B null pairs, its rank among the B + 1 combined values is uniform, and
``p <= falseAlarmRate`` happens with probability ``floor(falseAlarmRate * (B + 1)) / (B + 1)``:
at most the setting, exactly it when ``falseAlarmRate * (B + 1)`` is a whole number
(``draws_for`` picks such a B: 79 at 5 %). That is the false-alarm guarantee, at every window
size, with no distributional assumption on the data.

**The same comparison as the null (a small baseline).** A null window of ``w`` rows is
compared with the other ``n - w`` rows of an ``n``-row baseline, so the real window is compared
with ``n - w`` baseline rows too (a seeded uniform sample: ``compute.compute_drift``), and when
the baseline is smaller than twice the window (the null is computed at half the baseline) the
window is analysed at that size too: the window and the null draws are then the same
computation on the same sizes, and exchangeability holds however small the baseline is. With
a baseline many times the window this costs nothing visible (100 of 5,000 reference rows); with
a small one it costs rows, which is the price of a false-alarm rate that holds.

The null depends on the baseline, the analysed features, the window size and the seed only, so
it is computed once per (monitor, window size) and reused by every window of that size. Window
sizes are rounded to a grid of nice numbers (``null_rows``: 100, 120, 150, 200, 250, 300, 400,
500, 600, 800, 1,000, ...) so a daily monitor whose windows hold 950 to 1,050 rows pays for
one null, not a hundred (the one approximation left: a window between grid points is judged
against the nearest grid size; the tests' p-values and ``z`` are standardised by size, so this
moves little). Where it is kept: ``cache.NullCache``, in the memory of the process, because
the computation is deterministic (same inputs and seed, same null): a restarted server or a
second node recomputes exactly what it lost, the store needs no table and no invalidation
(registered datasets never change; a monitor whose features change gets a new key).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

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
    """Everything one window's analysis measures: the classifier, the per-feature tests and
    the tests' combined evidence (``feature_evidence``)."""

    separation: Separability
    tests: list[FeatureTest]
    feature_evidence: float


def window_statistic(
    baseline: pd.DataFrame,
    window: pd.DataFrame,
    kinds: dict[str, ColumnKind],
    seed: int,
    false_alarm_rate: float,
    *,
    importances: bool = True,
) -> WindowStatistic:
    """Classifier and per-feature tests of one window against a reference."""
    separation = separability(encode(baseline, window, kinds), seed, importances=importances)
    tests = rank_features(baseline, window, kinds, false_alarm_rate)
    return WindowStatistic(separation, tests, family_evidence(tests))


_IQR_TO_SD = 1.349
"""The interquartile range of a normal distribution in standard deviations."""


def _z_evidence(z: float) -> float:
    """``-log10`` of the upper normal tail of ``z``, without underflow."""
    return max(0.0, -float(norm.logsf(z)) / math.log(10.0))


def standardiser(z_values: tuple[float, ...] | list[float]) -> tuple[float, float]:
    """``(centre, scale)`` of the ``z`` of all B + 1 windows being ranked: the median and the
    interquartile range / 1.349 (robust: one strongly drifted window barely moves them)."""
    values = np.asarray(z_values, dtype=np.float64)
    low, centre, high = np.quantile(values, [0.25, 0.5, 0.75])
    scale = float(high - low) / _IQR_TO_SD
    return float(centre), scale if math.isfinite(scale) and scale > 1e-9 else 1.0


def combined(z: float, feature_evidence: float, centre: float, scale: float) -> float:
    """One window's evidence: the larger of its standardised classifier evidence and its
    feature evidence."""
    return max(_z_evidence((z - centre) / scale), feature_evidence)


@dataclass(frozen=True)
class NullDistribution:
    """``draws`` no-drift windows of ``window_rows`` rows drawn from the baseline, each compared
    with ``reference_rows`` other baseline rows: their classifier ``z`` and feature evidence."""

    window_rows: int
    reference_rows: int
    z: tuple[float, ...]
    feature_evidence: tuple[float, ...]

    @property
    def draws(self) -> int:
        return len(self.z)

    def p_value(self, z: float, feature_evidence: float) -> float:
        """The Monte Carlo p-value of a window (ties count against the window)."""
        centre, scale = standardiser((*self.z, z))
        own = combined(z, feature_evidence, centre, scale)
        at_least = sum(
            1
            for other_z, other_features in zip(self.z, self.feature_evidence, strict=True)
            if combined(other_z, other_features, centre, scale) >= own
        )
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
    z_values: list[float] = []
    feature_values: list[float] = []
    for draw in range(draws):
        order = rng.permutation(len(baseline))
        window = baseline.iloc[np.sort(order[:window_rows])].reset_index(drop=True)
        reference = baseline.iloc[np.sort(order[window_rows:])].reset_index(drop=True)
        found = window_statistic(
            reference, window, kinds, seed + draw + 1, false_alarm_rate, importances=False
        )
        z_values.append(found.separation.z)
        feature_values.append(found.feature_evidence)
    return NullDistribution(window_rows, len(baseline) - window_rows, tuple(z_values), tuple(feature_values))
