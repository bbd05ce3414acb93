"""Migrations replayed on an empty database build exactly the schema of ``store/tables.py``.

On a fresh SQLite file and a fresh PostgreSQL database: the tables, columns (name and
nullability), primary keys, unique constraints and indexes that SQLAlchemy inspection finds
after ``migrate.upgrade`` are those of ``metadata``; Alembic's own comparison finds no
difference (types included); and upgrading again changes nothing and keeps the data.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import UniqueConstraint, inspect
from sqlalchemy.engine import Connection
from tests.support.services import fresh_pg_database

from mlgrid.store import meta as meta_store
from mlgrid.store import migrate
from mlgrid.store.database import Database
from mlgrid.store.tables import metadata


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nobody has touched: the session-wide PostgreSQL one is already migrated."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with fresh_pg_database("mlgrid_migrations") as url:
        yield url


def _schema(connection: Connection) -> dict[str, Any]:
    """What inspection sees, in a form that compares across runs."""
    inspector = inspect(connection)
    schema: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        schema[table] = {
            "columns": {c["name"]: bool(c["nullable"]) for c in inspector.get_columns(table)},
            "primary_key": sorted(inspector.get_pk_constraint(table)["constrained_columns"]),
            "unique": sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)
            ),
        }
    return schema


def _expected_from_metadata() -> dict[str, Any]:
    expected: dict[str, Any] = {}
    for name, table in metadata.tables.items():
        unique = [
            tuple(c.name for c in constraint.columns)
            for constraint in table.constraints
            if isinstance(constraint, UniqueConstraint)
        ]
        expected[name] = {
            "columns": {c.name: bool(c.nullable) for c in table.columns},
            "primary_key": sorted(c.name for c in table.primary_key.columns),
            "unique": sorted(unique),
            "indexes": sorted(index.name for index in table.indexes),
        }
    return expected


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrations_build_the_metadata_schema(empty_database_url: str) -> None:
    db = Database.connect_unpooled(empty_database_url)
    try:
        assert await migrate.current_revision(db) is None
        await migrate.upgrade(db)
        assert await migrate.current_revision(db) == migrate.head_revision()
        async with db.engine.connect() as conn:
            schema = await conn.run_sync(_schema)
            diff = await conn.run_sync(_diff)
    finally:
        await db.close()

    expected = _expected_from_metadata()
    assert set(schema) == set(expected) | {"alembic_version"}
    for name, want in expected.items():
        got = schema[name]
        assert got["columns"] == want["columns"], name
        assert got["primary_key"] == want["primary_key"], name
        assert got["unique"] == want["unique"], name
        # Index names as the naming convention makes them (SQLite also lists unique
        # constraints' automatic indexes under other names; only ours are compared).
        ours = sorted(i[0] for i in got["indexes"] if i[0] in want["indexes"])
        assert ours == want["indexes"], name
    assert diff == [], diff


async def test_upgrade_is_idempotent(empty_database_url: str) -> None:
    db = Database.connect_unpooled(empty_database_url)
    try:
        await migrate.upgrade(db)
        async with db.write() as conn:
            await meta_store.set_value(conn, "migration-test", "kept")
        async with db.engine.connect() as conn:
            before = await conn.run_sync(_schema)
        await migrate.upgrade(db)
        await migrate.upgrade(db)
        async with db.engine.connect() as conn:
            after = await conn.run_sync(_schema)
        async with db.read() as conn:
            assert await meta_store.get_value(conn, "migration-test") == "kept"
        assert after == before
        assert await migrate.current_revision(db) == migrate.head_revision()
    finally:
        await db.close()
