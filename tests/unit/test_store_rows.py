"""``store.rows.to_record``: a row becomes a record by the record's field types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from mlgrid.store.rows import to_record


@dataclass(frozen=True)
class Record:
    name: str
    count: int
    ratio: float
    enabled: bool
    created_at: datetime
    finished_at: datetime | None
    score: float | None
    tags_json: str
    extra: list[str] | None


def row(**columns: Any) -> Any:
    """What SQLAlchemy hands back, as far as ``to_record`` looks: ``row._mapping``."""
    return SimpleNamespace(_mapping=columns)


BASE = {"name": "a", "count": 3, "ratio": Decimal("0.5"), "enabled": 1, "created_at": 0.0,
        "finished_at": None, "score": None, "tags": "{}", "extra": None}


def test_fields_are_converted_by_their_type() -> None:
    record = to_record(Record, row(**BASE), columns={"tags_json": "tags"})
    assert record == Record("a", 3, 0.5, True, datetime(1970, 1, 1, tzinfo=UTC), None, None, "{}", None)
    assert type(record.ratio) is float and record.enabled is True
    assert record.created_at.tzinfo is UTC


def test_optional_values_are_converted_when_present() -> None:
    record = to_record(
        Record, row(**BASE | {"finished_at": 60.0, "score": Decimal("1.25")}), columns={"tags_json": "tags"}
    )
    assert record.finished_at == datetime(1970, 1, 1, 0, 1, tzinfo=UTC)
    assert record.score == 1.25


def test_given_values_are_used_as_they_are() -> None:
    record = to_record(Record, row(**BASE), columns={"tags_json": "tags"}, extra=["x"], count=7)
    assert record.extra == ["x"] and record.count == 7
