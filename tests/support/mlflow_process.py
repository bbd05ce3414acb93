"""A real ``mlflow server`` subprocess on a loopback port, for tests that integrate with MLflow.

MLflow is a test dependency (the ``test`` extra pins it); without it, or without PostgreSQL
for a PostgreSQL backend, tests skip — or fail under ``MLGRID_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.server import free_port
from tests.support.services import services_required


def need_mlflow() -> None:
    """Skip (or fail under MLGRID_REQUIRE_SERVICES=1) when MLflow is not installed."""
    if importlib.util.find_spec("mlflow") is not None:
        return
    message = "mlflow is not installed (it is in the 'test' extra)"
    if services_required():
        pytest.fail(message + " and MLGRID_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


def mlflow_command() -> list[str]:
    script = Path(sys.executable).with_name("mlflow")
    return [str(script)] if script.exists() else [shutil.which("mlflow") or "mlflow"]


@dataclass
class MlflowServer:
    """``mlflow server`` with one worker on ``backend_uri``; artifacts under ``work_dir``."""

    backend_uri: str
    work_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / f"mlflow-{self.port}.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 120.0) -> MlflowServer:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        args = [
            *mlflow_command(), "server",
            "--backend-store-uri", self.backend_uri,
            "--default-artifact-root", str(self.work_dir / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLGRID_", "MLFLOW_"))}
        env.update(self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.work_dir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server did not become ready in {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        """Stop the server and its gunicorn/uvicorn children (they share its session)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(timeout=5)
        self.process = None
