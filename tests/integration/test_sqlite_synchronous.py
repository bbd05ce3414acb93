"""``sqlite_synchronous``: every SQLite connection of the server runs the chosen level."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from mlgrid.config import Settings
from mlgrid.errors import InvalidField
from mlgrid.store.database import Database

LEVELS = {"normal": 1, "full": 2}  # what PRAGMA synchronous reads back


@pytest.mark.parametrize("level", ["normal", "full"])
def test_pooled_and_writer_connections_use_the_setting(tmp_path: Path, level: str) -> None:
    async def scenario() -> tuple[int, int]:
        db = Database.connect(f"sqlite:///{tmp_path / 'x.db'}", sqlite_synchronous=level)
        try:
            async with db.read() as conn:
                pooled = (await conn.execute(text("PRAGMA synchronous"))).scalar_one()
            writer = await db.write_sqlite(lambda raw: raw.execute("PRAGMA synchronous").fetchone()[0])
            return int(pooled), int(writer)
        finally:
            await db.close()

    assert asyncio.run(scenario()) == (LEVELS[level], LEVELS[level])


def test_the_setting_accepts_normal_and_full_only() -> None:
    assert Settings.from_sources({"sqlite_synchronous": "FULL"}, {}).sqlite_synchronous == "full"
    assert Settings.from_sources({}, {"MLGRID_SQLITE_SYNCHRONOUS": "normal"}).sqlite_synchronous == "normal"
    with pytest.raises(InvalidField) as refused:
        Settings.from_sources({"sqlite_synchronous": "off"}, {})
    assert refused.value.field_name == "sqlite_synchronous"
