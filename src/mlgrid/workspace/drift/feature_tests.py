"""Per-feature two-sample tests: which feature moved, with a p-value and an effect size each.

One test per analysed column, chosen by its kind, each valid at any window size:

* **numeric** — the two-sample Kolmogorov–Smirnov test on the non-null values; effect size the
  Wasserstein distance divided by the baseline's standard deviation ("how many baseline
  standard deviations the mass moved"), so effects of features in different units compare.
  When either side has nulls, the **null share** is tested too (Fisher's exact test on the 2x2
  table of null / not null counts) and the column's p-value is the smaller of the two, doubled
  (Bonferroni within the column): a numeric column with many nulls in the baseline is kept,
  and a jump in its null share is evidence of its own.
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
from scipy.stats import chi2, chi2_contingency, fisher_exact, ks_2samp, kstwobign, wasserstein_distance

from mlgrid.workspace.drift.columns import ColumnKind
from mlgrid.workspace.drift.metrics import category_labels, numeric_values

_EXACT_KS_CELLS = 250_000
"""Below ``len(a) * len(b)`` of this the KS p-value is exact, above it asymptotic (fast)."""
_MIN_EXPECTED = 5.0
_LOG10 = math.log(10.0)


@dataclass(frozen=True)
class FeatureTest:
    """One feature's test.

    ``evidence`` is ``-log10(p_value)`` computed without underflow (it keeps ordering features
    when both p-values are below 1e-300). ``test`` names the test that carried the evidence
    (``ks``, ``null-share`` or ``chi-square``).
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


def _ks(base: np.ndarray, tgt: np.ndarray) -> tuple[float, float]:
    """``(p, evidence)`` of the two-sample KS test."""
    method = "exact" if len(base) * len(tgt) <= _EXACT_KS_CELLS else "asymp"
    result = ks_2samp(base, tgt, method=method)
    p = float(result.pvalue)
    log_p = None
    if p <= 0:
        scale = math.sqrt(len(base) * len(tgt) / (len(base) + len(tgt)))
        log_p = float(kstwobign.logsf(float(result.statistic) * scale))
    return p, _evidence(p, log_p)


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
    p, evidence, test, effect = 1.0, 0.0, "ks", 0.0
    if len(base) and len(tgt):
        p, evidence = _ks(base, tgt)
        spread = float(np.std(base))
        distance = float(wasserstein_distance(base, tgt))
        effect = distance / spread if spread > 0 else (0.0 if distance == 0 else math.inf)
    if base_nulls or tgt_nulls:
        p_null, evidence_null = _null_share_test(base_nulls, len(base_all), tgt_nulls, len(tgt_all))
        if p_null < p or (p_null == p == 0 and evidence_null > evidence):
            p, evidence, test = p_null, evidence_null, "null-share"
        # Two tests for one column: Bonferroni within the column.
        p = min(1.0, 2 * p)
        evidence = max(0.0, evidence - math.log10(2))
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
