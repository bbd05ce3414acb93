"""Module-scoped fixtures that many integration modules declare the same way.

A test module imports the ones it needs; pytest registers an imported fixture for that module
only, so two modules can use different ``client`` fixtures (a plain HTTP client for the event
grid tests, the SDK for the ML workspace tests) without one shadowing the other, as they would
in ``conftest.py``. The ``name=`` keeps the parameter names the tests use, and keeps the
imported names apart from them (an import named like a parameter reads as a redefinition)::

    from tests.support.fixtures import http_client_fixture, receiver_fixture  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from mlgrid import Client
from mlgrid.client.workspace import Workspace
from tests.support.ml_workspace import admin_client, raw
from tests.support.receiver import Receiver
from tests.support.server import BLOB_BACKENDS, ServerProcess, server_for

__all__ = [
    "blob_server_fixture",
    "http_client_fixture",
    "raw_http_fixture",
    "receiver_fixture",
    "sdk_client_fixture",
    "workspace_fixture",
]


@pytest.fixture(scope="module", params=BLOB_BACKENDS, name="server")
def blob_server_fixture(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The module's ``server`` on SQLite with its files in the data directory, and on
    PostgreSQL with its files in Azurite: for the modules whose subject includes workspace files
    (artifacts, models, datasets, job logs, deployments), which must behave the same on either
    database and either blob store."""
    yield from server_for(request, tmp_path_factory, ["--retry-schedule", "0.2,0.4,0.8"])


@pytest.fixture(scope="module", name="receiver")
def receiver_fixture() -> Iterator[Receiver]:
    """A webhook receiver on loopback, shared by the tests of a module."""
    with Receiver() as running:
        yield running


@pytest.fixture(scope="module", name="client")
def http_client_fixture(server: ServerProcess) -> Iterator[httpx.Client]:
    """An HTTP client for the module's server with the admin token."""
    with server.client() as c:
        yield c


@pytest.fixture(scope="module", name="client")
def sdk_client_fixture(server: ServerProcess) -> Iterator[Client]:
    """The SDK for the module's server with the admin token."""
    with admin_client(server) as sdk:
        yield sdk


@pytest.fixture(scope="module", name="http")
def raw_http_fixture(server: ServerProcess) -> Iterator[httpx.Client]:
    """A plain HTTP client next to the SDK ``client``, for what the SDK does not expose."""
    with raw(server) as plain:
        yield plain


@pytest.fixture(name="ws")
def workspace_fixture(client: Client, unique_name: str) -> Workspace:
    """A fresh workspace per test (needs the SDK ``client``)."""
    return client.workspaces.create(unique_name)
