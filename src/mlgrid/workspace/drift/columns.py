"""Which columns a drift monitor analyses, and as what (SPEC §9, column typing).

The rules are deliberately simple so a user can predict them from the data alone:

* booleans are categorical;
* a string (object / ``str`` / ``category``) column is categorical when it has fewer than
  100 distinct values **and** fewer than 5 % of its rows are distinct values; otherwise it is
  free text and is skipped (a classifier cannot learn anything stable from near-unique strings,
  and a frequency vector over thousands of one-off values is meaningless);
* a numeric column is analysed unless more than 15 % of its values are null (SPEC §9: its
  distribution would then describe a small, possibly biased subset of rows); below that its
  null share is tested as a feature of its own beside the distribution of its values, and the
  classifier reads the remaining nulls natively;
* the dataset's timestamp column defines the windows and is never a feature; other datetime
  columns are skipped too (their values move with time by construction, so they would always
  "drift").

Typing is done on one frame (the monitor types the baseline, so every window of the target is
compared on the same features and coefficients stay comparable across windows).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import pandas as pd
from pandas.api import types as pdtypes

MAX_CATEGORIES = 100
"""A categorical column has fewer distinct (non-null) values than this."""

MAX_DISTINCT_SHARE = 0.05
"""... and fewer than this share of its rows are distinct values."""

MAX_NUMERIC_NULL_SHARE = 0.15
"""A numeric column with a larger share of nulls is skipped (SPEC §9)."""



class ColumnKind(enum.StrEnum):
    """What a column is, as far as drift is concerned."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    TEXT = "text"
    TIMESTAMP = "timestamp"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class ColumnTyping:
    """The kind of one column and, when it is not analysed, why not.

    ``kind`` says what the column looks like even when it is skipped (a numeric column with
    too many nulls is still ``numeric``), so the reason can be shown next to it.
    """

    kind: ColumnKind
    skip_reason: str | None = None

    @property
    def usable(self) -> bool:
        """True when the column takes part in the drift computation."""
        return self.skip_reason is None


_NUMERIC_INFERRED = {"integer", "floating", "mixed-integer-float", "decimal"}
_DATETIME_INFERRED = {"datetime", "datetime64", "date", "time", "timedelta", "timedelta64", "period"}


def type_columns(frame: pd.DataFrame, timestamp_column: str | None = None) -> dict[str, ColumnTyping]:
    """Type every column of ``frame`` (in column order); see the module docstring for the rules.

    Column names are used as strings. A name that occurs twice is skipped: which of the two
    columns a monitor's ``features`` means would be a guess.
    """
    names = [str(name) for name in frame.columns]
    if len(set(names)) != len(names):
        duplicated = {name for name in names if names.count(name) > 1}
        frame = frame.loc[:, [name not in duplicated for name in names]]
        typing = type_columns(frame, timestamp_column=timestamp_column)
        skip = ColumnTyping(ColumnKind.UNSUPPORTED, "duplicate column name")
        return {name: typing.get(name, skip) for name in dict.fromkeys(names)}
    frame = frame.set_axis(names, axis="columns")
    return {name: type_column(frame[name], is_timestamp=name == timestamp_column) for name in names}


def type_column(series: pd.Series, *, is_timestamp: bool = False) -> ColumnTyping:
    """Type one column."""
    if is_timestamp:
        return ColumnTyping(ColumnKind.TIMESTAMP, "timestamp column (it defines the windows)")
    dtype = series.dtype
    if pdtypes.is_bool_dtype(dtype):
        return _categorical_or_empty(series)
    if pdtypes.is_datetime64_any_dtype(dtype) or pdtypes.is_timedelta64_dtype(dtype):
        return ColumnTyping(ColumnKind.UNSUPPORTED, "datetime column (only used as a timestamp)")
    if isinstance(dtype, pd.PeriodDtype | pd.IntervalDtype) or pdtypes.is_complex_dtype(dtype):
        return ColumnTyping(ColumnKind.UNSUPPORTED, f"unsupported column type {dtype}")
    if pdtypes.is_numeric_dtype(dtype):
        return _numeric(series)
    return _object_column(series)


def _object_column(series: pd.Series) -> ColumnTyping:
    """Strings, categories and object columns: look at the values to decide."""
    non_null = series.dropna()
    if len(series) > 0 and len(non_null) == 0:
        return ColumnTyping(ColumnKind.UNSUPPORTED, "every value is null")
    try:
        inferred = pdtypes.infer_dtype(non_null, skipna=True)
    except TypeError:
        inferred = "mixed"
    if inferred == "boolean":
        return _categorical_or_empty(series)
    if inferred in _NUMERIC_INFERRED:
        return _numeric(series)
    if inferred in _DATETIME_INFERRED:
        return ColumnTyping(ColumnKind.UNSUPPORTED, "datetime values (only used as a timestamp)")
    if len(series) == 0:
        return ColumnTyping(ColumnKind.UNSUPPORTED, "no rows to type the column from")
    try:
        distinct = int(non_null.nunique())
    except TypeError:
        return ColumnTyping(ColumnKind.UNSUPPORTED, "values are not hashable (lists or mappings)")
    share = distinct / len(series)
    if distinct < MAX_CATEGORIES and share < MAX_DISTINCT_SHARE:
        return ColumnTyping(ColumnKind.CATEGORICAL)
    return ColumnTyping(
        ColumnKind.TEXT,
        f"text: {distinct} distinct values ({share:.1%} of rows); categorical needs fewer than "
        f"{MAX_CATEGORIES} and under {MAX_DISTINCT_SHARE:.0%} of rows",
    )


def _categorical_or_empty(series: pd.Series) -> ColumnTyping:
    if len(series) == 0:
        return ColumnTyping(ColumnKind.CATEGORICAL, "no rows to type the column from")
    if series.isna().all():
        return ColumnTyping(ColumnKind.CATEGORICAL, "every value is null")
    return ColumnTyping(ColumnKind.CATEGORICAL)


def _numeric(series: pd.Series) -> ColumnTyping:
    if len(series) == 0:
        return ColumnTyping(ColumnKind.NUMERIC, "no rows to type the column from")
    values = pd.to_numeric(series, errors="coerce")
    if values.isna().all():
        return ColumnTyping(ColumnKind.NUMERIC, "every value is null")
    null_share = float(values.isna().mean())
    if null_share > MAX_NUMERIC_NULL_SHARE:
        return ColumnTyping(
            ColumnKind.NUMERIC,
            f"{null_share:.1%} nulls; numeric columns with more than {MAX_NUMERIC_NULL_SHARE:.0%} "
            "nulls are skipped",
        )
    return ColumnTyping(ColumnKind.NUMERIC)
