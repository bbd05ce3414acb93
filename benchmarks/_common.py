"""Pieces the benchmarks share: the server subprocess, the bounded load loop, percentiles.

Each benchmark is run as a script (``python benchmarks/X.py``), which puts this directory on
``sys.path``, so they import this module as ``_common``. Keeping the server start-up and the
load loop in one place means every benchmark starts the server the same way and bounds its
load the same way (by request count and by time), so their figures stay comparable.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
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

#: Seconds an idle pooled connection is kept. Below uvicorn's 5 s keep-alive: a connection the
#: server has closed after a slow step (training a model, waiting for 500 subscriptions'
#: deliveries) is never reused, which would fail the next request (aiohttp's default is 15 s).
KEEPALIVE_SECONDS = 2.0


def connector(limit: int, ssl_context: ssl.SSLContext | None = None) -> aiohttp.TCPConnector:
    """A connection pool for talking to ``mlgrid serve`` (see ``KEEPALIVE_SECONDS``); pass the
    server's ``ssl_context()`` when it serves https."""
    return aiohttp.TCPConnector(limit=limit, keepalive_timeout=KEEPALIVE_SECONDS, ssl=ssl_context or True)


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
        self, data_dir: Path, database_url: str = "", *, ui: bool = False, tls: bool = False,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "mlgrid.cli.main", "serve", "--port", str(self.port),
                "--data-dir", str(data_dir), "--log-level", "warning"]
        if not ui:
            args.append("--no-ui")
        if tls:
            # The pair the server would make on its first start, made here first so the
            # client's SSL context can be built before the server answers.
            from mlgrid.tls import ensure_self_signed

            ensure_self_signed(data_dir)
            args.append("--tls-self-signed")
        if database_url:
            args += ["--database-url", database_url]
        args += list(extra_args)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLGRID_")}
        self._log = (data_dir / "server.log").open("ab")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def ssl_context(self) -> ssl.SSLContext | None:
        """For ``aiohttp.TCPConnector(ssl=...)``: trusts the server's self-signed certificate
        (the file ``--tls-self-signed`` writes; it exists once the server answers)."""
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=str(self.data_dir / "tls" / "cert.pem"))

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float = 30.0) -> None:
        """Poll ``/readyz``; fail with the server's log if it exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {(self.data_dir / 'server.log').read_text()}")
            try:
                async with session.get(self.url + "/readyz", ssl=self.ssl_context() or True) as response:
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


def report(
    path: str | None, figure: str, value: float, floor: float, floor_label: str, *, goal: str = ""
) -> None:
    """Append one figure for ``benchmarks/run.py``'s table (nothing when ``path`` is None).

    ``floor`` is the same quantity measured for the floor in the same run (an HTTP+JSON echo
    server, a bare aiohttp loop, direct scoring, the smallest size); the table prints
    ``value / floor`` beside both, so that a loaded machine, which moves both, moves the ratio
    much less than either figure.
    """
    if path is None:
        return
    row = {"figure": figure, "value": value, "floor": floor, "floor_label": floor_label, "goal": goal}
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(row) + "\n")


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, all threads included; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fail(message: str) -> None:
    """End a benchmark run with a non-zero status: a figure from a failed run is no figure."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)
