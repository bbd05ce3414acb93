"""The calibrated decision: false alarms at the chosen rate, ranked features, multivariate shifts.

No-drift windows here are fresh samples from the distribution the baseline was drawn from.
Given the null (``calibration.simulate_null``: ``B`` windows drawn from the baseline), each
no-drift window alarms with a probability that is itself Beta(k, B + 1 - k)-distributed over
the null's randomness (mean ``k / (B + 1)`` = the setting), so the number of alarms among N
windows judged against one null is Beta-binomial — the bound the tests use, exact rather than
a loose guess. Sizes are kept small (three features) so the file runs in well under a minute.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import betabinom, binom, ks_2samp, mannwhitneyu, wasserstein_distance

from mlgrid.workspace.drift.cache import NullCache
from mlgrid.workspace.drift.calibration import (
    NULL_QUANTUM,
    NullDistribution,
    combined,
    draws_for,
    null_rows,
    standardiser,
)
from mlgrid.workspace.drift.compute import NO_SINGLE_FEATURE, DriftResult, compute_drift, decide
from mlgrid.workspace.drift.feature_tests import _sorted_tests, holm
from mlgrid.workspace.drift.metrics import wasserstein

RATE = 0.1
"""The setting under test: 39 null draws (k = 4), cheap enough to test at 2,000 rows."""

NULLS: NullCache[NullDistribution] = NullCache()


def population(rows: int, seed: int, *, correlated: bool = True) -> pd.DataFrame:
    """Two strongly correlated numerics and a categorical; ``correlated=False`` keeps every
    marginal and breaks the correlation (a shift no single feature shows)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    noise = rng.normal(size=rows)
    y = 0.95 * x + np.sqrt(1 - 0.95**2) * noise if correlated else noise
    return pd.DataFrame({"x": x, "y": y, "c": rng.choice(["a", "b", "c"], rows, p=[0.5, 0.3, 0.2])})


BASELINE = population(4000, seed=1)


def _analyse(window: pd.DataFrame, seed: int = 0) -> DriftResult:
    return compute_drift(BASELINE, window, seed=seed, false_alarm_rate=RATE, nulls=NULLS, baseline_key="b")


@pytest.mark.parametrize(("rows", "windows"), [(100, 60), (2000, 40)])
def test_no_drift_windows_alarm_at_the_chosen_rate(rows: int, windows: int) -> None:
    draws = draws_for(RATE)
    k = round(RATE * (draws + 1))
    assert k == NULL_QUANTUM and k / (draws + 1) == pytest.approx(RATE)
    alarms = 0
    for seed in range(windows):
        result = _analyse(population(rows, 1000 + seed))
        assert result.null_rows == rows and result.null_draws == draws
        assert result.p_value is not None
        alarms += decide(result.coefficient, result.p_value, false_alarm_rate=RATE)
    bound = betabinom(windows, k, draws + 1 - k)
    low, high = bound.ppf(0.0005), bound.ppf(0.9995)
    assert low <= alarms <= high, (alarms, low, high)


@pytest.mark.slow
def test_a_small_baseline_keeps_the_false_alarm_rate() -> None:
    """200-row baselines and 160-row windows: the null can only be computed at 100 rows (the
    other 100 are its reference), so each window is analysed exactly as a null window is — 100
    of its rows against 100 baseline rows — and the rate holds.

    Each window gets a baseline of its own. With one small baseline shared by every window, the
    windows' alarms are correlated through that baseline's own sampling error (any two-sample
    test's are: the rate is a rate over baselines and windows), which no bound on the null's
    randomness alone covers.
    """
    rate = 0.25
    draws = draws_for(rate)
    windows, alarms = 16, 0
    for seed in range(windows):
        baseline = population(200, seed=5000 + seed)
        result = compute_drift(baseline, population(160, 6000 + seed), seed=seed, false_alarm_rate=rate)
        assert (result.null_rows, result.rows_compared, result.null_draws) == (100, 100, draws)
        alarms += decide(result.coefficient, result.p_value, false_alarm_rate=rate)
    bound = binom(windows, NULL_QUANTUM / (draws + 1))
    assert bound.ppf(0.0005) <= alarms <= bound.ppf(0.9995), alarms


def test_a_change_of_spread_is_ranked_first_by_the_spread_test() -> None:
    """Noise added to one feature leaves its median in place: KS barely sees it, the
    Brown–Forsythe test of absolute deviations does."""
    window = population(300, seed=13)
    window["y"] = window["y"] * 1.6
    result = compute_drift(BASELINE, window)
    top = result.feature_tests[0]
    assert (top["feature"], top["test"], top["drifted"]) == ("y", "brown-forsythe", True)


def test_a_shift_of_location_is_ranked_first() -> None:
    window = population(200, seed=15)
    window["x"] = window["x"] + 0.5
    result = compute_drift(BASELINE, window)
    top = result.feature_tests[0]
    assert (top["feature"], top["drifted"]) == ("x", True)
    assert top["test"] in ("mann-whitney", "ks")


def test_a_shifted_feature_is_ranked_first_even_in_a_100_row_window() -> None:
    window = population(100, seed=7)
    window["c"] = np.random.default_rng(8).choice(["a", "b", "c"], 100, p=[0.2, 0.3, 0.5])
    result = compute_drift(BASELINE, window, seed=0, false_alarm_rate=RATE, nulls=NULLS, baseline_key="b")
    top = result.feature_tests[0]
    assert (top["feature"], top["test"], top["drifted"], top["rank"]) == ("c", "chi-square", True, 1)
    assert top["effectMeasure"] == "jensen-shannon" and top["effectSize"] > 0.1
    assert result.p_value is not None and result.p_value <= RATE
    assert [t["feature"] for t in result.feature_tests[1:]] in (["x", "y"], ["y", "x"])
    assert result.explanation is not None and result.explanation.startswith("c moved most")
    assert result.drifted_features[0]["feature"] == "c"


def test_a_broken_correlation_is_caught_and_no_single_feature_explains_it() -> None:
    result = _analyse(population(2000, seed=9, correlated=False))
    assert result.p_value is not None and result.p_value <= RATE
    assert result.auroc > 0.6
    assert not [t for t in result.feature_tests if t["drifted"]]
    assert result.drifted_features == []
    assert result.explanation is not None and result.explanation.startswith(NO_SINGLE_FEATURE)


def test_a_numeric_column_with_some_nulls_has_its_null_share_tested() -> None:
    rng = np.random.default_rng(3)
    baseline = pd.DataFrame({"v": rng.normal(size=2000), "w": rng.normal(size=2000)})
    baseline.loc[rng.random(2000) < 0.1, "v"] = np.nan
    window = pd.DataFrame({"v": rng.normal(size=300), "w": rng.normal(size=300)})
    window.loc[rng.random(300) < 0.6, "v"] = np.nan
    result = compute_drift(baseline, window)
    assert "v" not in result.skipped_features  # typed on the baseline: 10 % nulls is kept
    top = result.feature_tests[0]
    assert (top["feature"], top["test"], top["drifted"]) == ("v", "null-share", True)
    assert top["baselineNullShare"] == pytest.approx(0.1, abs=0.03)
    assert top["targetNullShare"] == pytest.approx(0.6, abs=0.06)


def test_without_a_rate_the_threshold_rule_decides() -> None:
    result = compute_drift(BASELINE, population(500, seed=11))
    assert result.p_value is None and result.null_draws == 0
    assert decide(0.25, None, threshold=0.2, false_alarm_rate=None)
    assert not decide(0.15, None, threshold=0.2, false_alarm_rate=None)
    assert not decide(0.99, 0.2, threshold=0.2, false_alarm_rate=0.05)
    assert decide(0.0, 0.05, threshold=0.2, false_alarm_rate=0.05)


@given(
    st.lists(st.tuples(st.floats(-5, 50), st.floats(0, 50)), min_size=1, max_size=60),
    st.floats(-5, 50),
    st.floats(0, 50),
)
def test_the_monte_carlo_p_value_counts_the_null_at_or_above(
    draws: list[tuple[float, float]], z: float, features: float
) -> None:
    null = NullDistribution(10, 100, tuple(d[0] for d in draws), tuple(d[1] for d in draws))
    centre, scale = standardiser([*null.z, z])
    own = combined(z, features, centre, scale)
    expected = (1 + sum(combined(dz, df, centre, scale) >= own for dz, df in draws)) / (len(draws) + 1)
    assert null.p_value(z, features) == expected
    assert 1 / (len(draws) + 1) <= null.p_value(z, features) <= 1


@given(st.lists(st.floats(-5, 50), min_size=2, max_size=60), st.floats(0.1, 10), st.floats(-10, 10))
def test_the_standardised_classifier_evidence_does_not_depend_on_the_scale_of_z(
    z_values: list[float], factor: float, shift: float
) -> None:
    """The classifier's part is judged on its own null's scale: any affine change of ``z`` (a
    wider or shifted null) leaves every window's evidence as it was."""
    centre, scale = standardiser(z_values)
    moved = [factor * z + shift for z in z_values]
    moved_centre, moved_scale = standardiser(moved)
    if scale == 1.0 or moved_scale == 1.0:  # degenerate spread: no standardisation
        return
    for z, m in zip(z_values, moved, strict=True):
        expected = combined(m, 0.0, moved_centre, moved_scale)
        assert combined(z, 0.0, centre, scale) == pytest.approx(expected, rel=1e-6, abs=1e-9)


@given(st.floats(0.001, 0.5))
def test_draws_make_the_rate_attainable(rate: float) -> None:
    draws = draws_for(rate)
    assert 1 <= draws <= 999
    if rate * 1000 >= NULL_QUANTUM:
        assert NULL_QUANTUM / (draws + 1) == pytest.approx(rate, rel=0.15)


@pytest.mark.parametrize(
    ("window", "baseline", "expected"),
    [(100, 10_000, 100), (500, 10_000, 500), (2000, 10_000, 2000), (1040, 10_000, 1000), (960, 10_000, 1000),
     (1150, 10_000, 1200), (2000, 3000, 1500), (7, 100, 8)],
)
def test_null_sizes_round_to_nice_numbers_within_half_the_baseline(
    window: int, baseline: int, expected: int
) -> None:
    assert null_rows(window, baseline) == expected


@given(st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_holm_is_monotone_and_at_least_the_raw_p_value(p_values: list[float]) -> None:
    adjusted = holm(p_values)
    assert all(a >= p for a, p in zip(adjusted, p_values, strict=True))
    assert all(a <= 1 for a in adjusted)
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    assert all(adjusted[a] <= adjusted[b] for a, b in itertools.pairwise(order))


@given(
    st.lists(st.integers(-20, 20), min_size=3, max_size=80),
    st.lists(st.integers(-20, 20), min_size=3, max_size=80),
)
def test_one_sort_gives_scipys_ks_mann_whitney_and_wasserstein(first: list[int], second: list[int]) -> None:
    """The pooled-sort implementations agree with scipy's, ties included (integers tie often)."""
    base = np.array(first, dtype=np.float64) / 4
    tgt = np.array(second, dtype=np.float64) / 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's exact KS falls back on a few ties
        results, distance = _sorted_tests(base, tgt)
        expected_ks = float(ks_2samp(base, tgt, method="exact").pvalue)
    assert distance == pytest.approx(wasserstein_distance(base, tgt), rel=1e-9, abs=1e-12)
    assert wasserstein(base, tgt) == pytest.approx(distance, rel=1e-12, abs=1e-12)
    assert results["ks"][0] == pytest.approx(expected_ks, rel=1e-9)
    if np.ptp(np.concatenate([base, tgt])) > 0:
        expected = float(mannwhitneyu(base, tgt, method="asymptotic").pvalue)
        assert results["mann-whitney"][0] == pytest.approx(expected, rel=1e-6, abs=1e-12)
