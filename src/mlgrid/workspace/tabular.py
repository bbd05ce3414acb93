"""Reading registered tabular files (CSV, Parquet) and checking a timestamp column.

Blocking pandas work: the services call it through ``asyncio.to_thread``. Timestamp columns
must hold ISO 8601 date-times (strings such as ``2024-05-01``, ``2024-05-01T10:00:00Z`` or
``2024-05-01 10:00:00+02:00``) or be a date-time column already (Parquet); numbers are
refused because any integer would "parse" as nanoseconds since 1970.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

CSV = "csv"
PARQUET = "parquet"
_PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class TableSummary:
    file_format: str
    columns: list[dict[str, str]]
    row_count: int


def detect_format(filename: str, head: bytes) -> str:
    """By extension (``.csv``, ``.parquet``/``.pq``), else by Parquet's magic bytes, else CSV."""
    lowered = filename.lower()
    if lowered.endswith((".parquet", ".pq")):
        return PARQUET
    if lowered.endswith((".csv", ".txt")):
        return CSV
    return PARQUET if head.startswith(_PARQUET_MAGIC) else CSV


def read_table(path: Path, file_format: str) -> pd.DataFrame:
    """The file as a frame; ``ValueError`` with a readable reason when it is not a table."""
    import pandas as pd  # imported on first use: the server starts without paying for it

    try:
        if file_format == PARQUET:
            return pd.read_parquet(path)
        return pd.read_csv(path, low_memory=False)
    except pd.errors.EmptyDataError as exc:
        raise ValueError("the file is empty") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise ValueError(f"not a readable {file_format} file: {exc}") from exc
    except Exception as exc:  # pyarrow raises its own hierarchy for corrupt Parquet
        raise ValueError(f"not a readable {file_format} file: {exc}") from exc


def parse_timestamps(series: pd.Series) -> pd.Series:
    """The column as UTC date-times; ``ValueError`` saying why it is not a timestamp column."""
    import pandas as pd
    from pandas.api import types as ptypes

    if ptypes.is_datetime64_any_dtype(series.dtype):
        parsed = pd.to_datetime(series, utc=True)
    elif ptypes.is_bool_dtype(series.dtype) or ptypes.is_numeric_dtype(series.dtype):
        raise ValueError(f"holds {series.dtype} values, not date-times")
    else:
        non_null = series.dropna()
        if non_null.empty:
            raise ValueError("has no values")
        if not all(isinstance(v, str) for v in non_null):
            raise ValueError("holds values that are not date-time strings")
        try:
            parsed = pd.to_datetime(series, utc=True, format="ISO8601")
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"does not parse as ISO 8601 date-times ({exc})") from exc
    if parsed.dropna().empty:
        raise ValueError("has no values")
    return parsed


def summarize(frame: pd.DataFrame, file_format: str) -> TableSummary:
    columns = [{"name": str(name), "dtype": str(dtype)} for name, dtype in frame.dtypes.items()]
    return TableSummary(file_format=file_format, columns=columns, row_count=len(frame))


def inspect(path: Path, file_format: str, timestamp_column: str | None) -> tuple[TableSummary, str | None]:
    """Summary of the file and, when the timestamp column is wrong, the reason (else None)."""
    frame = read_table(path, file_format)
    if len(frame.columns) == 0:
        raise ValueError("the file has no columns")
    summary = summarize(frame, file_format)
    if timestamp_column is None:
        return summary, None
    if timestamp_column not in frame.columns:
        names = ", ".join(repr(str(c)) for c in list(frame.columns)[:20])
        return summary, f"column {timestamp_column!r} does not exist (columns: {names})"
    try:
        parse_timestamps(frame[timestamp_column])
    except ValueError as exc:
        return summary, f"column {timestamp_column!r} {exc}"
    return summary, None


def load(path: Path, file_format: str, timestamp_column: str | None) -> pd.DataFrame:
    """A registered dataset as a frame, its timestamp column parsed to UTC date-times."""
    frame = read_table(path, file_format)
    if timestamp_column is not None and timestamp_column in frame.columns:
        frame[timestamp_column] = parse_timestamps(frame[timestamp_column])
    return frame
