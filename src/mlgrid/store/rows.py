"""One way a stored row becomes a record: by the record's field types.

Every ``store/`` module reads rows into frozen dataclasses. The conversions are always the
same and follow the field's declared type - epoch seconds to an aware UTC ``datetime``
(``datetime | None`` keeps ``None``), and ``int``/``float``/``bool`` coerced because SQLite and
PostgreSQL hand back different Python types for the same column (``0``/``1`` for a boolean,
``Decimal`` for a numeric). ``to_record`` applies them from a plan computed once per record
class; a column named differently from its field (``tags`` for ``tags_json``) and a value that
needs more than a cast (a JSON column parsed) are passed by the caller.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import fields
from datetime import datetime
from typing import Any, TypeVar, get_type_hints

from mlgrid.store.clock import from_epoch, utc_from_epoch

T = TypeVar("T")

Converter = Callable[[Any], Any]


def _optional(convert: Converter) -> Converter:
    def optional(value: Any) -> Any:
        return None if value is None else convert(value)

    return optional


_BY_TYPE: dict[object, Converter] = {
    datetime: utc_from_epoch,
    datetime | None: from_epoch,
    int: int,
    int | None: _optional(int),
    float: float,
    float | None: _optional(float),
    bool: bool,
}


@functools.cache
def _plan(cls: type[Any]) -> tuple[tuple[str, Converter | None], ...]:
    hints = get_type_hints(cls)
    return tuple((f.name, _BY_TYPE.get(hints[f.name])) for f in fields(cls) if f.init)


def to_record(
    cls: type[T], row: Any, *, columns: Mapping[str, str] | None = None, **values: Any
) -> T:
    """``cls`` built from ``row`` (a SQLAlchemy row): each field from the column of its name,
    or the one ``columns`` names for it, converted by its type; ``values`` are used as given."""
    mapping = row._mapping
    arguments = []
    plan: tuple[tuple[str, Converter | None], ...] = _plan(cls)  # type: ignore[arg-type]
    for name, convert in plan:
        if name in values:
            arguments.append(values[name])
            continue
        value = mapping[columns.get(name, name) if columns else name]
        arguments.append(value if convert is None else convert(value))
    return cls(*arguments)
