"""How many events does publishing accept per second of server CPU, against an HTTP+JSON floor?

Starts a real ``mlgrid serve`` process on a loopback port (SQLite in a temporary data
directory; PostgreSQL in a fresh database on 127.0.0.1:5432 that is dropped afterwards) and,
beside it in the same run, the floor: ``benchmarks/echo_server.py``, a uvicorn + FastAPI route
that reads the same body and ``json.loads`` it. The same 8 concurrent aiohttp clients post the
same Event Grid batches (1, 10, 100 events; 1,000 with ``--full``) to both. Every 200 from
mlgrid means the events were committed, so "accepted" is "durable".

Event ids are random UUID4s, as the Azure SDK sends them; the same batches with monotonic ids
(``<prefix>-<n>``) are measured beside them, for reference (random keys scatter the idempotency
index, monotonic ones append to it).

The figure that counts is events per CPU-second of the server process: on a shared machine
events/s follows the CPU share the server got, per CPU-second measures the code. The ratio
mlgrid ÷ echo per CPU-second is the share of the floor mlgrid reaches (goals: >= 0.35 at
batches of 100, >= 0.5 at 10, >= 0.6 single; random ids >= 0.9 of monotonic).

Each measurement is bounded in time (``--seconds``) and in requests (``--max-requests``) after
a short warm-up; floor and mlgrid alternate per batch size so a slow moment hits both.

    .venv/bin/python benchmarks/publish.py                      # SQLite, quick
    .venv/bin/python benchmarks/publish.py --full               # + batches of 1,000, PostgreSQL
    .venv/bin/python benchmarks/publish.py --backend postgresql --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from _common import (
    EVENT_TIME,
    PG_HOST,
    PG_PORT,
    PG_USER,
    Server,
    bounded_load,
    connector,
    create_topic,
    fail,
    free_port,
    pg_admin,
    process_cpu_seconds,
    report,
)


@dataclass(frozen=True)
class Result:
    label: str
    requests: int
    events: int
    seconds: float
    failures: int
    server_cpu: float | None = None
    """CPU seconds the server process used during the measurement (Linux only)."""

    @property
    def server_cpu_share(self) -> float | None:
        """How many CPUs the server kept busy on average (1.0 = one core)."""
        if self.server_cpu is None or not self.seconds:
            return None
        return self.server_cpu / self.seconds

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _batch_body(ids: Callable[[], str], counter: itertools.count[int], size: int) -> bytes:
    """A JSON array of ``size`` small Event Grid events, ids from ``ids()``."""
    parts = []
    for _ in range(size):
        n = next(counter)
        parts.append(
            f'{{"id":"{ids()}","subject":"bench/items/{n % 100}","eventType":"Bench.ItemCreated",'
            f'"eventTime":"{EVENT_TIME}","dataVersion":"1.0","data":{{"n":{n},"score":0.25,"tag":"abc"}}}}'
        )
    return ("[" + ",".join(parts) + "]").encode()


class EchoServer:
    """``benchmarks/echo_server.py`` on a free port, in its own process like ``mlgrid serve``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        script = Path(__file__).with_name("echo_server.py")
        self.process = subprocess.Popen([sys.executable, str(script), str(self.port)])

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the echo server exited")
            try:
                async with session.get(self.url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("the echo server did not become ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


async def _run_clients(
    pid: int,
    label: str,
    clients: int,
    seconds: float,
    max_requests: int,
    send: Callable[[], Awaitable[bool]],
    events_per_request: int,
) -> Result:
    """``clients`` tasks call ``send()`` until the time or the request budget runs out."""
    cpu_before = process_cpu_seconds(pid)
    sent, failures, elapsed = await bounded_load(clients, max_requests, seconds, send)
    cpu_after = process_cpu_seconds(pid)
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    ok_requests = sent - failures
    return Result(label, ok_requests, ok_requests * events_per_request, elapsed, failures, cpu)


def _random_id() -> str:
    return str(uuid.uuid4())


def _monotonic_ids() -> Callable[[], str]:
    prefix = uuid.uuid4().hex[:8]
    counter = itertools.count()
    return lambda: f"{prefix}-{next(counter):012d}"


async def _measure(server: Server, echo: EchoServer | None, backend: str, args: argparse.Namespace
                   ) -> dict[str, Result]:
    """Per batch size: the echo floor (SQLite run only), then mlgrid with random and monotonic ids."""
    async with aiohttp.ClientSession(connector=connector(args.clients * 2, server.ssl_context())) as session:
        await server.wait_ready(session)
        if echo is not None:
            await echo.wait_ready(session)
        admin = {"Authorization": f"Bearer {server.admin_token}"}
        first_error: list[str] = []
        counter = itertools.count()
        results: dict[str, Result] = {}

        def publisher(url: str, headers: dict[str, str], size: int, ids: Callable[[], str]
                      ) -> Callable[[], Awaitable[bool]]:
            async def publish() -> bool:
                body = _batch_body(ids, counter, size)
                async with session.post(url, data=body, headers=headers) as response:
                    text = await response.read()
                    if response.status != 200 and not first_error:
                        first_error.append(f"{response.status} {text[:300]!r}")
                    return response.status == 200

            return publish

        targets: list[tuple[str, int, Callable[[int], Callable[[], Awaitable[bool]]]]] = []
        if echo is not None:
            echo_url = f"{echo.url}/topics/echo/api/events"
            json_headers = {"Content-Type": "application/json"}
            targets.append(("echo", echo.process.pid,
                            lambda size: publisher(echo_url, json_headers, size, _random_id)))
        for mode, ids in (("random", _random_id), ("monotonic", _monotonic_ids())):
            topic, key = await create_topic(session, server, admin)
            url = f"{server.url}/topics/{topic}/api/events"
            headers = {"aeg-sas-key": key, "Content-Type": "application/json"}
            targets.append((
                mode, server.process.pid,
                lambda size, url=url, headers=headers, ids=ids: publisher(url, headers, size, ids),
            ))
        for size in args.batch_sizes:
            budget = max(args.clients, min(args.max_requests, args.max_events // size))
            for name, pid, make in targets:
                send = make(size)
                await _run_clients(pid, "warm-up", args.clients, 0.5, 50, send, size)
                label = f"{backend}: {name} ids, batches of {size}" if name != "echo" else (
                    f"floor: HTTP+JSON echo, batches of {size}")
                results[f"{name}/{size}"] = await _run_clients(
                    pid, label, args.clients, args.seconds, budget, send, size
                )
        if first_error:
            fail(f"publish failed: {first_error[0]}")
        return results


def per_cpu(result: Result) -> float:
    """Events per CPU-second of the server; a run without CPU figures is an error here."""
    if not result.server_cpu or not result.events:
        fail(f"{result.label}: no events or no CPU figure (Linux /proc needed)")
    return result.events / (result.server_cpu or 1.0)


def _print(results: list[Result]) -> None:
    """One line per measurement. ``server CPUs`` is how many cores the server kept busy: below
    1.0 with idle cores left means the clients or the commit latency were the limit, not the
    server's CPU; ``per CPU-s`` is the rate the server sustains per second of its own CPU."""
    print(f"{'measurement':42} {'requests/s':>10} {'events/s':>10} "
          f"{'server CPUs':>11} {'ev per CPU-s':>12} {'failed':>6}")
    for r in results:
        share = r.server_cpu_share
        cpus = f"{share:11.2f}" if share is not None else f"{'n/a':>11}"
        per_cpu_s = f"{r.events / r.server_cpu:12,.0f}" if r.events and r.server_cpu else f"{'-':>12}"
        print(f"{r.label:42} {r.requests_per_second:10,.0f} {r.events_per_second:10,.0f} {cpus} {per_cpu_s} "
              f"{r.failures:6d}")
    print(flush=True)


GOALS = {1: ">= 0.6", 10: ">= 0.5", 100: ">= 0.35"}


def _report_sqlite(results: dict[str, Result], args: argparse.Namespace) -> None:
    for size in args.batch_sizes:
        random_rate = per_cpu(results[f"random/{size}"])
        monotonic_rate = per_cpu(results[f"monotonic/{size}"])
        floor = per_cpu(results[f"echo/{size}"])
        label = "single events" if size == 1 else f"batches of {size}"
        report(args.report, f"publish SQLite {label}, random ids: ev/CPU-s", random_rate, floor,
               "HTTP+JSON echo", goal=GOALS.get(size, ""))
        report(args.report, f"publish SQLite {label}, monotonic ids: ev/CPU-s", monotonic_rate, floor,
               "HTTP+JSON echo")
        report(args.report, f"publish SQLite {label}: random vs monotonic ids, ev/CPU-s", random_rate,
               monotonic_rate, "monotonic ids", goal=">= 0.9" if size == 100 else "")
        print(f"batches of {size}: mlgrid random ids {random_rate:,.0f} ev/CPU-s = {random_rate / floor:.3f} "
              f"of the echo floor ({floor:,.0f}); monotonic {monotonic_rate / floor:.3f}; "
              f"random/monotonic {random_rate / monotonic_rate:.2f}")
    print(flush=True)


def _report_postgresql(
    results: dict[str, Result], sqlite: dict[str, Result], args: argparse.Namespace
) -> None:
    for size in args.batch_sizes:
        rate = results[f"random/{size}"].events_per_second
        floor = sqlite[f"random/{size}"].events_per_second
        label = "single events" if size == 1 else f"batches of {size}"
        report(args.report, f"publish PostgreSQL {label}, random ids: ev/s", rate, floor, "SQLite ev/s",
               goal=">= 0.8" if size in (1, 100) else "")
        print(f"PostgreSQL {label}: {rate:,.0f} ev/s = {rate / floor:.2f} of SQLite's {floor:,.0f}")
    print(flush=True)


async def _bench_backend(backend: str, args: argparse.Namespace) -> dict[str, Result] | None:
    data_dir = Path(tempfile.mkdtemp(prefix=f"mlgrid-bench-{backend}-"))
    database = ""
    url = ""
    try:
        if backend == "postgresql":
            database = "mlgrid_bench_" + uuid.uuid4().hex[:12]
            try:
                await pg_admin(f'CREATE DATABASE "{database}"')
            except OSError as exc:
                print(f"postgresql: skipped, {PG_HOST}:{PG_PORT} unreachable ({exc})\n")
                database = ""
                return None
            url = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"
        echo = EchoServer() if backend == "sqlite" else None
        extra = ("--sqlite-synchronous", args.sqlite_synchronous) if backend == "sqlite" else ()
        server = Server(data_dir, url, tls=args.tls, extra_args=extra)
        if args.tls:
            backend += " https"
        try:
            results = await _measure(server, echo, backend, args)
        finally:
            server.stop()
            if echo is not None:
                echo.stop()
        _print(list(results.values()))
        return results
    finally:
        if database:
            await pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default=None,
                        help="default: sqlite, both with --full")
    parser.add_argument("--full", action="store_true", help="batches of 1,000 too, and PostgreSQL")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per measurement (3; 5 --full)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="request bound per measurement")
    parser.add_argument("--max-events", type=int, default=1_000_000, help="event bound per measurement")
    parser.add_argument("--batch-sizes", default=None, help="e.g. 1,10,100 (+1000 --full)")
    parser.add_argument("--report", default=None, help="append figures as JSON lines to this file")
    parser.add_argument("--tls", action="store_true",
                        help="serve https (--tls-self-signed) and publish over TLS")
    parser.add_argument("--sqlite-synchronous", choices=["normal", "full"], default="normal",
                        help="the server's SQLite durability level (default normal)")
    args = parser.parse_args()
    args.backend = args.backend or ("both" if args.full else "sqlite")
    args.seconds = args.seconds or (5.0 if args.full else 3.0)
    sizes = args.batch_sizes or ("1,10,100,1000" if args.full else "1,10,100")
    args.batch_sizes = [int(x) for x in sizes.split(",") if x.strip()]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"mlgrid publish benchmark: {args.clients} clients, {args.seconds:g} s per measurement, "
          f"{os.cpu_count()} CPUs, load average {load} (other work on the machine skews events/s; "
          "'ev per CPU-s' much less)\n", flush=True)
    sqlite: dict[str, Result] | None = None
    if args.backend in ("sqlite", "both"):
        sqlite = asyncio.run(_bench_backend("sqlite", args))
        if sqlite is not None:
            _report_sqlite(sqlite, args)
    if args.backend in ("postgresql", "both"):
        results = asyncio.run(_bench_backend("postgresql", args))
        if results is not None and sqlite is not None:
            _report_postgresql(results, sqlite, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
