"""What does a cluster of ``mlgrid serve`` nodes on one PostgreSQL cost, per event and at rest?

Starts 1, then 2, then 3 nodes (each with a data directory of its own, the same secret key, a
``--node-id``) on one fresh PostgreSQL database on 127.0.0.1:5432, and a webhook receiver in
this process. For each cluster size it measures:

* **idle transactions/s per node**: ``pg_stat_database`` ``xact_commit + xact_rollback`` of the
  database over an idle window, divided by the nodes (``pg_stat_statements`` needs
  ``shared_preload_libraries``, i.e. a server restart, so statements are not counted; a
  transaction is one or more statements). PostgreSQL flushes these counters about once a
  second (idle backends after up to 10 s), so short windows are approximate;
* **publish events/s**: a fixed number of events (3,000; 10,000 with ``--full``) in batches of
  50, 8 requests in flight, spread round-robin over the nodes, one webhook subscription
  (unbatched delivery); **delivery events/s** over the same run (first publish to the
  receiver's last event, once the backlog is drained);
* **CPU per event** of the nodes (all their processes' user+system time) and of PostgreSQL (the
  backends connected to the database, read from ``/proc``; the WAL writer and checkpointer are
  not counted) over that run, per event published and delivered once;
* **publish→receipt latency** p50/p99 at a steady rate, one event per request, round-robin;
* **takeover** (2 and 3 nodes, or ``--takeover-nodes``): events published to node 1 for a slow
  receiver; node 1 is killed with SIGKILL while it holds claimed deliveries; the time until the
  first of those is received from another node (delivery resumed elsewhere), and until all are.

Floors, measured in the same run: a bare asyncpg loop inserting the same rows (50 events and
their 50 deliveries per transaction, in copies of the two tables with the same indexes, 8
connections) for publishing and its PostgreSQL CPU per event; a bare aiohttp POST loop to the
same receiver for delivery; for latency, an asyncpg INSERT commit followed by a POST to the
receiver, at the same rate. The idle floor is the goal itself (1 query/s per node); the
takeover floor is the target (10 s).

The machine is shared (two cores, other people's work): absolute figures move with their load,
ratios less. ``--quick`` keeps the run under two minutes; ``--report FILE`` appends the figures
for ``benchmarks/run.py``.

    .venv/bin/python benchmarks/cluster.py --quick
    .venv/bin/python benchmarks/cluster.py --nodes 1,3 --seconds 20
    .venv/bin/python benchmarks/cluster.py --idle-only --nodes 3
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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
import asyncpg
from _common import (
    EVENT_TIME,
    PG_HOST,
    PG_PORT,
    PG_USER,
    Server,
    bounded_load,
    connector,
    fail,
    free_port,
    percentile,
    pg_admin,
    process_cpu_seconds,
    report,
)
from aiohttp import web

BATCH = 50
PUBLISHERS = 8
POST_CONCURRENCY = 64

_SERVERS: list[Server] = []
#: The admin token, written by the first node ever started on the database (later clusters reuse it).
_ADMIN_TOKEN: list[str] = []


# -- the receiver ------------------------------------------------------------------------------


@dataclass
class Receiver:
    """Answers the validation handshake; records when each event id first arrived, per path."""

    arrivals: dict[str, dict[str, float]] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        events = json.loads(body) if body else []
        if not isinstance(events, list):
            events = [events]
        if request.headers.get("aeg-event-type") == "SubscriptionValidation":
            return web.json_response({"validationResponse": events[0]["data"]["validationCode"]})
        now = time.perf_counter()  # when the request came, before any answer delay
        delay = self.delays.get(request.path, 0.0)
        if delay:
            await asyncio.sleep(delay)
        seen = self.arrivals.setdefault(request.path, {})
        for event in events:
            if event["id"] in seen:
                self.duplicates[request.path] = self.duplicates.get(request.path, 0) + 1
            else:
                seen[event["id"]] = now
        return web.Response(status=200)

    def count(self, path: str) -> int:
        return len(self.arrivals.get(path, {}))

    async def wait(self, path: str, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.count(path) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.count(path) >= count


async def start_receiver(receiver: Receiver) -> tuple[web.AppRunner, str]:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    return runner, f"http://127.0.0.1:{port}"


def _event(event_id: str) -> dict[str, object]:
    return {"id": event_id, "subject": "bench/items/1", "eventType": "Bench.ItemCreated",
            "eventTime": EVENT_TIME, "dataVersion": "1.0", "data": {"score": 0.25, "tag": "abc"}}


# -- PostgreSQL: counters and backend CPU ------------------------------------------------------


class Postgres:
    """A monitoring connection to the benchmark's database."""

    def __init__(self, conn: asyncpg.Connection, database: str) -> None:
        self.conn = conn
        self.database = database

    async def transactions(self) -> int:
        row = await self.conn.fetchrow(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", self.database)
        return int(row[0])

    async def backend_pids(self) -> list[int]:
        rows = await self.conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", self.database)
        return [int(r[0]) for r in rows]

    async def backend_cpu(self) -> dict[int, float]:
        """CPU seconds of every backend of the database now (a backend that exits takes its
        share along: the nodes' pools keep theirs open)."""
        cpu = {}
        for pid in await self.backend_pids():
            seconds = process_cpu_seconds(pid)
            if seconds is not None:
                cpu[pid] = seconds
        return cpu


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (a node's scoring or job children, if any)."""
    total = process_cpu_seconds(pid) or 0.0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return total + sum(tree_cpu(int(c)) for c in children)


# -- floors ------------------------------------------------------------------------------------


@dataclass
class Floors:
    insert_events_per_s: float = 0.0
    insert_pg_cpu_ms: float = 0.0
    insert_client_cpu_ms: float = 0.0
    post_events_per_s: float = 0.0
    latency_p50: float = 0.0
    latency_p99: float = 0.0


async def raw_floors(url: str, pg: Postgres, receiver_url: str, seconds: float, rate: float,
                     latency_seconds: float) -> Floors:
    floors = Floors()
    setup = await asyncpg.connect(url)
    await setup.execute("CREATE TABLE raw_events (LIKE events INCLUDING ALL)")
    await setup.execute("CREATE TABLE raw_deliveries (LIKE deliveries INCLUDING ALL)")
    await setup.close()
    pool = await asyncpg.create_pool(url, min_size=PUBLISHERS, max_size=PUBLISHERS)
    assert pool is not None
    insert_events = (
        "INSERT INTO raw_events (topic_key, event_id, event_type, subject, published_at, body) "
        "SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::text[], $5::float8[], "
        "$6::text[]) RETURNING seq")
    insert_deliveries = (
        "INSERT INTO raw_deliveries "
        "(event_seq, subscription_id, state, attempts, next_attempt_at, created_at) "
        "SELECT s, 'raw', 'pending', 0, $2, $2 FROM unnest($1::bigint[]) AS s")
    body = json.dumps(_event("x"))

    async def insert_batch(size: int) -> None:
        now = time.time()
        async with pool.acquire() as conn, conn.transaction():
            ids = [str(uuid.uuid4()) for _ in range(size)]
            rows = await conn.fetch(insert_events, ["raw"] * size, ids, ["Bench.ItemCreated"] * size,
                                    ["bench/items/1"] * size, [now] * size, [body] * size)
            await conn.execute(insert_deliveries, [r[0] for r in rows], now)

    async def send() -> bool:
        await insert_batch(BATCH)
        return True

    pg_before = await pg.backend_cpu()
    client_before = time.process_time()
    made, _, elapsed = await bounded_load(PUBLISHERS, 10**9, seconds, send)
    client_cpu = time.process_time() - client_before
    pg_cpu = cpu_delta(pg_before, await pg.backend_cpu())
    events = made * BATCH
    floors.insert_events_per_s = events / elapsed
    floors.insert_pg_cpu_ms = pg_cpu / events * 1000
    floors.insert_client_cpu_ms = client_cpu / events * 1000

    post_body = json.dumps([_event("ceiling")]).encode()
    headers = {"Content-Type": "application/json; charset=utf-8", "aeg-event-type": "Notification"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=POST_CONCURRENCY)) as session:

        async def post() -> bool:
            async with session.post(receiver_url + "/ceiling", data=post_body, headers=headers) as response:
                await response.read()
            return True

        posted, _, elapsed = await bounded_load(POST_CONCURRENCY, 10**9, seconds, post)
        floors.post_events_per_s = posted / elapsed

        samples: list[float] = []

        async def one() -> None:
            started = time.perf_counter()
            await insert_batch(1)
            raw_url = receiver_url + "/raw-latency"
            async with session.post(raw_url, data=post_body, headers=headers) as response:
                await response.read()
            samples.append((time.perf_counter() - started) * 1000)

        await paced(rate, latency_seconds, one)
        floors.latency_p50 = statistics.median(samples)
        floors.latency_p99 = percentile(samples, 0.99)
    await pool.close()
    return floors


async def paced(rate: float, seconds: float, one: object) -> None:
    """Start ``one()`` ``rate`` times a second for ``seconds``; wait for all of them."""
    assert callable(one)
    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)


# -- the cluster -------------------------------------------------------------------------------


@dataclass
class ClusterFigures:
    nodes: int
    idle_tx_per_node_s: float = 0.0
    publish_events_per_s: float = 0.0
    delivery_events_per_s: float = 0.0
    delivered: int = 0
    published: int = 0
    node_cpu_ms: float = 0.0
    pg_cpu_ms: float = 0.0
    latency_p50: float = 0.0
    latency_p99: float = 0.0
    latency_received: int = 0
    latency_sent: int = 0
    takeover_first_s: float | None = None
    takeover_all_s: float | None = None
    orphans: int = 0
    last_delivery_s: float = 0.0


class Cluster:
    def __init__(self, nodes: int, url: str, root: Path, secret: str) -> None:
        self.servers: list[Server] = []
        self.url = url
        self.root = root
        self.secret = secret
        self.size = nodes

    def start_one(self, i: int) -> Server:
        data_dir = self.root / f"node-{i}"
        data_dir.mkdir(parents=True, exist_ok=True)
        node_args = ("--secret-key", self.secret, "--node-id", f"node-{i}")
        server = Server(data_dir, self.url, extra_args=node_args)
        _SERVERS.append(server)
        self.servers.append(server)
        return server

    async def start(self, session: aiohttp.ClientSession) -> None:
        first = self.start_one(1)  # migrates the database
        await first.wait_ready(session, 60.0)
        others = [self.start_one(i) for i in range(2, self.size + 1)]
        await asyncio.gather(*(s.wait_ready(session, 60.0) for s in others))

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


async def put_ok(session: aiohttp.ClientSession, url: str, body: object, headers: dict[str, str]) -> None:
    async with session.put(url, json=body, headers=headers) as response:
        if response.status not in (200, 201):
            fail(f"PUT {url}: {response.status} {await response.text()}")


async def measure_cluster(nodes: int, url: str, pg: Postgres, receiver: Receiver,
                          receiver_url: str, secret: str, args: argparse.Namespace) -> ClusterFigures:
    figures = ClusterFigures(nodes)
    root = Path(tempfile.mkdtemp(prefix=f"mlgrid-bench-cluster-{nodes}-"))
    cluster = Cluster(nodes, url, root, secret)
    async with aiohttp.ClientSession(connector=connector(64)) as session:
        try:
            await cluster.start(session)
            first = cluster.servers[0]
            if (first.data_dir / "admin.token").exists():  # the first node on the database wrote it
                _ADMIN_TOKEN.append(first.admin_token)
            admin = {"Authorization": f"Bearer {_ADMIN_TOKEN[0]}"}
            topic = f"cluster-{nodes}-{uuid.uuid4().hex[:6]}"
            await put_ok(session, f"{first.url}/topics/{topic}", {}, admin)
            async with session.post(f"{first.url}/topics/{topic}/listKeys", headers=admin) as response:
                key = str((await response.json())["key1"])
            paths = {name: f"/{name}-{nodes}" for name in ("load", "latency", "takeover")}
            for name, path in paths.items():
                destination = {"endpointType": "WebHook", "properties": {"endpointUrl": receiver_url + path}}
                await put_ok(session, f"{first.url}/topics/{topic}/eventSubscriptions/{name}",
                             {"properties": {"destination": destination, "filter": {
                                 "subjectBeginsWith": f"/{name}/"}}}, admin)

            # Idle: nothing published; the window also lets every node see the subscriptions.
            await asyncio.sleep(args.idle_settle_seconds)
            before = await pg.transactions()
            await asyncio.sleep(args.idle_seconds)
            figures.idle_tx_per_node_s = (await pg.transactions() - before - 1) / args.idle_seconds / nodes
            if args.idle_only:
                return figures

            async def publish(server: Server, events: list[dict[str, object]]) -> None:
                async with session.post(f"{server.url}/topics/{topic}/api/events", json=events,
                                        headers={"aeg-sas-key": key}) as response:
                    if response.status != 200:
                        fail(f"publish: {response.status} {await response.text()}")

            # Throughput and CPU.
            turn = 0
            published = 0

            async def send() -> bool:
                nonlocal turn, published
                server = cluster.servers[turn % nodes]
                turn += 1
                events = []
                for _ in range(BATCH):
                    event = _event(str(uuid.uuid4()))
                    event["subject"] = "/load/x"
                    events.append(event)
                await publish(server, events)
                published += BATCH
                return True

            node_before = sum(tree_cpu(s.process.pid) for s in cluster.servers)
            pg_before = await pg.backend_cpu()
            started = time.perf_counter()
            _, _, publish_elapsed = await bounded_load(PUBLISHERS, args.events // BATCH, args.seconds, send)
            await receiver.wait(paths["load"], published, args.drain_seconds)
            node_cpu = sum(tree_cpu(s.process.pid) for s in cluster.servers) - node_before
            pg_cpu = cpu_delta(pg_before, await pg.backend_cpu())
            arrivals = receiver.arrivals.get(paths["load"], {})
            figures.published = published
            figures.delivered = len(arrivals)
            figures.publish_events_per_s = published / publish_elapsed
            last = max(arrivals.values(), default=started)
            figures.delivery_events_per_s = len(arrivals) / max(1e-9, last - started)
            figures.last_delivery_s = last - started
            if len(arrivals) < published:  # say where the rest are
                rows = await pg.conn.fetch(
                    "SELECT d.state, d.last_outcome, d.attempts, d.claimed_by IS NOT NULL, count(*), "
                    "round((max(d.lease_until) - extract(epoch FROM now()))::numeric, 1), "
                    "max(d.attempts_started) "
                    "FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id "
                    "WHERE s.name_key = 'load' AND s.topic_key = $1 GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC",
                    topic.lower())
                print(f"  {nodes} node(s): {published - len(arrivals)} not received; deliveries of the load "
                      f"subscription by (state, last outcome, attempts, claimed, count, lease left s, "
                      f"attempts started): "
                      f"{[tuple(r) for r in rows]}", flush=True)
                for server in cluster.servers:
                    async with session.get(f"{server.url}/metrics", headers=admin) as response:
                        wanted = ("mlgrid_dispatcher_queue_depth", "mlgrid_dispatcher_in_flight")
                        gauges = [line for line in (await response.text()).splitlines()
                                  if line.startswith(wanted)]
                    print(f"    {server.url}: {gauges}", flush=True)
                    log_lines = (server.data_dir / "server.log").read_text(errors="replace").splitlines()
                    warnings = [line for line in log_lines if "WARNING" in line or "ERROR" in line]
                    print(f"    its log: {len(warnings)} warnings/errors; the last: {warnings[-3:]}",
                          flush=True)
            figures.node_cpu_ms = node_cpu / max(1, published) * 1000
            figures.pg_cpu_ms = pg_cpu / max(1, published) * 1000

            # Latency at a steady rate.
            sent: dict[str, float] = {}

            async def one() -> None:
                event_id = str(uuid.uuid4())
                event = _event(event_id)
                event["subject"] = "/latency/x"
                sent[event_id] = time.perf_counter()
                await publish(cluster.servers[len(sent) % nodes], [event])

            await paced(args.rate, args.latency_seconds, one)
            await receiver.wait(paths["latency"], len(sent), 10.0)
            got = receiver.arrivals.get(paths["latency"], {})
            samples = [(got[i] - t) * 1000 for i, t in sent.items() if i in got]
            figures.latency_sent, figures.latency_received = len(sent), len(samples)
            if samples:
                figures.latency_p50 = statistics.median(samples)
                figures.latency_p99 = percentile(samples, 0.99)

            if nodes in args.takeover_nodes and nodes >= 2:
                await takeover(figures, cluster, pg, receiver, paths["takeover"], publish, args)
        finally:
            cluster.stop()
            shutil.rmtree(root, ignore_errors=True)
    return figures


async def takeover(figures: ClusterFigures, cluster: Cluster, pg: Postgres, receiver: Receiver, path: str,
                   publish: object, args: argparse.Namespace) -> None:
    """Kill node 1 while it holds claimed deliveries; time until another node delivers them."""
    assert callable(publish)
    receiver.delays[path] = 0.3  # slow enough that node 1 still holds claims when it dies
    victim = cluster.servers[0]
    ids = [str(uuid.uuid4()) for _ in range(200)]
    events = [dict(_event(i), subject="/takeover/x") for i in ids]
    await publish(victim, events)
    await receiver.wait(path, 5, 20.0)
    rows = await pg.conn.fetch(
        "SELECT e.event_id FROM deliveries d JOIN events e ON e.seq = d.event_seq "
        "WHERE d.claimed_by = 'node-1' AND d.state = 'pending'")
    orphans = {r[0] for r in rows}
    victim.process.send_signal(signal.SIGKILL)
    killed = time.perf_counter()
    victim.process.wait(10)
    figures.orphans = len(orphans)
    if not orphans:
        return
    deadline = time.monotonic() + args.takeover_seconds
    first: float | None = None
    while time.monotonic() < deadline:
        got = receiver.arrivals.get(path, {})
        arrived = [got[i] for i in orphans if i in got and got[i] > killed]
        if arrived and first is None:
            first = min(arrived) - killed
        if len([i for i in orphans if i in got]) == len(orphans):
            figures.takeover_all_s = max(got[i] for i in orphans) - killed
            break
        if first is not None and time.perf_counter() - killed > first + args.after_first_seconds:
            break  # resumed: the rest drains at the receiver's pace
        await asyncio.sleep(0.05)
    figures.takeover_first_s = first
    receiver.delays.pop(path, None)


# -- main --------------------------------------------------------------------------------------


def print_table(floors: Floors, results: list[ClusterFigures], report_path: str | None) -> None:
    rows: list[tuple[str, float, float, str, str]] = []
    for f in results:
        n = f"{f.nodes} node{'s' if f.nodes > 1 else ''}"
        rows += [
            (f"cluster {n}: publish events/s", f.publish_events_per_s, floors.insert_events_per_s,
             "asyncpg INSERT loop", ""),
            (f"cluster {n}: delivery events/s", f.delivery_events_per_s, floors.post_events_per_s,
             "aiohttp POST loop", ""),
            (f"cluster {n}: publish→receipt p50 ms", f.latency_p50, floors.latency_p50,
             "INSERT commit + POST", ""),
            (f"cluster {n}: publish→receipt p99 ms", f.latency_p99, floors.latency_p99,
             "INSERT commit + POST", ""),
            (f"cluster {n}: node CPU ms/event", f.node_cpu_ms, floors.insert_client_cpu_ms,
             "asyncpg loop client CPU", ""),
            (f"cluster {n}: PostgreSQL CPU ms/event", f.pg_cpu_ms, floors.insert_pg_cpu_ms,
             "asyncpg loop PG CPU", ""),
            (f"cluster {n}: idle transactions/s per node", f.idle_tx_per_node_s, 1.0, "goal", "<= 1"),
        ]
        if f.takeover_first_s is not None:
            rows.append((f"cluster {n}: takeover after SIGKILL, s", f.takeover_first_s, 10.0,
                         "target", "<= 10 s"))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'figure'.ljust(width)}  {'value':>10}  {'floor':>10}  ratio  floor is")
    for figure, value, floor, label, goal in rows:
        ratio = value / floor if floor else float("nan")
        print(f"{figure.ljust(width)}  {value:10.3f}  {floor:10.3f}  {ratio:5.2f}  {label}")
        report(report_path, figure, value, floor, label, goal=goal)
    for f in results:
        print(f"{f.nodes} node(s): {f.published} published, {f.delivered} delivered within the drain bound "
              f"(the last {f.last_delivery_s:.1f} s after the first publish); "
              f"latency {f.latency_received}/{f.latency_sent} received", end="")
        if f.orphans:
            all_s = "(not watched to the end)" if f.takeover_all_s is None else f"{f.takeover_all_s:.1f} s"
            first_s = "-" if f.takeover_first_s is None else f"{f.takeover_first_s:.1f} s"
            print(f"; takeover: {f.orphans} deliveries claimed by the killed node, first resumed after "
                  f"{first_s}, all after {all_s}", end="")
        print()


async def run(args: argparse.Namespace) -> None:
    database = "mlgrid_bench_cluster_" + uuid.uuid4().hex[:10]
    await pg_admin(f'CREATE DATABASE "{database}"')
    url = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"
    receiver = Receiver()
    runner, receiver_url = await start_receiver(receiver)
    monitor = await asyncpg.connect(url)
    pg = Postgres(monitor, database)
    secret = base64.b64encode(os.urandom(32)).decode()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"cluster benchmark on {database}; load average {load} at start (shared machine: noisy)",
          flush=True)
    try:
        results: list[ClusterFigures] = []
        floors: Floors | None = None
        for nodes in args.nodes:
            results.append(await measure_cluster(nodes, url, pg, receiver, receiver_url, secret, args))
            r = results[-1]
            if args.idle_only:
                print(f"  {nodes} node(s): idle {r.idle_tx_per_node_s:.2f} transactions/s per node over "
                      f"{args.idle_seconds:g} s (after {args.idle_settle_seconds:g} s to settle)", flush=True)
                continue
            print(f"  {nodes} node(s): publish {r.publish_events_per_s:,.0f}/s, delivery "
                  f"{r.delivery_events_per_s:,.0f}/s, idle {r.idle_tx_per_node_s:.2f} tx/s/node, "
                  f"p50 {r.latency_p50:.1f} ms p99 {r.latency_p99:.1f} ms, CPU node {r.node_cpu_ms:.3f} "
                  f"PG {r.pg_cpu_ms:.3f} ms/event", flush=True)
            if floors is None:  # the schema exists now: the raw loops copy its tables
                floors = await raw_floors(url, pg, receiver_url, args.floor_seconds, args.rate,
                                          args.latency_seconds)
                print(f"  floors: INSERT {floors.insert_events_per_s:,.0f} events/s "
                      f"(PG {floors.insert_pg_cpu_ms:.3f} ms/event), POST {floors.post_events_per_s:,.0f}/s, "
                      f"INSERT+POST p50 {floors.latency_p50:.1f} ms p99 {floors.latency_p99:.1f} ms",
                      flush=True)
        if args.idle_only:
            return
        assert floors is not None
        print_table(floors, results, args.report)
        duplicates = {p: n for p, n in receiver.duplicates.items() if p not in ("/ceiling", "/raw-latency")}
        if duplicates:
            print(f"duplicates received (delivery is at least once), by path: {duplicates}")
    finally:
        await monitor.close()
        await runner.cleanup()
        for server in _SERVERS:
            server.stop()
        await pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short windows: the whole run under two minutes")
    parser.add_argument("--full", action="store_true", help="longer windows")
    parser.add_argument("--nodes", default="1,2,3", help="cluster sizes to measure")
    parser.add_argument("--takeover-nodes", default=None,
                        help="cluster sizes with the SIGKILL takeover (default: the largest; none with 1)")
    parser.add_argument("--seconds", type=float, default=None, help="time bound of the publish load")
    parser.add_argument("--events", type=int, default=None, help="events published in the load run")
    parser.add_argument("--drain-seconds", type=float, default=None,
                        help="how long to wait for the load run's deliveries (15; 90 --full)")
    parser.add_argument("--report", default=None, help="append figures as JSON lines to this file")
    parser.add_argument("--idle-only", action="store_true",
                        help="measure only the idle cost, over a longer window (60 s, after 15 s to settle)")
    parser.add_argument("--idle-seconds", type=float, default=None, help="length of the idle window")
    args = parser.parse_args()
    args.nodes = [int(n) for n in args.nodes.split(",") if n.strip()]
    takeover = args.takeover_nodes or str(max(args.nodes))
    args.takeover_nodes = {int(n) for n in takeover.split(",") if n.strip()}
    quick = args.quick or not args.full
    args.seconds = args.seconds or (10.0 if quick else 30.0)
    args.events = args.events or (3_000 if quick else 10_000)
    args.floor_seconds = 3.0 if quick else 10.0
    args.idle_seconds = args.idle_seconds or (60.0 if args.idle_only else 4.0 if quick else 20.0)
    # Start-up work (first heartbeats, lease rows, loading the subscriptions) is not idle cost.
    args.idle_settle_seconds = 15.0 if args.idle_only else 1.0
    args.latency_seconds = 3.0 if quick else 10.0
    args.rate = 100.0
    args.drain_seconds = args.drain_seconds or (15.0 if quick else 90.0)
    args.takeover_seconds = 40.0
    args.after_first_seconds = 3.0 if quick else 30.0

    def terminated(_signum: int, _frame: object) -> None:
        for server in _SERVERS:
            if server.process.poll() is None:
                server.process.kill()
        sys.exit(1)

    signal.signal(signal.SIGTERM, terminated)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
