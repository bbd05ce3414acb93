"""What does the MLflow connector cost, and how soon does an MLflow change arrive as an event?

Starts a real ``mlflow server`` (SQLite, from this virtualenv's ``mlflow`` package), a real
``mlgrid serve`` and a loopback webhook receiver, all on this machine, then measures in one run:

* **latency** — MLflow operation (a new model version; an alias move) → the event's receipt at
  the receiver, through the connector polling alone (``pollIntervalSeconds`` = ``--interval``)
  and with MLflow webhooks ringing the connector's doorbell; beside it the **baseline**: MLflow's
  own webhook for the same operation, received directly by the receiver;
* **outbox intake** (``--outbox``, needs PostgreSQL on 127.0.0.1:5432, ``MLGRID_BENCH_PG`` to
  change it) — a second ``mlflow server`` with the outbox plugin (``MLGRID_OUTBOX=1``) on a
  PostgreSQL database of its own, a connector with ``intake: outbox``: operation (new version,
  alias move, run failed without an end time) → receipt p50/p99 (goal p99 ≤ 1 s); then MLflow's
  own request latency for ``runs/update`` and ``model-versions/create`` with and without the
  plugin (``benchmarks/mlflow_outbox.py``, run as a child so both figures print together);
* **poll cost** — one incremental sync in-process (``ConnectorService.sync`` on a temporary
  SQLite database) with ``--runs`` runs in MLflow of which ``--open`` are still running: CPU
  milliseconds of the mlgrid process per cycle and MLflow requests per cycle (the goal is ≤ 5
  requests with 20,000 runs and 50 open).

    .venv/bin/python benchmarks/mlflow_connector.py                       # 1,000 runs
    .venv/bin/python benchmarks/mlflow_connector.py --runs 20000 --open 50 --trials 10
    .venv/bin/python benchmarks/mlflow_connector.py --outbox --trials 30   # + the outbox intake

Bounded: ``--trials`` operations per latency series, each waited for at most 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from _common import free_port, percentile

SECRET = "bench-secret"


class Arrivals:
    """A loopback receiver recording when each (path, key) first arrived."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()
        self.port = free_port()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                now = time.monotonic()
                if self.headers.get("aeg-event-type") == "SubscriptionValidation":
                    code = json.loads(body)[0]["data"]["validationCode"]
                    reply = json.dumps({"validationResponse": code}).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                    return
                payload = json.loads(body or b"null")
                keys: list[str] = []
                if isinstance(payload, list):  # Event Grid events from mlgrid
                    keys = [
                        e["subject"] + "|" + e["data"].get("ModelIds", e["data"].get("ModelVersion", ""))
                        for e in payload
                    ]
                elif isinstance(payload, dict):  # MLflow's own webhook
                    data = payload.get("data", {})
                    entity, name = payload.get("entity"), data.get("name")
                    keys = [f"{entity}|{name}|{data.get('alias', '')}|{data.get('version')}"]
                with outer.lock:
                    for key in keys:
                        outer.seen.setdefault((self.path, key), now)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, path: str, key: str, timeout: float = 60.0) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if (path, key) in self.seen:
                    return self.seen[(path, key)]
            time.sleep(0.005)
        return None


def start_mlflow(
    work: Path, backend: str | None = None, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGRID_"))}
    env.update(
        MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",
        MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",
        MLFLOW_WEBHOOK_CACHE_TTL="1",
    )
    env.update(extra_env or {})
    log = (work / f"mlflow-{port}.log").open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend or f"sqlite:///{work / 'mlflow.db'}",
            "--default-artifact-root",
            str(work / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("mlflow server did not start")


def start_mlgrid(work: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLGRID_")}
    data = work / "mlgrid"
    data.mkdir()
    log = (work / "mlgrid.log").open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlgrid.cli.main",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data),
            "--log-level",
            "warning",
            "--no-ui",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return process, url, (data / "admin.token").read_text().strip()
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("mlgrid did not start")


def mlflow_api(url: str, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    api = url + "/api/2.0/mlflow" + path
    reply = (
        httpx.request(method, api, json=body, timeout=60) if method != "GET" else httpx.get(api, params=body)
    )
    if reply.status_code != 200:
        raise SystemExit(f"MLflow answered {method} {path} with {reply.status_code}: {reply.text[:300]}")
    result: dict[str, Any] = reply.json() if reply.content else {}
    return result


def latency_series(
    mlflow: str, arrivals: Arrivals, model: str, trials: int, hook_path: str, mlgrid_path: str
) -> dict[str, list[float]]:
    """For each trial: a new version, then moving ``champion`` to it; time to each receipt."""
    out: dict[str, list[float]] = {
        "version/connector": [],
        "alias/connector": [],
        "version/mlflow-webhook": [],
        "alias/mlflow-webhook": [],
    }
    for _ in range(trials):
        sent = time.monotonic()
        version = mlflow_api(mlflow, "POST", "/model-versions/create", {"name": model, "source": "s3://bench/model"})[
            "model_version"
        ]["version"]
        got = arrivals.wait(mlgrid_path, f"models/{model}:{version}|{version}")
        mine = arrivals.wait(hook_path, f"model_version|{model}||{version}", timeout=5)
        if got is not None:
            out["version/connector"].append(got - sent)
        if mine is not None:
            out["version/mlflow-webhook"].append(mine - sent)
        sent = time.monotonic()
        mlflow_api(
            mlflow,
            "POST",
            "/registered-models/alias",
            {"name": model, "alias": "champion", "version": version},
        )
        got = arrivals.wait(mlgrid_path, f"endpoints/{model}@champion|{model}:{version}")
        mine = arrivals.wait(hook_path, f"model_version_alias|{model}|champion|{version}", timeout=5)
        if got is not None:
            out["alias/connector"].append(got - sent)
        if mine is not None:
            out["alias/mlflow-webhook"].append(mine - sent)
    return out


def outbox_series(
    mlflow: str, arrivals: Arrivals, model: str, experiment_id: str, trials: int
) -> dict[str, list[float]]:
    """Intake outbox: a new version, the alias moved to it, a run failed without an end time."""
    out: dict[str, list[float]] = {"version": [], "alias": [], "failed": []}
    for _ in range(trials):
        sent = time.monotonic()
        made = mlflow_api(mlflow, "POST", "/model-versions/create", {"name": model, "source": "s3://bench/model"})
        version = made["model_version"]["version"]
        got = arrivals.wait("/mlgrid", f"models/{model}:{version}|{version}")
        if got is not None:
            out["version"].append(got - sent)
        sent = time.monotonic()
        move = {"name": model, "alias": "champion", "version": version}
        mlflow_api(mlflow, "POST", "/registered-models/alias", move)
        got = arrivals.wait("/mlgrid", f"endpoints/{model}@champion|{model}:{version}")
        if got is not None:
            out["alias"].append(got - sent)
        run = mlflow_api(mlflow, "POST", "/runs/create", {"experiment_id": experiment_id, "start_time": 1})
        run_id = run["run"]["info"]["run_id"]
        sent = time.monotonic()
        mlflow_api(mlflow, "POST", "/runs/update", {"run_id": run_id, "status": "FAILED"})
        got = arrivals.wait("/mlgrid", f"experiments/{experiment_id}/runs/{run_id}|")
        if got is not None:
            out["failed"].append(got - sent)
    return out


def pg_database(create: bool, name: str) -> str:
    """Create (or drop) a PostgreSQL database on the benchmark's server; its URL."""
    import psycopg

    admin = os.environ.get("MLGRID_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')
        else:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return admin.rsplit("/", 1)[0] + "/" + name


def run_outbox(work: Path, mlgrid: str, headers: dict[str, str], arrivals: Arrivals, args: Any) -> None:
    name = f"bench_outbox_{uuid.uuid4().hex[:8]}"
    database = pg_database(True, name)
    process, mlflow = start_mlflow(work, database, {"MLGRID_OUTBOX": "1"})
    try:
        model, experiment = "bench-outbox", "bench-outbox"
        mlflow_api(mlflow, "POST", "/registered-models/create", {"name": model})
        made = mlflow_api(mlflow, "POST", "/experiments/create", {"name": experiment})
        experiment_id = made["experiment_id"]
        body = {
            "properties": {
                "trackingUri": mlflow,
                "intake": "outbox",
                "databaseUrl": database,
                "pollIntervalSeconds": args.interval,
                "deploymentAliases": ["champion"],
                "experiments": [experiment],
            }
        }
        httpx.put(
            f"{mlgrid}/workspaces/bench/connectors/coutbox", json=body, headers=headers, timeout=60
        ).raise_for_status()
        time.sleep(max(3.0, 3 * args.interval))  # the first (silent) sync
        series = outbox_series(mlflow, arrivals, model, experiment_id, args.trials)
        print(f"\nlatency, connector intake outbox (PostgreSQL, LISTEN; fallback poll {args.interval:g} s):")
        print(f"  model version → ModelRegistered: {fmt(series['version'])}")
        print(f"  alias move    → ModelDeployed:   {fmt(series['alias'])}")
        print(f"  run FAILED (no end time) → RunStatusChanged: {fmt(series['failed'])}")
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        pg_database(False, name)
    print("\nMLflow's request latency with and without the plugin (mlflow_outbox.py):", flush=True)
    script = str(Path(__file__).with_name("mlflow_outbox.py"))
    child = [sys.executable, script, "--requests", str(args.requests)]
    subprocess.run([*child, "--postgresql"], check=False)


def fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    ms = sorted(v * 1000 for v in values)
    return f"p50 {percentile(ms, 0.5):7.0f} ms  p99 {percentile(ms, 0.99):7.0f} ms  (n={len(ms)})"


async def poll_cost(mlflow: str, work: Path, runs: int, open_runs: int) -> None:
    from mlgrid.auth.secretbox import SecretBox, load_or_create_key
    from mlgrid.broker.ingest import Ingestor
    from mlgrid.broker.routing import Router
    from mlgrid.broker.topics import TopicService
    from mlgrid.config import Settings
    from mlgrid.connectors.service import ConnectorService
    from mlgrid.metrics import Metrics
    from mlgrid.store import migrate
    from mlgrid.store.database import Database
    from mlgrid.workspace.files import WorkspaceFiles
    from mlgrid.workspace.service import WorkspaceService

    experiment = f"cost-{uuid.uuid4().hex[:6]}"
    experiment_id = mlflow_api(mlflow, "POST", "/experiments/create", {"name": experiment})["experiment_id"]
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=mlflow + "/api/2.0/mlflow", timeout=60) as http:
        semaphore = asyncio.Semaphore(8)

        async def one(index: int) -> None:
            async with semaphore:
                made = await http.post(
                    "/runs/create", json={"experiment_id": experiment_id, "start_time": 1000}
                )
                if index >= open_runs:
                    run_id = made.json()["run"]["info"]["run_id"]
                    await http.post(
                        "/runs/update", json={"run_id": run_id, "status": "FINISHED", "end_time": 2000}
                    )

        await asyncio.gather(*(one(i) for i in range(runs)))
    print(f"created {runs} runs ({open_runs} open) in {time.monotonic() - started:.0f} s")
    data = work / f"cost-{runs}"
    data.mkdir()
    db = Database.connect(f"sqlite:///{data / 'mlgrid.db'}")
    await migrate.upgrade(db)
    box = SecretBox(load_or_create_key(data / "secret.key"))
    core = WorkspaceService(
        db,
        TopicService(db, Settings(data_dir=data), box, "s"),
        Ingestor(db, Router(), Metrics()),
        WorkspaceFiles(data),
        subscription_id="s",
    )
    service = ConnectorService(core, box, node_id="bench")
    await core.put("cost", {"properties": {}})
    await service.put("cost", "mlflow", {"properties": {"trackingUri": mlflow, "experiments": [experiment]}})
    row = await service.get("cost", "mlflow")
    client = service.client(row)
    cpu, wall = time.process_time(), time.monotonic()
    first = await service.sync(row, client)
    print(
        f"first sync (full sweep of {runs} runs): {first.requests} MLflow requests, "
        f"{(time.process_time() - cpu) * 1000:.0f} ms CPU, {(time.monotonic() - wall) * 1000:.0f} ms wall"
    )
    cycles = 10
    cpu, wall, requests = time.process_time(), time.monotonic(), 0
    for _ in range(cycles):
        row = await service.get("cost", "mlflow")
        result = await service.sync(row, client, full=False)
        requests += result.requests
    per_cpu = (time.process_time() - cpu) * 1000 / cycles
    per_wall = (time.monotonic() - wall) * 1000 / cycles
    print(
        f"incremental poll with {runs} runs, {open_runs} open: "
        f"{requests / cycles:.1f} MLflow requests/cycle, "
        f"{per_cpu:.1f} ms CPU/cycle, {per_wall:.0f} ms wall/cycle"
    )
    await client.close()
    await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=1.0, help="pollIntervalSeconds of the connector")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--open", type=int, default=50)
    parser.add_argument("--outbox", action="store_true", help="also measure the outbox intake (PostgreSQL)")
    parser.add_argument("--requests", type=int, default=200, help="per kind, the plugin's MLflow overhead")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlgrid-bench-mlflow-"))
    mlflow_process, mlflow = start_mlflow(work)
    mlgrid_process, mlgrid, token = start_mlgrid(work)
    arrivals = Arrivals()
    try:
        from mlflow.tracking import MlflowClient

        headers = {"Authorization": f"Bearer {token}"}
        httpx.put(mlgrid + "/workspaces/bench", json={"properties": {}}, headers=headers).raise_for_status()
        httpx.put(
            mlgrid + "/workspaces/bench/eventSubscriptions/all",
            headers=headers,
            timeout=60,
            json={
                "properties": {
                    "destination": {
                        "endpointType": "WebHook",
                        "properties": {"endpointUrl": f"http://127.0.0.1:{arrivals.port}/mlgrid"},
                    }
                }
            },
        ).raise_for_status()
        client = MlflowClient(tracking_uri=mlflow)
        for mode in ("polling", "doorbell"):
            model = f"bench-{mode}"
            client.create_registered_model(model)
            name = f"c{mode}"
            body = {
                "properties": {
                    "trackingUri": mlflow,
                    "pollIntervalSeconds": args.interval,
                    "deploymentAliases": ["champion"],
                    "webhookSecret": SECRET,
                    "experiments": ["none"],
                }
            }
            httpx.put(
                f"{mlgrid}/workspaces/bench/connectors/{name}", json=body, headers=headers, timeout=60
            ).raise_for_status()
            if mode == "doorbell":
                # The connector's doorbell, and (for the baseline) MLflow's webhook to the receiver.
                client.create_webhook(
                    name="doorbell",
                    url=f"{mlgrid}/workspaces/bench/connectors/{name}/webhook",
                    events=["model_version.created", "model_version_alias.created"],
                    secret=SECRET,
                )
                client.create_webhook(
                    name="direct",
                    url=f"http://127.0.0.1:{arrivals.port}/mlflow",
                    events=["model_version.created", "model_version_alias.created"],
                )
                time.sleep(2)  # MLflow caches webhook subscriptions (MLFLOW_WEBHOOK_CACHE_TTL=1)
            time.sleep(max(3.0, 3 * args.interval))  # the first (silent) sync
            series = latency_series(mlflow, arrivals, model, args.trials, "/mlflow", "/mlgrid")
            httpx.patch(
                f"{mlgrid}/workspaces/bench/connectors/{name}",
                headers=headers,
                json={"properties": {"paused": True}},
                timeout=60,
            ).raise_for_status()
            print(f"\nlatency, connector {mode} (poll interval {args.interval:g} s):")
            print(f"  model version → ModelRegistered: {fmt(series['version/connector'])}")
            print(f"  alias move    → ModelDeployed:   {fmt(series['alias/connector'])}")
            if mode == "doorbell":
                print("baseline, MLflow's own webhook straight to the receiver:")
                print(f"  model_version.created:           {fmt(series['version/mlflow-webhook'])}")
                print(f"  model_version_alias.created:     {fmt(series['alias/mlflow-webhook'])}")
        if args.outbox:
            run_outbox(work, mlgrid, headers, arrivals, args)
        print()
        asyncio.run(poll_cost(mlflow, work, args.runs, args.open))
    finally:
        arrivals.server.shutdown()
        for process in (mlgrid_process, mlflow_process):
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
