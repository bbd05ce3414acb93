"""Column typing for drift (SPEC §9): which columns are analysed, and as what."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlgrid.workspace.drift.columns import ColumnKind, ColumnTyping, type_column, type_columns


def _strings(distinct: int, rows: int) -> pd.Series:
    return pd.Series([f"value-{i % distinct}" for i in range(rows)])


def test_string_column_with_99_distinct_values_in_many_rows_is_categorical() -> None:
    assert type_column(_strings(99, 10_000)) == ColumnTyping(ColumnKind.CATEGORICAL)


def test_string_column_with_100_distinct_values_is_text_and_skipped() -> None:
    typing = type_column(_strings(100, 10_000))
    assert typing.kind is ColumnKind.TEXT
    assert not typing.usable
    assert typing.skip_reason is not None and "100 distinct" in typing.skip_reason


def test_distinct_values_must_be_under_five_percent_of_rows() -> None:
    # 40 distinct values: exactly 5 % of 800 rows is text, a bit less than 5 % of 801 is categorical
    assert type_column(_strings(40, 800)).kind is ColumnKind.TEXT
    assert type_column(_strings(40, 801)).kind is ColumnKind.CATEGORICAL


def test_nulls_do_not_count_as_distinct_values() -> None:
    values = [f"v{i % 3}" for i in range(100)] + [None] * 100
    assert type_column(pd.Series(values, dtype=object)).kind is ColumnKind.CATEGORICAL


@pytest.mark.parametrize("dtype", [object, "string", "category"])
def test_every_string_flavour_follows_the_same_rule(dtype: object) -> None:
    assert type_column(_strings(3, 200).astype(dtype)).kind is ColumnKind.CATEGORICAL  # type: ignore[call-overload]
    assert type_column(_strings(200, 200).astype(dtype)).kind is ColumnKind.TEXT  # type: ignore[call-overload]


def test_numeric_column_with_exactly_15_percent_nulls_is_kept() -> None:
    values = np.arange(100, dtype=float)
    values[:15] = np.nan
    assert type_column(pd.Series(values)) == ColumnTyping(ColumnKind.NUMERIC)


def test_numeric_column_with_more_than_15_percent_nulls_is_skipped() -> None:
    values = np.arange(1000, dtype=float)
    values[:151] = np.nan
    typing = type_column(pd.Series(values))
    assert typing.kind is ColumnKind.NUMERIC
    assert typing.skip_reason is not None and "15" in typing.skip_reason


def test_an_all_null_numeric_column_is_skipped() -> None:
    typing = type_column(pd.Series([np.nan] * 10, dtype=float))
    assert typing.kind is ColumnKind.NUMERIC
    assert typing.skip_reason == "every value is null"


def test_nullable_integers_are_numeric() -> None:
    assert type_column(pd.Series([1, 2, None, 4] * 25, dtype="Int64")).kind is ColumnKind.NUMERIC


def test_integer_codes_stay_numeric_however_few_values() -> None:
    assert type_column(pd.Series([0, 1, 2] * 100)).kind is ColumnKind.NUMERIC


def test_object_column_holding_numbers_is_numeric() -> None:
    assert type_column(pd.Series([1, 2.5, 3, None] * 50, dtype=object)).kind is ColumnKind.NUMERIC


def test_booleans_are_categorical_even_in_a_few_rows() -> None:
    # 2 distinct values in 10 rows is 20 % distinct: the string rule would call it text
    assert type_column(pd.Series([True, False] * 5)).kind is ColumnKind.CATEGORICAL
    assert type_column(pd.Series([True, None, False] * 4, dtype="boolean")).kind is ColumnKind.CATEGORICAL
    assert type_column(pd.Series([True, False, None] * 4, dtype=object)).kind is ColumnKind.CATEGORICAL


def test_the_timestamp_column_is_excluded() -> None:
    frame = pd.DataFrame({"ts": pd.date_range("2024-01-01", periods=10, tz="UTC"), "x": range(10)})
    typing = type_columns(frame, timestamp_column="ts")
    assert typing["ts"].kind is ColumnKind.TIMESTAMP
    assert not typing["ts"].usable
    assert typing["x"].usable


def test_a_timestamp_column_given_as_strings_is_excluded_too() -> None:
    frame = pd.DataFrame({"when": ["2024-01-01T00:00:00Z"] * 10, "x": range(10)})
    assert type_columns(frame, timestamp_column="when")["when"].kind is ColumnKind.TIMESTAMP


def test_other_datetime_columns_are_skipped() -> None:
    typing = type_column(pd.Series(pd.date_range("2024-01-01", periods=10)))
    assert typing.kind is ColumnKind.UNSUPPORTED
    assert not typing.usable


def test_all_null_and_unhashable_columns_are_skipped_with_a_reason() -> None:
    assert type_column(pd.Series([None] * 10, dtype=object)).skip_reason == "every value is null"
    unhashable = type_column(pd.Series([[1], [2]] * 5))
    assert unhashable.kind is ColumnKind.UNSUPPORTED
    assert unhashable.skip_reason is not None


def test_empty_frame_types_every_column_without_using_it() -> None:
    frame = pd.DataFrame({"x": pd.Series([], dtype=float), "s": pd.Series([], dtype=object)})
    typing = type_columns(frame)
    assert typing["x"].kind is ColumnKind.NUMERIC
    assert not typing["x"].usable
    assert not typing["s"].usable


def test_type_columns_keeps_column_order() -> None:
    frame = pd.DataFrame({"b": [1.0] * 5, "a": ["x"] * 5, "c": [True] * 5})
    assert list(type_columns(frame)) == ["b", "a", "c"]


def test_column_names_are_strings_and_duplicates_are_skipped() -> None:
    frame = pd.DataFrame([[1.0, 2.0, 3.0]] * 5, columns=[0, "x", "x"])
    typing = type_columns(frame)
    assert list(typing) == ["0", "x"]
    assert typing["0"].kind is ColumnKind.NUMERIC
    assert typing["x"].skip_reason == "duplicate column name"
