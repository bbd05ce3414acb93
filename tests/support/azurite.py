"""Azurite (Microsoft's Azure Storage emulator) for the blob-store tests, started by the suite.

``make test`` installs it with npm into ``.azurite/`` (the ``azurite`` Makefile target; tests
never download). The session fixture ``azurite`` starts ``azurite-blob`` on a free loopback
port with its data in a temporary directory and stops it at the end of the session. Missing
Azurite skips the tests that need it, or fails them under ``MLGRID_REQUIRE_SERVICES=1``, the
rule of every other service (``tests/support/services.py``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.server import ServerProcess, free_port
from tests.support.services import port_open, services_required

__all__ = [
    "ACCOUNT",
    "ACCOUNT_KEY",
    "Azurite",
    "azurite_fixture",
    "find_azurite",
    "stored_workspace_files",
]

PROJECT = Path(__file__).resolve().parents[2]
#: Azurite's well-known development account (public: it is in Azurite's documentation).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
START_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Azurite:
    """A running Azurite blob service."""

    port: int

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.account_url};"
        )


def find_azurite() -> str | None:
    """``azurite-blob`` from ``.azurite/`` (the Makefile's install), else from ``PATH``."""
    local = PROJECT / ".azurite" / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    return shutil.which("azurite-blob")


def _missing(message: str) -> None:
    if services_required():
        pytest.fail(message + " and MLGRID_REQUIRE_SERVICES=1 (run `make azurite`)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session", name="azurite")
def azurite_fixture() -> Iterator[Azurite]:
    binary = find_azurite()
    if binary is None or shutil.which("node") is None:
        _missing("Azurite is not installed (.azurite/ or azurite-blob on PATH)")
        raise AssertionError("unreachable")
    location = Path(tempfile.mkdtemp(prefix="mlgrid-azurite-"))
    port = free_port()
    log_path = location / "azurite.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                binary, "--blobHost", "127.0.0.1", "--blobPort", str(port),
                "--location", str(location / "data"), "--skipApiVersionCheck", "--loose",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not port_open("127.0.0.1", port, timeout=0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                output = log_path.read_text(errors="replace")[-2000:]
                _missing(f"Azurite did not start on port {port}: {output}")
            time.sleep(0.1)
        yield Azurite(port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(location, ignore_errors=True)


def stored_workspace_files(server: ServerProcess, workspace: str) -> list[str]:
    """The names of a workspace's files in the server's blob store, read directly: the Azure
    container (with Azure's SDK) when the server runs with ``MLGRID_BLOB_URL``, else the data
    directory's ``workspaces/``."""
    prefix = workspace.lower() + "/"
    url = server.env.get("MLGRID_BLOB_URL")
    if url:
        from azure.storage.blob import ContainerClient

        container = server.env.get("MLGRID_BLOB_CONTAINER", "mlgrid")
        with ContainerClient.from_connection_string(url, container_name=container) as client:
            return sorted(str(blob.name) for blob in client.list_blobs(name_starts_with=prefix))
    root = server.data_dir / "workspaces"
    return sorted(p.relative_to(root).as_posix() for p in (root / prefix).rglob("*") if p.is_file())
