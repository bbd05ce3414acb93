"""How many events per second does publishing accept, and how close is that to raw HTTP?

Starts a real ``mlgrid serve`` process on a loopback port (SQLite in a temporary data
directory; PostgreSQL in a fresh database on 127.0.0.1:5432 that is dropped afterwards),
creates an Event Grid schema topic and publishes from 8 concurrent aiohttp clients in batches
of 1, 100 and 1,000 events. Every 200 means the events were committed, so "accepted" is
"durable". As the baseline it measures the request rate of ``GET /healthz`` on the same server
with the same clients: the ratio ``publish requests/s ÷ healthz requests/s`` says how much of
the HTTP budget the publish path costs on top of the framework.

Each measurement is bounded both in time (``--seconds``) and in requests (``--max-requests``),
after a short warm-up. Client and server share the machine, so the figures are for the pair.
Besides the rates it prints how many CPUs the server process kept busy and the events it
accepted per second of its own CPU: on a machine shared with other work, events/s follows the
CPU share the server happened to get, while events per CPU-second measures the code.

    .venv/bin/python benchmarks/publish.py                      # SQLite and PostgreSQL
    .venv/bin/python benchmarks/publish.py --backend sqlite --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from _common import EVENT_TIME, PG_HOST, PG_PORT, PG_USER, Server, bounded_load, create_topic, pg_admin


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


def _process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, all threads included; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _batch_body(prefix: str, counter: itertools.count[int], size: int) -> bytes:
    """A JSON array of ``size`` small Event Grid events with ids unique across the run."""
    parts = []
    for _ in range(size):
        n = next(counter)
        parts.append(
            f'{{"id":"{prefix}-{n}","subject":"bench/items/{n % 100}","eventType":"Bench.ItemCreated",'
            f'"eventTime":"{EVENT_TIME}","dataVersion":"1.0","data":{{"n":{n},"score":0.25,"tag":"abc"}}}}'
        )
    return ("[" + ",".join(parts) + "]").encode()


async def _run_clients(
    server: Server,
    label: str,
    clients: int,
    seconds: float,
    max_requests: int,
    send: Callable[[], Awaitable[bool]],
    events_per_request: int,
) -> Result:
    """``clients`` tasks call ``send()`` until the time or the request budget runs out."""
    cpu_before = _process_cpu_seconds(server.process.pid)
    sent, failures, elapsed = await bounded_load(clients, max_requests, seconds, send)
    cpu_after = _process_cpu_seconds(server.process.pid)
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    ok_requests = sent - failures
    return Result(label, ok_requests, ok_requests * events_per_request, elapsed, failures, cpu)


async def _measure(server: Server, backend: str, args: argparse.Namespace) -> list[Result]:
    connector = aiohttp.TCPConnector(limit=args.clients * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        await server.wait_ready(session)
        admin = {"Authorization": f"Bearer {server.admin_token}"}
        topic, key = await create_topic(session, server, admin)
        publish_url = f"{server.url}/topics/{topic}/api/events"
        headers = {"aeg-sas-key": key, "Content-Type": "application/json"}
        prefix = uuid.uuid4().hex[:8]
        counter = itertools.count()
        first_error: list[str] = []

        async def healthz() -> bool:
            async with session.get(server.url + "/healthz") as response:
                await response.read()
                return response.status == 200

        results: list[Result] = []
        # Warm-up: connections, caches, the SQLite page cache.
        await _run_clients(server, "warm-up", args.clients, 1.0, 2_000, healthz, 0)
        if not args.skip_baseline:
            baseline = await _run_clients(
                server, f"{backend}: GET /healthz", args.clients, args.seconds, args.max_requests, healthz, 0
            )
            results.append(baseline)
        for size in args.batch_sizes:

            async def publish(size: int = size) -> bool:
                body = _batch_body(prefix, counter, size)
                async with session.post(publish_url, data=body, headers=headers) as response:
                    text = await response.read()
                    if response.status != 200 and not first_error:
                        first_error.append(f"{response.status} {text[:300]!r}")
                    return response.status == 200

            await _run_clients(server, "warm-up", args.clients, 0.5, 50, publish, size)
            budget = max(args.clients, min(args.max_requests, args.max_events // size))
            results.append(
                await _run_clients(
                    server, f"{backend}: publish batches of {size}", args.clients, args.seconds, budget,
                    publish, size,
                )
            )
        if first_error:
            print(f"  first publish error: {first_error[0]}", flush=True)
        return results


def _print(results: list[Result]) -> None:
    """One line per measurement. ``server CPUs`` is how many cores the server kept busy: below
    1.0 with idle cores left means the clients or the commit latency were the limit, not the
    server's CPU; ``per CPU-s`` is the rate the server sustains per second of its own CPU."""
    baseline = results[0].requests_per_second if results and not results[0].events else 0.0
    print(f"{'measurement':38} {'requests/s':>10} {'events/s':>10} {'vs healthz':>10} "
          f"{'server CPUs':>11} {'ev per CPU-s':>12} {'failed':>6}")
    for r in results:
        ratio = f"{r.requests_per_second / baseline:10.3f}" if baseline else f"{'-':>10}"
        events = f"{r.events_per_second:10,.0f}" if r.events else f"{'-':>10}"
        share = r.server_cpu_share
        cpus = f"{share:11.2f}" if share is not None else f"{'n/a':>11}"
        per_cpu = f"{r.events / r.server_cpu:12,.0f}" if r.events and r.server_cpu else f"{'-':>12}"
        rate = f"{r.requests_per_second:10,.0f}"
        print(f"{r.label:38} {rate} {events} {ratio} {cpus} {per_cpu} {r.failures:6d}")
    print(flush=True)


async def _bench_backend(backend: str, args: argparse.Namespace) -> None:
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
                return
            url = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"
        extra = ("--sqlite-synchronous", args.sqlite_synchronous) if backend == "sqlite" else ()
        server = Server(data_dir, url, extra_args=extra)
        try:
            results = await _measure(server, backend, args)
        finally:
            server.stop()
        _print(results)
    finally:
        if database:
            await pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--seconds", type=float, default=5.0, help="time bound per measurement (default 5)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="request bound per measurement")
    parser.add_argument("--max-events", type=int, default=1_000_000, help="event bound per measurement")
    parser.add_argument("--skip-baseline", action="store_true", help="skip GET /healthz (for profiling)")
    parser.add_argument("--batch-sizes", default="1,100,1000", help="comma-separated (default 1,100,1000)")
    parser.add_argument("--sqlite-synchronous", choices=["normal", "full"], default="normal",
                        help="the server's SQLite durability level (default normal)")
    args = parser.parse_args()
    args.batch_sizes = [int(x) for x in args.batch_sizes.split(",") if x.strip()]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"mlgrid publish benchmark: {args.clients} clients, {args.seconds:g} s per measurement, "
          f"{os.cpu_count()} CPUs, load average {load} (other work on the machine skews events/s; "
          "'ev per CPU-s' much less)\n", flush=True)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        asyncio.run(_bench_backend(backend, args))


if __name__ == "__main__":
    main()
