"""How fast does mlgrid deliver to webhooks, and how close is that to raw HTTP?

Starts a real ``mlgrid serve`` process (SQLite in a temporary data directory by default; or a
fresh PostgreSQL database on 127.0.0.1:5432 with ``--backend postgresql``) and an aiohttp
webhook receiver on loopback in this process, which answers the validation handshake and
counts every delivered event. Then it prints:

(a) events/s delivered with 1 and 10 subscriptions, ``maxEventsPerBatch`` 1 (with ``--full``
    also 500 subscriptions unbatched, and 1 and 10 in batches of 100), twice:
    *end to end*, the events published in batches of 500 as fast as the server accepts them
    while it delivers them (the clock runs from the first publish to the receiver's last
    event: publishing and delivering share the server's CPU); and *from a backlog*, the events
    published first to a topic without subscriptions, then replayed to new subscriptions (the
    clock runs from the replay requests to the receiver's last event: delivery alone);
(b) publish-to-receipt latency p50/p99 at a steady 500 events/s (one event per publish
    request, one subscription, no batching): from just before each publish request is sent to
    the receiver getting the event, and the share of it spent before the publisher got its
    ``200``;
(c) the ceiling: the same receiver driven by a plain aiohttp POST loop (same body shape, the
    same 64 concurrent requests as the dispatcher's per-endpoint cap), run in its own process
    as the server is, and the ratio of (a) from a backlog, unbatched, one subscription to it:
    in deliveries/s and in CPU (the server's CPU per delivery ÷ the loop's CPU per request).

Event ids are random UUID4s, as the Azure SDK sends them. ``--report FILE`` appends the
figures as JSON lines for ``benchmarks/run.py``; any failure ends the run with a non-zero status.

Every measurement is bounded in events and in time (``--seconds``), so the whole run stays
well under three minutes (quick by default; ``--full`` for more events and batched shapes).
Client, receiver and server share the machine.

    .venv/bin/python benchmarks/delivery.py
    .venv/bin/python benchmarks/delivery.py --events 2000 --seconds 20
    .venv/bin/python benchmarks/delivery.py --latency-only          # (b) alone
    .venv/bin/python benchmarks/delivery.py --backend postgresql
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
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
    percentile,
    pg_admin,
    process_cpu_seconds,
    report,
)
from aiohttp import web

CONCURRENCY = 64


# -- the receiver ----------------------------------------------------------------------------


@dataclass
class Sink:
    """Counts events per path; remembers when each latency-probe event arrived."""

    counts: dict[str, int] = field(default_factory=dict)
    arrivals: dict[str, float] = field(default_factory=dict)
    last_arrival: dict[str, float] = field(default_factory=dict)
    waiters: list[tuple[str, int, asyncio.Future[None]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        events = json.loads(body) if body else []
        if not isinstance(events, list):
            events = [events]
        if request.headers.get("aeg-event-type") == "SubscriptionValidation":
            return web.json_response({"validationResponse": events[0]["data"]["validationCode"]})
        now = time.perf_counter()
        path = request.path
        self.counts[path] = self.counts.get(path, 0) + len(events)
        self.last_arrival[path] = now
        if path == "/latency":
            for event in events:
                self.arrivals[event["id"]] = now
        for waiter in list(self.waiters):
            wanted_path, wanted, future = waiter
            if wanted_path == path and self.counts[path] >= wanted and not future.done():
                future.set_result(None)
                self.waiters.remove(waiter)
        return web.Response(status=200)

    async def wait(self, path: str, count: int, timeout: float) -> bool:
        if self.counts.get(path, 0) >= count:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append((path, count, future))
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False


async def start_receiver(sink: Sink) -> tuple[web.AppRunner, str]:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/{tail:.*}", sink.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    return runner, f"http://127.0.0.1:{port}"


# -- the server ------------------------------------------------------------------------------


#: Servers started by this run, stopped however the run ends (SIGTERM included).
_SERVERS: list[Server] = []


def _event(event_id: str) -> dict[str, object]:
    return {
        "id": event_id,
        "subject": "bench/items/1",
        "eventType": "Bench.ItemCreated",
        "eventTime": EVENT_TIME,
        "dataVersion": "1.0",
        "data": {"score": 0.25, "tag": "abc"},
    }


class Bench:
    def __init__(self, server: Server, session: aiohttp.ClientSession, receiver_url: str) -> None:
        self.server = server
        self.session = session
        self.receiver_url = receiver_url
        self.admin = {"Authorization": f"Bearer {server.admin_token}"}

    async def topic_with_subscriptions(self, subscriptions: int, batch: int, path: str) -> tuple[str, str]:
        topic, key = await create_topic(self.session, self.server, self.admin)
        await self.add_subscriptions(topic, subscriptions, batch, path)
        return topic, key

    async def add_subscriptions(self, topic: str, subscriptions: int, batch: int, path: str) -> None:
        for n in range(subscriptions):
            body = {"properties": {"destination": {"endpointType": "WebHook", "properties": {
                "endpointUrl": self.receiver_url + path, "maxEventsPerBatch": batch,
                "preferredBatchSizeInKilobytes": 1024}}}}
            async with self.session.put(
                f"{self.server.url}/topics/{topic}/eventSubscriptions/sub-{n}", json=body, headers=self.admin
            ) as response:
                if response.status not in (200, 201):
                    raise RuntimeError(f"subscription: {response.status} {await response.text()}")

    async def replay(self, topic: str, subscription: str) -> None:
        async with self.session.post(
            f"{self.server.url}/topics/{topic}/eventSubscriptions/{subscription}/replay",
            json={"from": "2000-01-01T00:00:00Z"}, headers=self.admin,
        ) as response:
            if response.status != 200:
                raise RuntimeError(f"replay: {response.status} {await response.text()}")

    async def publish(self, topic: str, key: str, events: list[dict[str, object]]) -> None:
        async with self.session.post(
            f"{self.server.url}/topics/{topic}/api/events", json=events, headers={"aeg-sas-key": key}
        ) as response:
            if response.status != 200:
                raise RuntimeError(f"publish: {response.status} {await response.text()}")


async def throughput(bench: Bench, sink: Sink, subscriptions: int, batch: int, events: int,
                     seconds: float) -> tuple[float, int]:
    path = f"/sink-{subscriptions}-{batch}-{uuid.uuid4().hex[:6]}"
    topic, key = await bench.topic_with_subscriptions(subscriptions, batch, path)
    expected = events * subscriptions
    started = time.perf_counter()
    chunk = 500
    publishes = [
        bench.publish(topic, key, [_event(str(uuid.uuid4())) for _ in range(n, min(n + chunk, events))])
        for n in range(0, events, chunk)
    ]
    for i in range(0, len(publishes), 4):  # four publish requests in flight at a time
        await asyncio.gather(*publishes[i:i + 4])
    await sink.wait(path, expected, max(0.1, seconds - (time.perf_counter() - started)))
    received = sink.counts.get(path, 0)
    elapsed = sink.last_arrival.get(path, time.perf_counter()) - started
    return (received / elapsed if elapsed > 0 else 0.0), received


async def backlog_throughput(bench: Bench, sink: Sink, subscriptions: int, batch: int, events: int,
                             seconds: float) -> tuple[float, int, float]:
    """Delivery alone: the events are published first (no subscription yet), then replayed to
    new subscriptions, and the clock runs from the replay to the receiver's last event.

    Returns (deliveries/s, deliveries received, server CPU seconds per delivery)."""
    path = f"/backlog-{subscriptions}-{batch}-{uuid.uuid4().hex[:6]}"
    topic, key = await bench.topic_with_subscriptions(0, batch, path)
    chunk = 500
    for n in range(0, events, chunk):
        await bench.publish(topic, key, [_event(str(uuid.uuid4())) for _ in range(n, min(n + chunk, events))])
    await bench.add_subscriptions(topic, subscriptions, batch, path)
    cpu_before = process_cpu_seconds(bench.server.process.pid)
    started = time.perf_counter()
    await asyncio.gather(*(bench.replay(topic, f"sub-{n}") for n in range(subscriptions)))
    await sink.wait(path, events * subscriptions, max(0.1, seconds - (time.perf_counter() - started)))
    cpu_after = process_cpu_seconds(bench.server.process.pid)
    received = sink.counts.get(path, 0)
    if not received:
        fail(f"nothing delivered to {path} within {seconds:g} s")
    elapsed = sink.last_arrival.get(path, time.perf_counter()) - started
    cpu = (cpu_after - cpu_before) / received if cpu_before is not None and cpu_after is not None else 0.0
    return (received / elapsed if elapsed > 0 else 0.0), received, cpu


async def latency(bench: Bench, sink: Sink, rate: float, seconds: float) -> Latency:
    topic, key = await bench.topic_with_subscriptions(1, 1, "/latency")
    total = int(rate * seconds)
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}
    tasks: list[asyncio.Task[None]] = []

    async def timed(event_id: str) -> None:
        await bench.publish(topic, key, [_event(event_id)])
        answered[event_id] = time.perf_counter()

    start = time.perf_counter()
    for i in range(total):
        target = start + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        event_id = str(uuid.uuid4())
        sent[event_id] = time.perf_counter()
        tasks.append(asyncio.create_task(timed(event_id)))
    await asyncio.gather(*tasks)
    await sink.wait("/latency", total, 10.0)
    samples = sorted((sink.arrivals[i] - t) * 1000 for i, t in sent.items() if i in sink.arrivals)
    publish_samples = sorted((answered[i] - t) * 1000 for i, t in sent.items() if i in answered)
    if not samples:
        return Latency(0.0, 0.0, 0.0, 0.0, 0, total)
    return Latency(
        statistics.median(samples), percentile(samples, 0.99),
        statistics.median(publish_samples), percentile(publish_samples, 0.99), len(samples), total,
    )


@dataclass(frozen=True)
class Latency:
    """Publish-to-receipt figures, and publish-to-200 figures of the same requests."""

    p50: float
    p99: float
    publish_p50: float
    publish_p99: float
    received: int
    sent: int


# -- the ceiling: a plain POST loop in its own process ----------------------------------------


async def _ceiling_worker(url: str, requests: int, seconds: float) -> None:
    body = json.dumps([_event("ceiling")]).encode()
    headers = {"Content-Type": "application/json; charset=utf-8", "aeg-event-type": "Notification"}
    pool = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=pool) as session:

        async def send() -> bool:
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                await response.read()
            return True

        cpu_started = time.process_time()
        done, _, elapsed = await bounded_load(CONCURRENCY, requests, seconds, send)
        cpu = time.process_time() - cpu_started
    print(json.dumps({"requests": done, "seconds": elapsed, "cpu": cpu}), flush=True)


async def ceiling(receiver_url: str, requests: int, seconds: float) -> tuple[float, float]:
    """The plain loop's requests/s and its own CPU seconds per request."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--ceiling-worker", receiver_url + "/ceiling",
        "--events", str(requests), "--seconds", str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        fail(f"the ceiling loop exited with {process.returncode}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    requests_done = float(result["requests"])
    return requests_done / float(result["seconds"]), float(result["cpu"]) / max(1.0, requests_done)


async def report_latency(bench: Bench, sink: Sink, args: argparse.Namespace) -> None:
    print("\n(b) publish-to-receipt latency at 500 events/s (1 subscription, unbatched)")
    result = await latency(bench, sink, 500.0, args.latency_seconds)
    print(f"    p50 {result.p50:.2f} ms   p99 {result.p99:.2f} ms   ({result.received}/{result.sent} events)")
    print(f"    of which the publish request (to its 200): p50 {result.publish_p50:.2f} ms   "
          f"p99 {result.publish_p99:.2f} ms", flush=True)


# -- main --------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="mlgrid-bench-delivery-"))
    database = ""
    url = ""
    if args.backend == "postgresql":
        database = "mlgrid_bench_" + uuid.uuid4().hex[:12]
        await pg_admin(f'CREATE DATABASE "{database}"')
        url = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"
    sink = Sink()
    runner, receiver_url = await start_receiver(sink)
    server = Server(data_dir, url)
    _SERVERS.append(server)
    try:
        async with aiohttp.ClientSession(connector=connector(64)) as session:
            await server.wait_ready(session)
            bench = Bench(server, session, receiver_url)
            print(f"mlgrid delivery benchmark ({args.backend}, {os.cpu_count()} CPUs)\n", flush=True)
            await throughput(bench, sink, 1, 1, min(500, args.events), args.seconds)  # warm-up
            if args.latency_only:
                await report_latency(bench, sink, args)
                return

            print("(a) delivered events/s: end to end (published in batches of 500 while they are")
            print("    delivered), and from a backlog (published first, then replayed to the subscriptions),")
            print("    with the server's CPU per delivery in the backlog case")
            print(f"    {'subscriptions':>13} {'maxEventsPerBatch':>17} {'deliveries':>10} "
                  f"{'end to end':>11} {'backlog':>10} {'µs CPU/delivery':>15}")
            rates: dict[tuple[int, int], tuple[float, float]] = {}
            shapes = ((1, 1), (10, 1), (500, 1), (1, 100), (10, 100)) if args.full else ((1, 1), (10, 1))
            for subscriptions, batch in shapes:
                events = args.events if batch == 1 else args.events * 4
                events = max(1, events // subscriptions) if subscriptions > 1 else events
                rate, received = await throughput(bench, sink, subscriptions, batch, events, args.seconds)
                backlog, _, cpu = await backlog_throughput(
                    bench, sink, subscriptions, batch, events, args.seconds
                )
                rates[(subscriptions, batch)] = (backlog, cpu)
                print(f"    {subscriptions:>13} {batch:>17} {received:>10,} {rate:>11,.0f} {backlog:>10,.0f} "
                      f"{cpu * 1e6:>15,.0f}", flush=True)

            await report_latency(bench, sink, args)

            print("\n(c) ceiling: plain aiohttp POST loop to the same receiver (64 concurrent, own process)")
            top, top_cpu = await ceiling(receiver_url, args.events * 4, args.seconds)
            ours, ours_cpu = rates[(1, 1)]
            ratio = ours / top if top else 0.0
            print(f"    {top:,.0f} requests/s at {top_cpu * 1e6:,.0f} µs CPU per request; mlgrid unbatched, "
                  f"1 subscription, from a backlog: {ours:,.0f} events/s = {ratio:.2f} of the ceiling, "
                  f"{ours_cpu * 1e6:,.0f} µs CPU per delivery = {ours_cpu / top_cpu:.2f}x", flush=True)
            report(args.report, "delivery from a backlog, 1 sub, unbatched: µs server CPU/delivery",
                   ours_cpu * 1e6, top_cpu * 1e6, "bare aiohttp loop", goal="<= 1.3x")
            report(args.report, "delivery from a backlog, 10 subs, unbatched: µs server CPU/delivery",
                   rates[(10, 1)][1] * 1e6, ours_cpu * 1e6, "1 sub", goal="0.8-1.2x")
            if (500, 1) in rates:
                report(args.report, "delivery from a backlog, 500 subs, unbatched: µs server CPU/delivery",
                       rates[(500, 1)][1] * 1e6, ours_cpu * 1e6, "1 sub", goal="0.8-1.2x")
            report(args.report, "delivery from a backlog, 1 sub, unbatched: deliveries/s", ours, top,
                   "bare aiohttp loop", goal=">= 0.8")
            print("\ngoals: CPU per delivery <= 1.3x the loop's per request, rate >= 0.8 of the loop; "
                  "p50 <= 5 ms and p99 <= 50 ms at 500 events/s (SQLite)")
    finally:
        server.stop()
        await runner.cleanup()
        if database:
            await pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--full", action="store_true", help="batched shapes too, more events")
    parser.add_argument("--events", type=int, default=None,
                        help="events per unbatched measurement, x4 batched (2,000; 5,000 --full)")
    parser.add_argument("--seconds", type=float, default=25.0, help="time bound per measurement")
    parser.add_argument("--latency-seconds", type=float, default=None,
                        help="length of the 500 events/s run (3; 6 --full)")
    parser.add_argument("--report", default=None, help="append figures as JSON lines to this file")
    parser.add_argument("--latency-only", action="store_true", help="measure (b) alone, after a warm-up")
    parser.add_argument("--ceiling-worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.events = args.events or (5000 if args.full else 2000)
    args.latency_seconds = args.latency_seconds or (6.0 if args.full else 3.0)
    if args.ceiling_worker:
        asyncio.run(_ceiling_worker(args.ceiling_worker, args.events, args.seconds))
        return

    def terminated(_signum: int, _frame: object) -> None:
        for server in _SERVERS:
            if server.process.poll() is None:
                server.process.kill()
        sys.exit(1)

    signal.signal(signal.SIGTERM, terminated)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
