"""The domain classifier: can a model tell baseline rows from window rows it has not seen?

If a classifier separates baseline rows from target-window rows *on rows it was not trained
on*, the two samples come from different distributions. Two numbers come out of the same
held-out probabilities:

* ``auroc`` — the area under the ROC curve, with its one-sided p-value under "no drift". This
  is the statistic behind the decision (see ``decision``): it uses the whole ranking of the
  probabilities instead of cutting them at 0.5, and it has an exact null distribution.
* ``coefficient`` — the Azure-style ``max(0, MCC)`` of the probabilities cut at 0.5, with both
  classes weighted equally (so a 100-row window against a 20,000-row baseline is scored as
  if the sides were balanced, like the old balanced subsample did). It is kept for the
  ``threshold`` rule and the event's ``DriftCoefficient``.

Choices, and why:

* **Every row, class weights instead of subsampling.** Both sides are used whole (up to
  ``compute.DEFAULT_MAX_ROWS`` per side); each class carries half of the total sample weight.
* **Cross-fitting at every size.** Stratified ``FOLDS``-fold (3) cross-fitting: every row gets a
  held-out probability from a model that never saw it, at 100 rows as at 20,000 — there is no
  switch of method at some size.
* **A score with a known per-fold null.** Within one fold the model was fitted on other rows,
  so under "no drift" the held-out labels are a random split of the held-out rows whatever the
  model is: that fold's Mann–Whitney U has mean ``n0*n1/2`` and a tie-corrected variance known
  in closed form. The statistic is the sum of the per-fold U (pairs compared within a fold, so
  each fold's model is judged on its own scale); ``auroc`` is that sum over the number of
  pairs. The folds' U are *not* independent (the models share training rows): the normal
  approximation of the sum was measured to be too narrow (standard deviation 1.2–1.5 instead
  of 1), so its p-value is a score that ``calibration`` turns into a calibrated one.
* **Model**: scikit-learn's ``HistGradientBoostingClassifier`` (no new dependency; native
  nulls and categorical codes; deterministic for a seed). Depth-limited trees with enough
  rounds to follow a correlation break or a change of spread; a floor on leaf size keeps the
  small windows from being memorised. The number of rounds is sized from the data before
  fitting (``_rounds``), a deterministic time budget: the result does not depend on how busy
  the machine is, and a 20,000 x 20,000-row, 30-feature window stays within about 2 s.
* **One thread** per computation (see ``separability``).
* **Contributions**: permutation importance on (a bounded number of) held-out rows — the drop
  in AUROC when one feature is shuffled — clipped at zero and normalised to sum to 1. Kept for
  compatibility; the per-feature tests in ``feature_tests`` are what ranks features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from mlgrid.workspace.drift.columns import ColumnKind
from mlgrid.workspace.drift.metrics import category_labels, numeric_values

FOLDS = 3
PERMUTATION_REPEATS = 1
IMPORTANCE_ROWS = 1000
"""Held-out rows (over all folds) the permutation importance uses at most."""

MAX_ROUNDS = 30
MIN_ROUNDS = 10
ROUND_BUDGET = 20_000_000
"""Training cells x boosting rounds per fold. Bounds the fit time: 20,000 + 20,000 rows of 30
features get ``MIN_ROUNDS``-ish rounds, windows of a few thousand rows ``MAX_ROUNDS``."""

_PREDICT_BATCH_ROWS = 200_000
_BINS = 63

_MAX_CATEGORY_CODES = 255
"""``HistGradientBoostingClassifier`` takes at most 255 categories (its bin count) per feature."""


@dataclass(frozen=True)
class EncodedSample:
    """Baseline and target rows stacked as one numeric matrix the classifier can read.

    ``labels`` is 0 for baseline rows and 1 for target rows; ``categorical`` marks the columns
    holding category codes (NaN for a missing value).
    """

    matrix: np.ndarray
    labels: np.ndarray
    categorical: np.ndarray
    features: list[str]


@dataclass(frozen=True)
class Separability:
    """How well the classifier separated the two samples, and which features it used.

    ``p_value`` is one-sided (large AUROC is evidence of drift) under the normal approximation
    of the summed per-fold U; ``z`` its standard score and ``evidence`` ``-log10(p_value)``
    without underflow. The folds share training rows, which widens the true null of ``z``
    beyond the standard normal (measured: a standard deviation of 1.2-1.5), so these are a
    *score*, not a calibrated p-value: ``calibration`` turns them into one.
    """

    auroc: float
    p_value: float
    z: float
    evidence: float
    coefficient: float
    importances: dict[str, float]


def _sort_key(value: object) -> tuple[str, str]:
    return type(value).__name__, str(value)


def _category_codes(baseline: pd.Series, target: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Map categories to integer codes shared by both sides (missing stays NaN).

    Codes follow a sorted order of the union of categories so the encoding, and hence the fitted
    model, does not depend on row order. If the union exceeds what the model accepts, the most
    frequent categories keep their own code and the rest share one "other" code.
    """
    base = category_labels(baseline)
    tgt = category_labels(target)
    both = pd.concat([base[baseline.notna()], tgt[target.notna()]], ignore_index=True)
    counts = both.value_counts()
    categories = sorted(counts.index, key=_sort_key)
    if len(categories) > _MAX_CATEGORY_CODES:
        kept = sorted(counts.index[: _MAX_CATEGORY_CODES - 1], key=_sort_key)
        codes = {c: float(i) for i, c in enumerate(kept)}
        other = float(len(kept))
    else:
        codes = {c: float(i) for i, c in enumerate(categories)}
        other = float("nan")

    def encode(series: pd.Series, labels: pd.Series) -> np.ndarray:
        mapped = np.array([codes.get(v, other) for v in labels], dtype=np.float64)
        mapped[series.isna().to_numpy()] = np.nan
        return mapped

    return encode(baseline, base), encode(target, tgt)


def encode(baseline: pd.DataFrame, target: pd.DataFrame, kinds: dict[str, ColumnKind]) -> EncodedSample:
    """Stack ``baseline`` over ``target`` into a float matrix of the features in ``kinds``."""
    columns: list[np.ndarray] = []
    categorical: list[bool] = []
    for name, kind in kinds.items():
        if kind is ColumnKind.CATEGORICAL:
            base_codes, tgt_codes = _category_codes(baseline[name], target[name])
            columns.append(np.concatenate([base_codes, tgt_codes]))
            categorical.append(True)
        else:
            columns.append(np.concatenate([numeric_values(baseline[name]), numeric_values(target[name])]))
            categorical.append(False)
    labels = np.concatenate([np.zeros(len(baseline), dtype=np.int64), np.ones(len(target), dtype=np.int64)])
    matrix = np.column_stack(columns) if columns else np.empty((len(labels), 0))
    return EncodedSample(matrix, labels, np.array(categorical, dtype=bool), list(kinds))


def _discretised(sample: EncodedSample) -> np.ndarray:
    """Numeric columns replaced by their quantile-bin index (nulls stay NaN), once for all folds.

    The model bins its inputs anyway; doing it here, on the pooled rows without their labels,
    saves scikit-learn's weighted-percentile binning, which dominated the fit with sample
    weights (measured: ~80 % of the time at 40,000 rows).
    """
    matrix = sample.matrix.copy()
    for column in np.flatnonzero(~sample.categorical):
        values = matrix[:, column]
        present = values[~np.isnan(values)]
        if len(present) == 0:
            continue
        edges = np.unique(np.quantile(present, np.linspace(0, 1, _BINS + 1)[1:-1]))
        binned = np.searchsorted(edges, values, side="right").astype(np.float64)
        binned[np.isnan(values)] = np.nan
        matrix[:, column] = binned
    return matrix


def _rounds(train_rows: int, width: int) -> int:
    """Boosting rounds for one fold: ``MAX_ROUNDS`` unless the budget says fewer."""
    cells = max(1, train_rows * max(1, width))
    return int(min(MAX_ROUNDS, max(MIN_ROUNDS, ROUND_BUDGET // cells)))


def _model(seed: int, train_rows: int, width: int, categorical: np.ndarray) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(
        max_depth=3,
        max_leaf_nodes=8,
        learning_rate=0.2,
        max_iter=_rounds(train_rows, width),
        min_samples_leaf=max(10, min(100, train_rows // 100)),
        l2_regularization=1.0,
        max_bins=_BINS + 1,
        categorical_features=categorical if categorical.any() else None,
        early_stopping=False,
        random_state=seed,
    )


def _balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Each class carries half the total weight, whatever its row count."""
    total = len(labels)
    positives = int(labels.sum())
    weights = np.empty(total, dtype=np.float64)
    weights[labels == 1] = total / (2.0 * positives)
    weights[labels == 0] = total / (2.0 * (total - positives))
    return weights


def mann_whitney(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float, float]:
    """``(U, mean, variance)`` of the positives' rank sum under random labels (ties corrected).

    ``U / (n0 * n1)`` is the AUROC; the variance is the exact permutation variance of U given
    the scores, so the test is valid for a model with many tied outputs too.
    """
    positives = labels == 1
    n1 = int(positives.sum())
    n0 = len(labels) - n1
    n = n0 + n1
    if n0 == 0 or n1 == 0:
        return 0.0, 0.0, 0.0
    ranks = rankdata(scores)
    u = float(ranks[positives].sum() - n1 * (n1 + 1) / 2)
    _, tie_counts = np.unique(scores, return_counts=True)
    ties = float(np.sum(tie_counts.astype(np.float64) ** 3 - tie_counts))
    variance = n0 * n1 / 12.0 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    return u, n0 * n1 / 2.0, max(variance, 0.0)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the rank-sum identity, ties averaged (0.5 for one class)."""
    u, mean, _ = mann_whitney(labels, scores)
    return 0.5 if mean == 0 else u / (2 * mean)


def weighted_mcc(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Matthews correlation with both classes weighted equally (balanced confusion matrix)."""
    positives = labels == 1
    n1 = max(1, int(positives.sum()))
    n0 = max(1, len(labels) - int(positives.sum()))
    tp = float(np.sum(predicted[positives] == 1)) / n1
    fn = 1.0 - tp
    fp = float(np.sum(predicted[~positives] == 1)) / n0
    tn = 1.0 - fp
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denominator == 0 else (tp * tn - fp * fn) / denominator


def _permutation_drop(
    model: HistGradientBoostingClassifier,
    matrix: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    rows_wanted: int,
) -> np.ndarray:
    """Mean drop in held-out AUROC when each column is shuffled, one column at a time.

    Shuffled copies are stacked and scored in as few ``predict_proba`` calls as memory allows:
    one call on many rows costs far less than many calls on few rows.
    """
    if len(matrix) > rows_wanted:
        keep = np.sort(rng.choice(len(matrix), rows_wanted, replace=False))
        matrix, labels = matrix[keep], labels[keep]
    rows, width = matrix.shape
    reference = roc_auc(labels, model.predict_proba(matrix)[:, 1])
    columns_per_batch = max(1, _PREDICT_BATCH_ROWS // (rows * PERMUTATION_REPEATS))
    drops = np.zeros(width)
    for first in range(0, width, columns_per_batch):
        batch = range(first, min(width, first + columns_per_batch))
        copies = np.tile(matrix, (len(batch) * PERMUTATION_REPEATS, 1))
        for position, column in enumerate(batch):
            for repeat in range(PERMUTATION_REPEATS):
                block = (position * PERMUTATION_REPEATS + repeat) * rows
                copies[block : block + rows, column] = matrix[rng.permutation(rows), column]
        scores = model.predict_proba(copies)[:, 1].reshape(len(batch), PERMUTATION_REPEATS, rows)
        for position, column in enumerate(batch):
            drops[column] = np.mean([reference - roc_auc(labels, shuffled) for shuffled in scores[position]])
    return drops


def separability(sample: EncodedSample, seed: int, *, importances: bool = True) -> Separability:
    """Cross-fit the classifier; return the AUROC with its p-value, the coefficient and importances.

    Expects at least ``FOLDS`` rows per side and at least one feature.

    The model (OpenMP) and numpy (BLAS) run on one thread: with the second core busy (another
    window, the server's own work) a two-thread fit was measured to stall for seconds instead
    of taking milliseconds. Parallelism belongs across windows.
    """
    with threadpool_limits(limits=1):
        return _separability(sample, seed, importances)


def _separability(sample: EncodedSample, seed: int, importances: bool) -> Separability:
    rng = np.random.default_rng(seed)
    labels = sample.labels
    matrix = _discretised(sample)
    weights = _balanced_weights(labels)
    predicted = np.zeros(len(labels), dtype=np.int64)
    width = sample.matrix.shape[1]
    u_total = mean_total = variance_total = 0.0
    drops = np.zeros(width)
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    per_fold_rows = max(50, IMPORTANCE_ROWS // FOLDS)
    for train, held_out in folds.split(np.zeros(len(labels)), labels):
        model = _model(seed, len(train), width, sample.categorical)
        model.fit(matrix[train], labels[train], sample_weight=weights[train])
        probabilities = model.predict_proba(matrix[held_out])[:, 1]
        u, mean, variance = mann_whitney(labels[held_out], probabilities)
        u_total, mean_total, variance_total = u_total + u, mean_total + mean, variance_total + variance
        predicted[held_out] = (probabilities >= 0.5).astype(np.int64)
        if importances:
            drops += _permutation_drop(model, matrix[held_out], labels[held_out], rng, per_fold_rows)
    auroc = u_total / (2 * mean_total) if mean_total > 0 else 0.5
    z = (u_total - mean_total) / math.sqrt(variance_total) if variance_total > 0 else 0.0
    clipped = np.clip(drops, 0.0, None)
    total = float(clipped.sum())
    # Nothing helped the classifier (no drift): no feature is to blame more than another.
    even = np.full(len(sample.features), 1.0 / len(sample.features))
    shares = clipped / total if total > 0 else even
    return Separability(
        auroc=float(auroc),
        p_value=float(norm.sf(z)),
        z=float(z),
        evidence=max(0.0, -float(norm.logsf(z)) / math.log(10.0)),
        coefficient=max(0.0, weighted_mcc(labels, predicted)),
        importances={name: float(share) for name, share in zip(sample.features, shares, strict=True)},
    )
