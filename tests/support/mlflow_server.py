"""A real ``mlflow server`` subprocess on a loopback port, for the MLflow connector's tests.

MLflow is a test dependency (``pyproject.toml``'s ``test`` extra), so the server is started from
this virtualenv's own ``mlflow`` package, never by hand. Two backends:

* SQLite in a temporary directory (``mlflow_sqlite``);
* PostgreSQL in a database created for it and dropped afterwards (``mlflow_postgres``).

Starting ``mlflow server`` takes ~10 s (it creates its schema on first start), so the fixtures
are session-scoped: tests share one server and tell their objects apart by unique experiment
and model names. The skip-or-fail rule is the one of ``tests/support/services.py``: without the
``mlflow`` package (or PostgreSQL) a test skips, and fails under ``MLGRID_REQUIRE_SERVICES=1``.

MLflow refuses webhooks to plain ``http`` and private addresses unless told otherwise; the
server is started with both allowed (documented as development-only by MLflow), so a test can
point MLflow's own webhooks at a loopback receiver.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.server import free_port
from tests.support.services import (
    create_pg_database,
    drop_pg_database,
    need_postgres,
    pg_url,
    services_required,
)

START_TIMEOUT = 180.0
"""Seconds to wait for `/health`: ~10-25 s on an idle machine, much longer on a loaded CI box."""


def need_mlflow() -> None:
    """Skip (or fail under MLGRID_REQUIRE_SERVICES=1) when the ``mlflow`` package is missing."""
    if importlib.util.find_spec("mlflow") is not None:
        return
    message = "the mlflow package is not installed (pip install -e '.[test]')"
    if services_required():
        pytest.fail(message + " and MLGRID_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


@dataclass
class MlflowServer:
    """One ``mlflow server`` process; ``start`` waits for ``/health``; restartable on the same
    port and backend (what the fault tests need)."""

    backend_uri: str
    work_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment of the server (e.g. ``MLGRID_OUTBOX=1`` for the outbox plugin)."""
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "mlflow-server.log"

    def start(self, timeout: float = START_TIMEOUT) -> MlflowServer:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_uri,
            "--default-artifact-root", str(self.work_dir / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGRID_"))}
        env.update(
            MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",
            MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",
            MLFLOW_WEBHOOK_CACHE_TTL="1",
        )
        env.update(self.env)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"mlflow server did not become ready in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; the whole process group (uvicorn may fork a worker)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self) -> MlflowServer:
        self.stop()
        return self.start()


@pytest.fixture(scope="session")
def mlflow_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` with a SQLite backend, shared by the session."""
    need_mlflow()
    work = tmp_path_factory.mktemp("mlflow-sqlite")
    server = MlflowServer(f"sqlite:///{work / 'mlflow.db'}", work).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` whose backend is a PostgreSQL database of its own."""
    need_mlflow()
    need_postgres()
    name = create_pg_database("mlflow_test")
    work = tmp_path_factory.mktemp("mlflow-postgres")
    server = MlflowServer(pg_url(name).replace("postgresql://", "postgresql+psycopg://"), work)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        drop_pg_database(name)
