"""Reaching the real services the tests need, and the skip-or-fail rule.

With ``MLGRID_REQUIRE_SERVICES=1`` (CI), a test whose service is unreachable fails instead of
skipping, so a green run proves those tests really ran.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

PG_HOST = os.environ.get("MLGRID_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("MLGRID_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("MLGRID_TEST_PG_USER", "postgres")
REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL = "nats://127.0.0.1:4222"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


def services_required() -> bool:
    return os.environ.get("MLGRID_REQUIRE_SERVICES", "") not in {"", "0", "false"}


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def need(service: str, host: str, port: int) -> None:
    """Skip (or fail under MLGRID_REQUIRE_SERVICES=1) when the service is unreachable."""
    if port_open(host, port):
        return
    message = f"{service} is not reachable on {host}:{port}"
    if services_required():
        pytest.fail(message + " and MLGRID_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


def need_postgres() -> None:
    need("PostgreSQL", PG_HOST, PG_PORT)


def need_redis() -> None:
    need("Redis", "127.0.0.1", 6379)


def need_nats() -> None:
    need("NATS", "127.0.0.1", 4222)


def need_rabbitmq() -> None:
    need("RabbitMQ", "127.0.0.1", 5672)


def pg_url(database: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def _admin_execute(sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def create_pg_database(prefix: str = "mlgrid_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _admin_execute(f'CREATE DATABASE "{name}"')
    return name


def drop_pg_database(name: str) -> None:
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_pg_database(prefix: str = "mlgrid_test") -> Iterator[str]:
    """A new, empty PostgreSQL database for the block; dropped afterwards."""
    need_postgres()
    name = create_pg_database(prefix)
    try:
        yield pg_url(name)
    finally:
        drop_pg_database(name)
