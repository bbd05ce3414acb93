"""A real ``mlgrid serve`` process on a loopback port, for integration and crash tests."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.services import create_pg_database, drop_pg_database, need_postgres, pg_url

#: The databases every server-backed test module runs on (``server`` fixture params).
BACKENDS = ["sqlite", "postgresql"]
#: For the modules whose subject includes files (``blob_server_fixture``): SQLite with the files
#: in the data directory, and PostgreSQL with the files in Azure Blob Storage (Azurite) — what a
#: single machine and a cluster each run. The database and the blob store are independent
#: layers, so the two pairs cover each backend of each once, at two server starts, not four.
BLOB_BACKENDS = ["sqlite", "postgresql+azurite"]


def server_for(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, extra_args: list[str]
) -> Iterator[ServerProcess]:
    """Start a ``ServerProcess`` for ``request.param`` (a name of ``BLOB_BACKENDS``), stop it
    (and drop its PostgreSQL database) after."""
    backend = request.param
    data_dir = tmp_path_factory.mktemp(f"server-{backend}")
    url = ""
    pg_name = ""
    env: dict[str, str] = {}
    if backend.startswith("postgresql"):
        # A database of its own: the admin token and secret key belong to one data directory,
        # so a second server on a database another one initialised could not authenticate.
        need_postgres()
        pg_name = create_pg_database()
        url = pg_url(pg_name)
    if backend.endswith("azurite"):
        azurite = request.getfixturevalue("azurite")
        env["MLGRID_BLOB_URL"] = azurite.connection_string
        # Azure's container rule: lower-case letters, digits and single hyphens.
        tail = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]", "-", data_dir.name.lower()))[-40:].strip("-")
        env["MLGRID_BLOB_CONTAINER"] = "ws-" + tail
    server = ServerProcess(data_dir=data_dir, database_url=url, extra_args=extra_args, env=env)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if pg_name:
            drop_pg_database(pg_name)


def code_is_contained() -> bool:
    """Whether servers started here run user code contained (root, or bubblewrap installed)."""
    return os.geteuid() == 0 or shutil.which("bwrap") is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    data_dir: Path
    database_url: str = ""
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    tls_self_signed: bool = False
    wrap: Callable[[list[str]], list[str]] | None = None
    """Turns the server's command into the one started (e.g. run it as another user)."""

    @property
    def url(self) -> str:
        return f"{'https' if self.tls_self_signed else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_bundle(self) -> Path:
        """The certificate ``--tls-self-signed`` writes (exists once the server started)."""
        return self.data_dir / "tls" / "cert.pem"

    @property
    def verify(self) -> str | bool:
        return str(self.ca_bundle) if self.tls_self_signed else True

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable, "-m", "mlgrid.cli.main", "serve",
            "--port", str(self.port), "--data-dir", str(self.data_dir), "--log-level", "warning",
        ]
        if self.database_url:
            args += ["--database-url", self.database_url]
        args += self.extra_args
        if not code_is_contained() and "--unsafe-local-code" not in args:
            args.append("--unsafe-local-code")  # a developer's machine: neither root nor bubblewrap
        if self.tls_self_signed:
            args.append("--tls-self-signed")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLGRID_")}
        env.update(self.env)
        self.log_path = self.data_dir / f"server-{self.port}.log"
        log = self.log_path.open("ab")
        if self.wrap is not None:
            args = self.wrap(args)
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            if self.tls_self_signed and not self.ca_bundle.exists():
                time.sleep(0.1)
                continue
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0, verify=self.verify).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: the crash the durability guarantees are about."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        kwargs.setdefault("verify", self.verify)
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kwargs)
