"""Shared fixtures: databases (SQLite and PostgreSQL) and real server processes."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mlgrid.store import migrate
from mlgrid.store.database import Database
from tests.support.azurite import azurite_fixture  # noqa: F401 (session fixture)
from tests.support.mlflow_server import mlflow_postgres, mlflow_sqlite  # noqa: F401 (session fixtures)
from tests.support.server import BACKENDS, ServerProcess, server_for
from tests.support.services import create_pg_database, drop_pg_database, need_postgres, pg_url


@pytest.fixture(scope="session")
def pg_session_database() -> Iterator[str]:
    """One fresh PostgreSQL database for the whole test session (tests use unique names)."""
    need_postgres()
    name = create_pg_database()
    try:
        yield pg_url(name)
    finally:
        drop_pg_database(name)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every storage-touching test runs against both databases."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mlgrid.db'}"
    return str(request.getfixturevalue("pg_session_database"))


@pytest.fixture
async def migrated_db(database_url: str) -> AsyncIterator[Database]:
    """A ``Database`` on each backend with the schema migrated, closed afterwards."""
    database = Database.connect(database_url)
    await migrate.upgrade(database)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A real server per test module and backend, with a shrunk retry schedule."""
    yield from server_for(request, tmp_path_factory, ["--retry-schedule", "0.2,0.4,0.8"])


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A SQLite-only server for tests whose subject is not storage."""
    data_dir = tmp_path_factory.mktemp("server-sqlite-only")
    server = ServerProcess(data_dir=data_dir, extra_args=["--retry-schedule", "0.2,0.4,0.8"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def unique_name() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory every user may enter and write (mode 1777, outside pytest's private tree):
    what a job, which runs under a uid of its own, can reach."""
    path = Path(tempfile.mkdtemp(prefix="mlgrid-shared-"))
    path.chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
