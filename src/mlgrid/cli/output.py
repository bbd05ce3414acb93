"""``-o json|table``: how command results are printed.

``json`` (the default, as in ``az``) prints the server's JSON as it came, indented, numbers
digit for digit, so scripts can pipe it into ``jq``. ``table`` prints a Rich table: a list of
records gets one row each with the columns the command chose (or the record's scalar fields);
a single record gets one row per field, nested fields flattened into dotted names
(``properties.filter.subjectBeginsWith``).

Tables are for people, so they fit the terminal: when the columns' natural widths do not fit,
the columns of least value (the highest ``drop_order``; by default the rightmost) are left out
and named in the caption, until the rest fits or only the two of most value remain (those then
fold).
``--wide`` keeps every column. Timestamps (ISO 8601 with an offset) are shown in local time as
``YYYY-MM-DD HH:MM:SS``; JSON output is never changed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any, Final

import orjson
import typer
from rich.console import Console
from rich.table import Table

from mlgrid.cli.command import output_format, wide_output

#: Columns a narrow table keeps whatever the width (the first ones of the table).
MIN_COLUMNS: Final = 2
#: Rich's cost per column (one space of padding each side and a border) and per table.
_COLUMN_OVERHEAD: Final = 3
_TABLE_OVERHEAD: Final = 1
_TIMESTAMP: Final = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$")


@dataclass(frozen=True)
class Column:
    """One table column: a header, the dotted path of the value in each record (or several
    paths, the first one present wins), and optionally how to write it (default: :func:`cell`).

    ``drop_order`` says which columns a narrow terminal gives up first: the highest number
    goes first; ``None`` means "by position" (rightmost first)."""

    header: str
    path: str | tuple[str, ...]
    format: Callable[[Any], str] | None = None
    drop_order: int | None = None

    def text(self, record: Any) -> str:
        paths = (self.path,) if isinstance(self.path, str) else self.path
        value = next((v for v in (lookup(record, p) for p in paths) if v is not None), None)
        return (self.format or cell)(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return str(value)


def _big_integers_verbatim(value: Any) -> Any:
    """``value`` with integers beyond 64 bits (which orjson refuses) as verbatim fragments."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return orjson.Fragment(str(value))
    if isinstance(value, dict):
        return {key: _big_integers_verbatim(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_big_integers_verbatim(item) for item in value]
    return value


def plain(data: Any) -> Any:
    """The SDK's typed records (read-only mappings over the answer) as the JSON objects they
    read as, so that output shows the server's answer and not the record's fields."""
    if isinstance(data, Mapping) and not isinstance(data, dict):
        return dict(data)
    if isinstance(data, list):
        return [plain(item) for item in data]
    return data


def to_json(data: Any, *, indent: bool = True) -> str:
    """JSON text with exact numbers (``Decimal`` written verbatim, integers of any size)."""
    data = plain(data)
    option = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS if indent else orjson.OPT_NON_STR_KEYS
    try:
        return orjson.dumps(data, default=_json_default, option=option).decode()
    except TypeError:  # an integer beyond 64 bits: JSON allows it, orjson does not
        return orjson.dumps(_big_integers_verbatim(data), default=_json_default, option=option).decode()


def lookup(record: Any, path: str) -> Any:
    """The value at a dotted path (``properties.destination.endpointType``), ``None`` if absent."""
    value = record
    for segment in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(segment)
    return value


def local_time(text: str, tz: tzinfo | None = None) -> str:
    """An ISO 8601 timestamp with an offset as ``YYYY-MM-DD HH:MM:SS`` in ``tz`` (default: the
    machine's local zone); any other text unchanged. Sub-second digits are dropped: a table is
    read by people, the JSON output keeps them."""
    if not _TIMESTAMP.match(text):
        return text
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def cell(value: Any) -> str:
    """A table cell: scalars as text (timestamps in local time), lists of scalars
    comma-separated, the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return local_time(value)
    if isinstance(value, int | Decimal | float):
        return str(value)
    if isinstance(value, list | tuple) and all(
        isinstance(v, str | int | float | Decimal) and not isinstance(v, bool) for v in value
    ):
        return ", ".join(str(v) for v in value)
    return to_json(value, indent=False)


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects become dotted keys; lists and scalars stay as values."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def default_columns(records: Sequence[Mapping[str, Any]]) -> list[Column]:
    """The scalar top-level fields of the records, in first-seen order."""
    seen: dict[str, None] = {}
    for record in records:
        for key, value in record.items():
            if not isinstance(value, Mapping | list):
                seen.setdefault(key, None)
    return [Column(key, key) for key in seen]


def table_rows(records: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> list[list[str]]:
    return [[column.text(record) for column in columns] for record in records]


def fit_columns(headers: Sequence[str], rows: Sequence[Sequence[str]], drop_orders: Sequence[int],
                width: int) -> list[int]:
    """The indexes of the columns to keep so that the table's natural width fits ``width``.

    Columns are given up in ``drop_orders`` order (highest first) until the rest fits or only
    :data:`MIN_COLUMNS` remain. Pure: unit-tested without a terminal."""
    natural = [
        max([len(header), *(len(row[i]) for row in rows)]) + _COLUMN_OVERHEAD
        for i, header in enumerate(headers)
    ]
    kept = list(range(len(headers)))
    for index in sorted(kept, key=lambda i: (-drop_orders[i], -i)):
        if sum(natural[i] for i in kept) + _TABLE_OVERHEAD <= width or len(kept) <= MIN_COLUMNS:
            break
        kept.remove(index)
    return kept


def build_table(
    data: Any, columns: Sequence[Column] | None = None, *, width: int | None = None, wide: bool = False
) -> Table:
    """The Rich table for a list of records or for one record; with a ``width`` (and not
    ``wide``), low-value columns are left out until the table fits (see the module docstring)."""
    if isinstance(data, Mapping):
        table = Table(show_header=True, header_style="bold")
        table.add_column("field")
        table.add_column("value", overflow="fold")
        for key, value in flatten(data).items():
            table.add_row(key, cell(value))
        return table
    records = [r if isinstance(r, Mapping) else {"value": r} for r in (data or [])]
    chosen = list(columns) if columns else default_columns(records)
    rows = table_rows(records, chosen)
    kept = list(range(len(chosen)))
    if width is not None and not wide:
        orders = [c.drop_order if c.drop_order is not None else i for i, c in enumerate(chosen)]
        kept = fit_columns([c.header for c in chosen], rows, orders, width)
    hidden = [chosen[i].header for i in range(len(chosen)) if i not in kept]
    caption = f"not shown (too narrow): {', '.join(hidden)}; -o table --wide shows all" if hidden else None
    table = Table(show_header=True, header_style="bold", caption=caption, caption_justify="left")
    for i in kept:
        table.add_column(chosen[i].header, overflow="fold")
    for row in rows:
        table.add_row(*(row[i] for i in kept))
    return table


def console(stderr: bool = False) -> Console:
    """A Rich console on the current stdout/stderr (tests swap them per invocation)."""
    stream = typer.get_text_stream("stderr" if stderr else "stdout")
    return Console(file=stream, soft_wrap=False, highlight=False)


def render(ctx: typer.Context, data: Any, columns: Sequence[Column] | None = None) -> None:
    """Print a command's result in the chosen output format (nothing for ``None``)."""
    if data is None:
        return
    data = plain(data)
    if output_format(ctx) == "json":
        typer.echo(to_json(data))
    else:
        out = console()
        out.print(build_table(data, columns, width=out.width, wide=wide_output(ctx)))
