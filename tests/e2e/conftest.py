"""Fixtures of the end-to-end CLI tests: the CLI runner on the shared SQLite server, and a
loopback webhook receiver, one per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.cli_runner import Cli
from tests.support.receiver import Receiver
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def cli(sqlite_server: ServerProcess) -> Cli:
    return Cli(sqlite_server)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running
