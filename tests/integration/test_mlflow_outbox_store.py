"""``store/mlflow_outbox.py`` on a real SQLite file and a real PostgreSQL database.

The table is created exactly as the plugin creates it (its own ``metadata``), rows are written
as the plugin writes them, and the drain's promises are checked without an MLflow server:
delete-on-consume, nothing deleted unless consumed, a transaction that took a smaller id and
commits late is still drained (no watermark), ``SKIP LOCKED`` keeps two claimers apart, and
``LISTEN`` wakes on the plugin's ``pg_notify``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from tests.support.services import create_pg_database, drop_pg_database, need_postgres, pg_url

from mlgrid.store.mlflow_outbox import OutboxSource, OutboxUnavailable


def make_table(sync_url: str) -> None:
    from mlgrid_mlflow_outbox.capture import metadata

    engine = sa.create_engine(sync_url)
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()


def insert_sql(n: int) -> str:
    payload = json.dumps({"name": "m", "alias": "champion", "version": str(n), "previous_version": None})
    return (
        "INSERT INTO mlgrid_outbox (recorded_at_ms, kind, object_key, payload) "
        f"VALUES ({n}, 'alias_set', 'alias:m@champion', '{payload}')"
    )


@pytest.fixture
def pg_database() -> Iterator[str]:
    need_postgres()
    name = create_pg_database("mlgrid_outbox_store")
    try:
        url = pg_url(name)
        make_table(url.replace("postgresql://", "postgresql+psycopg://"))
        yield url
    finally:
        drop_pg_database(name)


async def drained_ids(source: OutboxSource, *, consume: bool = True) -> list[int]:
    async with source.claim(100) as batch:
        if consume:
            batch.consume()
    return batch.ids


def test_sqlite_delete_on_consume(tmp_path: Path) -> None:
    path = tmp_path / "mlflow.db"
    make_table(f"sqlite:///{path}")
    with sa.create_engine(f"sqlite:///{path}").begin() as conn:
        for n in range(3):
            conn.execute(sa.text(insert_sql(n)))

    async def main() -> None:
        source = OutboxSource(f"sqlite:///{path}")
        try:
            await source.check()
            assert await drained_ids(source, consume=False) == [1, 2, 3]
            assert await source.pending() == 3  # not consumed: nothing deleted
            async with source.claim(100) as batch:
                assert [r.payload["version"] for r in batch.rows] == ["0", "1", "2"]
                batch.consume()
            assert await source.pending() == 0
        finally:
            await source.close()

    asyncio.run(main())


def test_sqlite_missing_file_or_table_is_unavailable(tmp_path: Path) -> None:
    async def main() -> None:
        for url in (f"sqlite:///{tmp_path / 'absent.db'}", f"sqlite:///{tmp_path / 'empty.db'}"):
            if "empty" in url:
                sa.create_engine(url).connect().close()
            source = OutboxSource(url)
            with pytest.raises(OutboxUnavailable):
                await source.check()
            await source.close()
        assert not (tmp_path / "absent.db").exists()  # never created by the check

    asyncio.run(main())


def test_postgresql_late_commit_is_drained_and_skip_locked_separates(pg_database: str) -> None:
    async def main() -> None:
        source = OutboxSource(pg_database)
        woke = asyncio.Event()
        listener = await source.listen(woke.set)
        assert listener is not None
        late = await asyncio.to_thread(psycopg.connect, pg_database)
        try:
            # A transaction takes id 1 and does not commit yet; ids 2 and 3 commit.
            await asyncio.to_thread(late.execute, insert_sql(1))
            with psycopg.connect(pg_database, autocommit=True) as conn:
                conn.execute(insert_sql(2))
                conn.execute(insert_sql(3) + "; SELECT pg_notify('mlgrid_outbox', '')")
            await asyncio.wait_for(woke.wait(), 30)
            assert await drained_ids(source) == [2, 3]
            await asyncio.to_thread(late.commit)  # id 1 commits after 2 and 3 were drained
            assert await drained_ids(source) == [1]  # not skipped: nothing compares ids
            # Two claimers at once never take the same row.
            with psycopg.connect(pg_database, autocommit=True) as conn:
                for n in range(4, 8):
                    conn.execute(insert_sql(n))
            async with source.claim(2) as first:
                async with source.claim(100) as second:
                    assert set(first.ids).isdisjoint(second.ids)
                    assert sorted(first.ids + second.ids) == [4, 5, 6, 7]
                    second.consume()
                first.consume()
            assert await source.pending() == 0
        finally:
            await asyncio.to_thread(late.close)
            await listener.close()
            await source.close()

    asyncio.run(main())


@pytest.mark.parametrize("options", [
    "", "?sslmode=disable", "?sslmode=bogus", "?options=-c%20x", "?connect_timeout=abc",
    "?target_session_attrs=bogus",
])
def test_a_url_the_driver_refuses_is_unavailable_not_a_crash(pg_database: str, options: str) -> None:
    """Query options reach the driver's ``connect()``: one it does not take, or a bad value, is
    "unavailable" with the driver's reason (a 400 on the connector's PUT), never another error
    (a 500). libpq's ``sslmode`` is translated to asyncpg's ``ssl``."""
    async def main() -> None:
        source = OutboxSource(pg_database + options)
        try:
            if options in ("", "?sslmode=disable"):
                await source.check()
            else:
                with pytest.raises(OutboxUnavailable):
                    await source.check()
        finally:
            await source.close()

    asyncio.run(main())


def test_a_port_out_of_range_is_unavailable() -> None:
    async def main() -> None:
        source = OutboxSource("postgresql://127.0.0.1:99999/mlflow", timeout=3)
        try:
            with pytest.raises(OutboxUnavailable):
                await source.check()
        finally:
            await source.close()
        with pytest.raises(OutboxUnavailable):
            OutboxSource("postgresql://u:p@[::1:5432/mlflow")

    asyncio.run(main())
