"""Pieces the benchmarks share: the server subprocess, the bounded load loop, percentiles.

Each benchmark is run as a script (``python benchmarks/X.py``), which puts this directory on
``sys.path``, so they import this module as ``_common``. Keeping the server start-up and the
load loop in one place means every benchmark starts the server the same way and bounds its
load the same way (by request count and by time), so their figures stay comparable.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

PG_HOST = os.environ.get("MLGRID_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("MLGRID_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("MLGRID_TEST_PG_USER", "postgres")

EVENT_TIME = "2024-05-01T12:00:00Z"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One ``mlgrid serve`` subprocess on a free loopback port, stopped with SIGTERM at the end.

    The child gets the environment without ``MLGRID_*`` variables so a developer's settings
    cannot change what is measured; its output goes to ``server.log`` in the data directory.
    """

    def __init__(
        self, data_dir: Path, database_url: str = "", *, ui: bool = False, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "mlgrid.cli.main", "serve", "--port", str(self.port),
                "--data-dir", str(data_dir), "--log-level", "warning"]
        if not ui:
            args.append("--no-ui")
        if database_url:
            args += ["--database-url", database_url]
        args += list(extra_args)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLGRID_")}
        self._log = (data_dir / "server.log").open("ab")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float = 30.0) -> None:
        """Poll ``/readyz``; fail with the server's log if it exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {(self.data_dir / 'server.log').read_text()}")
            try:
                async with session.get(self.url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("server did not become ready")

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


async def create_topic(
    session: aiohttp.ClientSession, server: Server, admin: dict[str, str]
) -> tuple[str, str]:
    """A new Event Grid schema topic with a random name; returns (name, key1)."""
    topic = "bench-" + uuid.uuid4().hex[:8]
    async with session.put(f"{server.url}/topics/{topic}", json={}, headers=admin) as response:
        response.raise_for_status()
    async with session.post(f"{server.url}/topics/{topic}/listKeys", headers=admin) as response:
        key = str((await response.json())["key1"])
    return topic, key


async def pg_admin(sql: str) -> None:
    """Run one statement on the ``postgres`` database (CREATE/DROP DATABASE)."""
    import asyncpg

    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def bounded_load(
    concurrency: int, requests: int, seconds: float, send: Callable[[], Awaitable[bool]]
) -> tuple[int, int, float]:
    """``concurrency`` tasks call ``send()`` until ``requests`` calls were made or ``seconds``
    passed, whichever comes first; a call that returns False counts as failed.

    Returns (calls made, failed calls, elapsed seconds). An exception from ``send`` ends the
    run. Bounding by both keeps every load loop finite however fast or slow the target is.
    """
    sent = 0
    failures = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal sent, failures
        while sent < requests and time.perf_counter() < deadline:
            sent += 1
            if not await send():
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent, failures, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank from below; ``values`` need not be sorted."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
