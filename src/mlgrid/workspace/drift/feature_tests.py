"""Per-feature two-sample tests: which feature moved, with a p-value and an effect size each.

One test per analysed column, chosen by its kind, each valid at any window size:

* **numeric** — three tests of the non-null values, each aimed at one way a column moves:
  the two-sample Kolmogorov–Smirnov test (any change of shape), the Mann–Whitney U test (a
  change of location: about 1.5 times as efficient as KS for a shift, so a shift shows in
  smaller windows) and the Brown–Forsythe test (a change of spread: absolute deviations from
  each side's median compared — KS barely sees added noise or a scaling, which leave the median
  in place). When either side has nulls, the **null share** is tested too (Fisher's exact test
  on the 2x2 table of null / not null counts). The column's p-value is the smallest of its
  tests times their number (Bonferroni within the column), and ``test`` names the one that
  carried it. Effect size: the Wasserstein distance divided by the baseline's standard
  deviation ("how many baseline standard deviations the mass moved"), so effects of features in
  different units compare. KS and Mann–Whitney come from one sort of the pooled values (the
  per-feature tests of a 20,000 x 20,000-row window stay a small part of its cost).
* **categorical** — Pearson's chi-square test of homogeneity on the 2 x k table of category
  counts (null is a category), categories with an expected count below 5 merged into one so the
  approximation holds in 100-row windows; effect size the Jensen–Shannon distance (base 2,
  in [0, 1]) between the two frequency vectors. Both sides are samples: unlike a goodness-of-
  fit test against the baseline's proportions taken as exact, this one does not alarm on no
  drift when the window is larger than the baseline.

Across features the p-values are Holm-adjusted (family-wise error at the monitor's false-alarm
rate). Features are ranked by evidence — ``-log10`` of the p-value, computed from log survival
functions so that overwhelming evidence does not all round to 0 and tie — then by effect size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.stats import (
    chi2,
    chi2_contingency,
    fisher_exact,
    ks_2samp,
    kstwo,
    kstwobign,
    norm,
)
from scipy.stats import t as student_t

from mlgrid.workspace.drift.columns import ColumnKind
from mlgrid.workspace.drift.metrics import category_labels, numeric_values, pooled_order, wasserstein_sorted

_EXACT_KS_CELLS = 250_000
"""Below ``len(a) * len(b)`` of this the KS p-value is exact, above it asymptotic (fast)."""
_MIN_EXPECTED = 5.0
_LOG10 = math.log(10.0)


@dataclass(frozen=True)
class FeatureTest:
    """One feature's test.

    ``evidence`` is ``-log10(p_value)`` computed without underflow (it keeps ordering features
    when both p-values are below 1e-300). ``test`` names the test that carried the evidence
    (``ks``, ``mann-whitney``, ``brown-forsythe``, ``null-share`` or ``chi-square``).
    """

    feature: str
    kind: str
    test: str
    p_value: float
    evidence: float
    effect_size: float
    effect_measure: str
    baseline_null_share: float
    target_null_share: float
    adjusted_p_value: float = 1.0
    drifted: bool = False
    rank: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "feature": self.feature,
            "rank": self.rank,
            "kind": self.kind,
            "test": self.test,
            "pValue": self.p_value,
            "adjustedPValue": self.adjusted_p_value,
            "evidence": round(self.evidence, 6),
            "effectSize": self.effect_size,
            "effectMeasure": self.effect_measure,
            "drifted": self.drifted,
            "baselineNullShare": self.baseline_null_share,
            "targetNullShare": self.target_null_share,
        }


def _evidence(p_value: float, log_p: float | None = None) -> float:
    if p_value > 0:
        return max(0.0, -math.log10(min(1.0, p_value)))
    return max(0.0, -(log_p if log_p is not None else -745.0) / _LOG10)


def _ks_p(
    statistic: float, base_rows: int, tgt_rows: int, base: np.ndarray, tgt: np.ndarray
) -> tuple[float, float]:
    """``(p, evidence)`` of the two-sample KS statistic: exact for small samples, else Smirnov's
    asymptotic formula (as ``scipy.stats.ks_2samp`` does), from a log survival function when the
    p-value underflows."""
    if base_rows * tgt_rows <= _EXACT_KS_CELLS:
        return _evidence_pair(float(ks_2samp(base, tgt, method="exact").pvalue), None)
    large, small = max(base_rows, tgt_rows), min(base_rows, tgt_rows)
    en = large * small / (large + small)
    p = float(np.clip(kstwo.sf(statistic, round(en)), 0.0, 1.0))
    log_p = float(kstwobign.logsf(statistic * math.sqrt(en))) if p <= 0 else None
    return _evidence_pair(p, log_p)


def _evidence_pair(p: float, log_p: float | None) -> tuple[float, float]:
    return p, _evidence(p, log_p)


def _two_sided_normal(z: float) -> tuple[float, float]:
    """``(p, evidence)`` of a two-sided test whose statistic is standard normal under no drift."""
    log_p = math.log(2.0) + float(norm.logsf(abs(z)))
    return min(1.0, math.exp(log_p)), max(0.0, -log_p / _LOG10)


def _sorted_tests(base: np.ndarray, tgt: np.ndarray) -> tuple[dict[str, tuple[float, float]], float]:
    """KS and Mann–Whitney ``(p, evidence)``, and the Wasserstein distance, from one sort of the
    pooled values (``metrics.pooled_order``).

    KS: the largest gap between the two empirical distribution functions, read at the end of
    each group of tied values. Mann–Whitney: the window's rank sum with tied values given their
    average rank, normal approximation with the exact tie-corrected variance and a continuity
    correction (samples here are at least 50 rows a side).
    """
    n, m = len(base), len(tgt)
    ordered, from_target = pooled_order(base, tgt)
    distance = wasserstein_sorted(ordered, from_target, n, m)
    ends = np.append(np.flatnonzero(np.diff(ordered) != 0), len(ordered) - 1)
    target_below = np.cumsum(from_target)[ends]
    base_below = ends + 1 - target_below
    statistic = float(np.max(np.abs(base_below / n - target_below / m)))
    starts = np.concatenate([[0], ends[:-1] + 1])
    sizes = (ends - starts + 1).astype(np.float64)
    target_in_group = np.diff(np.concatenate([[0], target_below])).astype(np.float64)
    average_rank = (starts + ends) / 2.0 + 1.0
    u = float(np.dot(target_in_group, average_rank)) - m * (m + 1) / 2.0
    total = n + m
    ties = float(np.sum(sizes**3 - sizes))
    variance = n * m / 12.0 * ((total + 1) - ties / (total * (total - 1)))
    location = (1.0, 0.0)
    if variance > 0:
        z = (abs(u - n * m / 2.0) - 0.5) / math.sqrt(variance)
        location = _two_sided_normal(max(0.0, z))
    return {"ks": _ks_p(statistic, n, m, base, tgt), "mann-whitney": location}, distance


def _spread(base: np.ndarray, tgt: np.ndarray) -> tuple[float, float]:
    """Brown–Forsythe: the pooled two-sample t test of absolute deviations from each side's
    median (Levene's test centred on the median), ``(p, evidence)``."""
    a = np.abs(base - np.median(base))
    b = np.abs(tgt - np.median(tgt))
    n, m = len(a), len(b)
    if n < 2 or m < 2:
        return 1.0, 0.0
    pooled = (float(np.sum((a - a.mean()) ** 2)) + float(np.sum((b - b.mean()) ** 2))) / (n + m - 2)
    if pooled <= 0:
        return 1.0, 0.0
    t = (float(a.mean()) - float(b.mean())) / math.sqrt(pooled * (1.0 / n + 1.0 / m))
    log_p = math.log(2.0) + float(student_t.logsf(abs(t), n + m - 2))
    return min(1.0, math.exp(log_p)), max(0.0, -log_p / _LOG10)


def _null_share_test(base_nulls: int, base_rows: int, tgt_nulls: int, tgt_rows: int) -> tuple[float, float]:
    table = np.array([[base_nulls, base_rows - base_nulls], [tgt_nulls, tgt_rows - tgt_nulls]])
    p = float(fisher_exact(table).pvalue)
    log_p = None
    if p <= 0:
        statistic = float(chi2_contingency(table, correction=False).statistic)
        log_p = float(chi2.logsf(statistic, 1))
    return p, _evidence(p, log_p)


def numeric_test(name: str, baseline: pd.Series, target: pd.Series) -> FeatureTest:
    base_all = numeric_values(baseline)
    tgt_all = numeric_values(target)
    base = base_all[~np.isnan(base_all)]
    tgt = tgt_all[~np.isnan(tgt_all)]
    base_nulls, tgt_nulls = len(base_all) - len(base), len(tgt_all) - len(tgt)
    base_share = base_nulls / len(base_all) if len(base_all) else 0.0
    tgt_share = tgt_nulls / len(tgt_all) if len(tgt_all) else 0.0
    results: dict[str, tuple[float, float]] = {}
    effect = 0.0
    if len(base) and len(tgt):
        sorted_results, distance = _sorted_tests(base, tgt)
        results.update(sorted_results)
        results["brown-forsythe"] = _spread(base, tgt)
        spread = float(np.std(base))
        effect = distance / spread if spread > 0 else (0.0 if distance == 0 else math.inf)
    if base_nulls or tgt_nulls:
        results["null-share"] = _null_share_test(base_nulls, len(base_all), tgt_nulls, len(tgt_all))
    test, p, evidence = "ks", 1.0, 0.0
    if results:
        # The most significant test carries the column (ties: the first of the order above).
        test = max(results, key=lambda name: results[name][1])
        p_min, evidence_min = results[test]
        # Several tests for one column: Bonferroni within the column.
        p = min(1.0, len(results) * p_min)
        evidence = max(0.0, evidence_min - math.log10(len(results)))
    return FeatureTest(
        feature=name,
        kind=ColumnKind.NUMERIC.value,
        test=test,
        p_value=p,
        evidence=evidence,
        effect_size=effect if math.isfinite(effect) else 1e6,
        effect_measure="wasserstein/sd",
        baseline_null_share=base_share,
        target_null_share=tgt_share,
    )


def _merged_counts(base_counts: pd.Series, tgt_counts: pd.Series) -> np.ndarray:
    """2 x k table with sparse categories merged until every expected count is >= 5."""
    table = pd.concat([base_counts, tgt_counts], axis=1).fillna(0.0).to_numpy(dtype=np.float64).T
    order = np.argsort(-table.sum(axis=0), kind="stable")
    table = table[:, order]
    sides = table.sum(axis=1, keepdims=True)
    total = float(sides.sum())
    while table.shape[1] > 2:
        expected = sides * table.sum(axis=0, keepdims=True) / total
        if expected.min() >= _MIN_EXPECTED:
            break
        # Merge the rarest category into the next rarest (columns are sorted by pooled count).
        table = np.column_stack([table[:, :-2], table[:, -2] + table[:, -1]])
    merged: np.ndarray = table
    return merged


def categorical_test(name: str, baseline: pd.Series, target: pd.Series) -> FeatureTest:
    base = category_labels(baseline)
    tgt = category_labels(target)
    base_counts = base.value_counts(dropna=False)
    tgt_counts = tgt.value_counts(dropna=False)
    base_share = float(baseline.isna().mean()) if len(baseline) else 0.0
    tgt_share = float(target.isna().mean()) if len(target) else 0.0
    p, evidence, effect = 1.0, 0.0, 0.0
    if len(base) and len(tgt):
        union = base_counts.index.union(tgt_counts.index, sort=False)
        base_freq = base_counts.reindex(union, fill_value=0).to_numpy(dtype=np.float64) / len(base)
        tgt_freq = tgt_counts.reindex(union, fill_value=0).to_numpy(dtype=np.float64) / len(tgt)
        effect = _jensen_shannon(base_freq, tgt_freq)
        table = _merged_counts(base_counts, tgt_counts)
        if table.shape[1] >= 2 and (table.sum(axis=0) > 0).all():
            statistic, p, dof, _ = chi2_contingency(table, correction=False)
            p = float(p)
            log_p = float(chi2.logsf(float(statistic), dof)) if p <= 0 else None
            evidence = _evidence(p, log_p)
    return FeatureTest(
        feature=name,
        kind=ColumnKind.CATEGORICAL.value,
        test="chi-square",
        p_value=p,
        evidence=evidence,
        effect_size=effect,
        effect_measure="jensen-shannon",
        baseline_null_share=base_share,
        target_null_share=tgt_share,
    )


def _jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    middle = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / middle[mask])))

    return float(math.sqrt(max(0.0, (kl(p) + kl(q)) / 2)))


def holm(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for position, index in enumerate(order):
        running = max(running, min(1.0, (m - position) * p_values[index]))
        adjusted[index] = running
    return adjusted


def rank_features(
    baseline: pd.DataFrame, target: pd.DataFrame, kinds: dict[str, ColumnKind], false_alarm_rate: float
) -> list[FeatureTest]:
    """Every feature's test, Holm-adjusted, ranked by evidence (most evidence first)."""
    tests = [
        categorical_test(name, baseline[name], target[name])
        if kind is ColumnKind.CATEGORICAL
        else numeric_test(name, baseline[name], target[name])
        for name, kind in kinds.items()
    ]
    adjusted = holm([t.p_value for t in tests])
    ranked = sorted(
        zip(tests, adjusted, strict=True), key=lambda pair: (-pair[0].evidence, -pair[0].effect_size)
    )
    return [
        _with(test, adjusted=p, drifted=p <= false_alarm_rate, rank=position + 1)
        for position, (test, p) in enumerate(ranked)
    ]


def _with(test: FeatureTest, *, adjusted: float, drifted: bool, rank: int) -> FeatureTest:
    return replace(test, adjusted_p_value=adjusted, drifted=drifted, rank=rank)


def family_evidence(tests: list[FeatureTest]) -> float:
    """``-log10`` of the smallest Bonferroni-adjusted p-value over the features (0 for none)."""
    if not tests:
        return 0.0
    return max(0.0, max(t.evidence for t in tests) - math.log10(len(tests)))
