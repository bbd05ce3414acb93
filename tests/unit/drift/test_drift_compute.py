"""The drift coefficient on synthetic data with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from mlgrid.workspace.drift import DriftResult, compute_drift, drift_detected
from mlgrid.workspace.drift.compute import DEFAULT_THRESHOLD, MIN_ROWS

CATEGORIES = np.array(["a", "b", "c", "d"])
CATEGORY_P = np.array([0.4, 0.3, 0.2, 0.1])


def frame(
    rows: int,
    seed: int,
    *,
    mean: float = 0.0,
    sd: float = 1.0,
    category_p: np.ndarray = CATEGORY_P,
    new_category_share: float = 0.0,
) -> pd.DataFrame:
    """Five features; the keyword arguments move ``num`` (numeric) or ``cat`` (categorical)."""
    rng = np.random.default_rng(seed)
    cat = rng.choice(CATEGORIES, size=rows, p=category_p).astype(object)
    cat[rng.random(rows) < new_category_share] = "new"
    return pd.DataFrame(
        {
            "num": rng.normal(mean, sd, rows),
            "other": rng.normal(10.0, 3.0, rows),
            "skewed": rng.exponential(2.0, rows),
            "cat": cat,
            "flag": rng.random(rows) < 0.3,
        }
    )


BASELINE = frame(3000, seed=1)


def top_feature(result: DriftResult) -> str:
    return max(result.feature_contributions, key=lambda name: result.feature_contributions[name])


def test_identical_distributions_stay_below_the_threshold_for_every_seed() -> None:
    coefficients = []
    for seed in range(20):
        result = compute_drift(BASELINE, frame(1000, seed=100 + seed), seed=seed)
        assert result.coefficient is not None
        coefficients.append(result.coefficient)
        assert not drift_detected(result.coefficient, DEFAULT_THRESHOLD)
    assert max(coefficients) < DEFAULT_THRESHOLD
    assert float(np.mean(coefficients)) < 0.08


def test_identical_distributions_in_small_windows_stay_below_the_threshold() -> None:
    for seed in range(5):
        result = compute_drift(BASELINE, frame(200, seed=200 + seed), seed=seed)
        assert result.coefficient is not None
        assert result.coefficient < DEFAULT_THRESHOLD


@pytest.mark.parametrize(
    ("shifted", "feature"),
    [
        ({"mean": 1.5}, "num"),
        ({"sd": 3.0}, "num"),
        ({"category_p": CATEGORY_P[::-1]}, "cat"),
        ({"new_category_share": 0.4}, "cat"),
    ],
    ids=["mean-shift", "variance-shift", "category-frequency-shift", "new-category"],
)
def test_clear_shift_gives_a_high_coefficient_and_the_shifted_feature_on_top(
    shifted: dict[str, object], feature: str
) -> None:
    result = compute_drift(BASELINE, frame(1000, seed=7, **shifted))  # type: ignore[arg-type]
    assert result.coefficient is not None
    assert result.coefficient > 0.3
    assert drift_detected(result.coefficient, DEFAULT_THRESHOLD)
    assert top_feature(result) == feature
    assert result.feature_contributions[feature] > 0.5


def test_large_shift_in_a_small_window_is_still_found() -> None:
    result = compute_drift(BASELINE, frame(MIN_ROWS, seed=3, mean=3.0))
    assert result.coefficient is not None and result.coefficient > 0.5
    assert top_feature(result) == "num"


def test_contributions_are_normalised_over_the_analysed_features() -> None:
    result = compute_drift(BASELINE, frame(500, seed=5, mean=1.0))
    assert set(result.feature_contributions) == {"num", "other", "skewed", "cat", "flag"}
    assert math.isclose(sum(result.feature_contributions.values()), 1.0)
    assert all(share >= 0 for share in result.feature_contributions.values())


def test_no_signal_still_gives_contributions_that_sum_to_one() -> None:
    same = BASELINE.iloc[:200].reset_index(drop=True)
    result = compute_drift(same, same.copy())
    assert math.isclose(sum(result.feature_contributions.values()), 1.0)


def test_fewer_than_50_window_rows_records_why_and_gives_no_coefficient() -> None:
    result = compute_drift(BASELINE, frame(MIN_ROWS - 1, seed=2, mean=5.0))
    assert result.coefficient is None
    assert result.reason is not None and "49 rows" in result.reason and "50" in result.reason
    assert result.feature_contributions == {}
    assert result.row_counts == {"baseline": 3000, "target": 49}
    assert not drift_detected(result.coefficient, DEFAULT_THRESHOLD)
    # the per-feature metrics are still useful and still computed
    assert result.feature_metrics["num"]["target_mean"] > 4


def test_fewer_than_50_baseline_rows_records_why() -> None:
    result = compute_drift(BASELINE.iloc[:10], frame(500, seed=2))
    assert result.coefficient is None
    assert result.reason is not None and "baseline" in result.reason


def test_empty_window_has_no_coefficient_and_no_metrics() -> None:
    result = compute_drift(BASELINE, BASELINE.iloc[:0])
    assert result.coefficient is None
    assert result.feature_metrics == {}
    assert result.row_counts == {"baseline": 3000, "target": 0}


def test_exactly_50_rows_is_enough() -> None:
    result = compute_drift(BASELINE, frame(MIN_ROWS, seed=4))
    assert result.coefficient is not None
    assert result.reason is None


def test_same_seed_same_result() -> None:
    target = frame(800, seed=9, mean=0.5)
    first = compute_drift(BASELINE, target, seed=3)
    second = compute_drift(BASELINE, target.copy(), seed=3)
    assert first == second


def test_large_inputs_are_sampled_to_max_rows_per_side_and_balanced() -> None:
    result = compute_drift(frame(4000, seed=1), frame(2500, seed=2), max_rows=1000)
    assert result.rows_compared == 1000
    assert result.row_counts == {"baseline": 4000, "target": 2500}
    small = compute_drift(frame(4000, seed=1), frame(300, seed=2))
    assert small.rows_compared == 300


def test_selected_features_and_skipped_features() -> None:
    target = frame(500, seed=2)
    result = compute_drift(BASELINE, target, ["num", "cat", "missing"])
    assert set(result.feature_contributions) == {"num", "cat"}
    assert set(result.feature_metrics) == {"num", "cat"}
    assert result.skipped_features == {"missing": "not a column of the baseline"}


def test_timestamp_text_and_sparse_columns_are_skipped_with_reasons() -> None:
    rng = np.random.default_rng(0)

    def with_extras(data: pd.DataFrame) -> pd.DataFrame:
        rows = len(data)
        sparse = rng.normal(size=rows)
        sparse[: rows // 2] = np.nan
        return data.assign(
            ts=pd.date_range("2024-01-01", periods=rows, freq="min", tz="UTC"),
            comment=[f"free text {i}" for i in rng.integers(0, 10**9, rows)],
            sparse=sparse,
            empty=np.full(rows, np.nan),
        )

    result = compute_drift(with_extras(BASELINE), with_extras(frame(500, seed=2)), timestamp_column="ts")
    assert set(result.skipped_features) == {"ts", "comment", "sparse", "empty"}
    assert "timestamp" in result.skipped_features["ts"]
    assert result.skipped_features["comment"].startswith("text")
    assert "nulls" in result.skipped_features["sparse"]  # half nulls: more than 15 % (SPEC §9)
    assert result.skipped_features["empty"] == "every value is null"
    assert "ts" not in result.feature_contributions


def test_a_feature_missing_from_the_window_is_skipped() -> None:
    result = compute_drift(BASELINE, frame(500, seed=2).drop(columns=["other"]))
    assert result.skipped_features == {"other": "not a column of the target window"}
    assert result.coefficient is not None


def test_no_usable_feature_means_no_coefficient() -> None:
    result = compute_drift(BASELINE, frame(500, seed=2), ["missing"])
    assert result.coefficient is None
    assert result.reason is not None and "no usable features" in result.reason


def test_nulls_infinities_nullable_dtypes_and_new_categories_are_handled() -> None:
    def messy(data: pd.DataFrame) -> pd.DataFrame:
        data = data.copy()
        data.loc[data.index[::10], "num"] = np.nan
        data.loc[data.index[5], "other"] = np.inf
        data.loc[data.index[::7], "cat"] = None
        data["count"] = pd.array(np.arange(len(data)) % 5, dtype="Int64")
        data["label"] = pd.array(data["cat"].to_list(), dtype="string")
        data["flag"] = pd.array(data["flag"].to_list(), dtype="boolean")
        return data

    result = compute_drift(messy(BASELINE), messy(frame(600, seed=2, new_category_share=0.5)))
    assert result.coefficient is not None and result.coefficient > 0.3
    assert result.skipped_features == {}
    assert result.feature_metrics["cat"]["target_new_categories"] == 1
    assert math.isclose(sum(result.feature_contributions.values()), 1.0)


def test_metrics_match_their_definitions_and_are_json_ready() -> None:
    baseline = pd.DataFrame({"x": np.arange(100, dtype=float), "c": ["a"] * 50 + ["b"] * 50})
    target = pd.DataFrame({"x": np.arange(100, dtype=float) + 2.5, "c": ["a"] * 80 + ["z"] * 20})
    result = compute_drift(baseline, target)
    numeric = result.feature_metrics["x"]
    assert numeric["kind"] == "numeric"
    assert numeric["wasserstein_distance"] == pytest.approx(2.5)
    assert (numeric["baseline_mean"], numeric["target_mean"]) == (pytest.approx(49.5), pytest.approx(52.0))
    assert (numeric["baseline_min"], numeric["baseline_max"]) == (0.0, 99.0)
    assert (numeric["target_min"], numeric["target_max"]) == (2.5, 101.5)
    categorical = result.feature_metrics["c"]
    # frequencies over {a, b, z}: (0.5, 0.5, 0) against (0.8, 0, 0.2)
    assert categorical["euclidean_distance"] == pytest.approx(math.sqrt(0.3**2 + 0.5**2 + 0.2**2))
    assert (categorical["baseline_distinct"], categorical["target_distinct"]) == (2, 2)
    assert categorical["target_new_categories"] == 1
    json.dumps(result.feature_metrics, allow_nan=False)
    json.dumps(result.feature_contributions, allow_nan=False)


def test_missing_values_count_as_a_category_in_the_frequency_distance() -> None:
    baseline = pd.DataFrame({"c": ["a"] * 100})
    target = pd.DataFrame({"c": ["a"] * 50 + [None] * 50})
    metrics = compute_drift(baseline, target).feature_metrics["c"]
    assert metrics["euclidean_distance"] == pytest.approx(math.sqrt(0.5**2 + 0.5**2))
    assert metrics["target_null_share"] == 0.5


def test_coefficient_is_within_zero_and_one() -> None:
    separable = compute_drift(frame(500, seed=1), frame(500, seed=2, mean=50.0))
    assert separable.coefficient is not None and 0.95 <= separable.coefficient <= 1.0


@pytest.mark.parametrize(
    ("coefficient", "threshold", "expected"),
    [(0.2, 0.2, True), (0.1999, 0.2, False), (0.9, 0.5, True), (0.0, 0.0, True), (None, 0.2, False)],
)
def test_drift_detected_is_coefficient_at_or_above_threshold(
    coefficient: float | None, threshold: float, expected: bool
) -> None:
    assert drift_detected(coefficient, threshold) is expected


def test_max_rows_below_the_minimum_is_refused() -> None:
    with pytest.raises(ValueError):
        compute_drift(BASELINE, BASELINE, max_rows=10)


def test_non_string_column_names_are_analysed_by_their_string_form() -> None:
    baseline = BASELINE[["num", "cat"]].set_axis([1, 2], axis="columns")
    target = frame(500, seed=2, mean=2.0)[["num", "cat"]].set_axis([1, 2], axis="columns")
    result = compute_drift(baseline, target)
    assert set(result.feature_contributions) == {"1", "2"}
    assert top_feature(result) == "1"


def test_many_features_keep_the_permutation_importance_bounded() -> None:
    rng = np.random.default_rng(0)
    wide_baseline = pd.DataFrame(rng.normal(size=(1500, 60)), columns=[f"f{i}" for i in range(60)])
    wide_target = pd.DataFrame(rng.normal(size=(1500, 60)), columns=[f"f{i}" for i in range(60)])
    wide_target["f42"] += 2.0
    result = compute_drift(wide_baseline, wide_target)
    assert result.coefficient is not None and result.coefficient > 0.5
    assert top_feature(result) == "f42"
