"""The domain classifier behind the drift coefficient.

Idea: if a classifier can tell baseline rows from target-window rows on rows it has not seen,
the two samples come from different distributions, and *how well* it can tell them apart is a
measure of how different they are. We use the Matthews correlation coefficient (MCC) of its
held-out predictions on a balanced sample: 0 means "no better than chance", 1 means "perfectly
separable", and it is not flattered by class imbalance. ``max(0, MCC)`` is the coefficient.

Choices, and why:

* **Model**: scikit-learn's ``HistGradientBoostingClassifier`` with depth-2 trees, 20
  boosting rounds and a floor on leaf size. It handles nulls and categorical codes natively,
  trains in milliseconds on thousands of rows, and is deterministic for a fixed seed. A small
  model matters more than it seems: with one shifted feature among ten, a default-sized model
  spends its capacity fitting noise in the nine others and under-reports the drift (measured:
  about 0.15 instead of the achievable 0.20 for a 0.5-sd mean shift, and about 0.27 instead of
  0.38 when a quarter of a 1,000-row window falls in a new category). With few, shallow trees
  the held-out MCC comes close to the best any classifier can reach on our synthetic shifts,
  while depth 2 still sees pairwise interactions (a change in how two features relate).
* **Held-out rows**: a stratified 70/30 split when each side has at least
  ``CROSS_FIT_BELOW`` rows; below that, stratified 5-fold cross-fitting, so every row gets a
  held-out prediction. With few rows a single 30 % split would score the MCC on a few dozen rows
  and its noise alone would cross the 0.2 threshold too often (false alarms on small windows).
* **One thread** per computation (see ``separability``).
* **Contributions**: permutation importance on the held-out rows (drop in ROC AUC when one
  feature's values are shuffled), clipped at zero and normalised to sum to 1. Impurity
  importance was rejected: it is computed on training rows, so it rewards the features the
  model *overfits*, and it favours continuous, high-cardinality columns over a categorical
  column that really moved. Permutation importance on unseen rows measures what the model
  actually uses to separate the two samples. AUC rather than MCC is the score because it uses
  the predicted probabilities, so the importances are smooth instead of jumping in steps of one
  row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import matthews_corrcoef
from sklearn.model_selection import StratifiedKFold, train_test_split
from threadpoolctl import threadpool_limits

from mlgrid.workspace.drift.columns import ColumnKind
from mlgrid.workspace.drift.metrics import category_labels, numeric_values

CROSS_FIT_BELOW = 1000
"""Rows per side below which the coefficient is cross-fitted (5 folds) instead of one split."""

CROSS_FIT_FOLDS = 5
HELD_OUT_SHARE = 0.3
PERMUTATION_REPEATS = 2
IMPORTANCE_ROWS = 2000
"""Held-out rows (per fold) the permutation importance uses at most: enough to rank features,
and it bounds the shuffled copies scored to ``IMPORTANCE_ROWS x features x repeats`` rows."""

_PREDICT_BATCH_ROWS = 200_000

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
    """How well the classifier separated the two samples, and which features it used."""

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


def _model(seed: int, train_rows: int, categorical: np.ndarray) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(
        max_depth=2,
        learning_rate=0.1,
        max_iter=20,
        min_samples_leaf=max(5, min(40, train_rows // 25)),
        l2_regularization=1.0,
        categorical_features=categorical if categorical.any() else None,
        early_stopping=False,
        random_state=seed,
    )


def _splits(labels: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    per_side = int(min(np.sum(labels == 0), np.sum(labels == 1)))
    if per_side < CROSS_FIT_BELOW:
        folds = StratifiedKFold(n_splits=CROSS_FIT_FOLDS, shuffle=True, random_state=seed)
        return list(folds.split(np.zeros(len(labels)), labels))
    indices = np.arange(len(labels))
    train, held_out = train_test_split(indices, test_size=HELD_OUT_SHARE, stratify=labels, random_state=seed)
    return [(np.sort(train), np.sort(held_out))]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the rank-sum (Mann–Whitney) identity, ties averaged.

    Equivalent to ``sklearn.metrics.roc_auc_score`` for binary labels, without its input
    validation, which dominated the cost when called once per shuffled feature.
    """
    positives = labels == 1
    n_pos = int(positives.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = rankdata(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _permutation_drop(
    model: HistGradientBoostingClassifier,
    matrix: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Mean drop in held-out ROC AUC when each column is shuffled, one column at a time.

    Shuffled copies are stacked and scored in as few ``predict_proba`` calls as memory allows:
    one call on many rows costs far less than many calls on few rows.
    """
    if len(matrix) > IMPORTANCE_ROWS:
        keep = np.sort(rng.choice(len(matrix), IMPORTANCE_ROWS, replace=False))
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


def separability(sample: EncodedSample, seed: int) -> Separability:
    """Train on part of the rows, predict the rest, return ``max(0, MCC)`` and importances.

    Expects a balanced sample (as many baseline as target rows), at least ``CROSS_FIT_FOLDS``
    rows per side and at least one feature.

    The model (OpenMP) and numpy (BLAS) run on one thread. The samples are small (thousands of
    rows), where thread start-up and barriers cost more than they save, and with the second
    core busy (another window, the server's own work) a two-thread fit was measured to stall
    for seconds instead of taking milliseconds. Parallelism belongs across windows.
    """
    with threadpool_limits(limits=1):
        return _separability(sample, seed)


def _separability(sample: EncodedSample, seed: int) -> Separability:
    rng = np.random.default_rng(seed)
    predictions = np.full(len(sample.labels), -1, dtype=np.int64)
    drops = np.zeros(sample.matrix.shape[1])
    for train, held_out in _splits(sample.labels, seed):
        model = _model(seed, len(train), sample.categorical)
        model.fit(sample.matrix[train], sample.labels[train])
        probabilities = model.predict_proba(sample.matrix[held_out])[:, 1]
        predictions[held_out] = (probabilities >= 0.5).astype(np.int64)
        weight = len(held_out) / len(sample.labels)
        drops += weight * _permutation_drop(model, sample.matrix[held_out], sample.labels[held_out], rng)
    scored = predictions >= 0
    mcc = float(matthews_corrcoef(sample.labels[scored], predictions[scored]))
    clipped = np.clip(drops, 0.0, None)
    total = float(clipped.sum())
    # Nothing helped the classifier (no drift): no feature is to blame more than another.
    even = np.full(len(sample.features), 1.0 / len(sample.features))
    shares = clipped / total if total > 0 else even
    return Separability(
        coefficient=max(0.0, mcc),
        importances={name: float(share) for name, share in zip(sample.features, shares, strict=True)},
    )
