"""What the MLflow outbox plugin costs MLflow: request latency with and without it, same run.

Two ``mlflow server`` processes side by side — MLflow's own store, and the same store with the
plugin (``mlgrid+sqlite://``, or ``MLGRID_OUTBOX=1`` on PostgreSQL with ``--postgresql``) —
each on its own fresh database. Requests alternate between the two so both see the same
machine load. Measured per request, on loopback: ``runs/update`` (RUNNING → FINISHED: one
outbox row) and ``model-versions/create`` (one row). Goal: with the plugin ≤ 1.1× and ≤ +1 ms.

    python benchmarks/mlflow_outbox.py [--requests 200] [--postgresql]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from _common import PG_HOST, PG_PORT, PG_USER, free_port, percentile

API = "/api/2.0/mlflow"


class MlflowServer:
    def __init__(self, backend_uri: str, work: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        work.mkdir(parents=True, exist_ok=True)
        mlflow = Path(sys.executable).with_name("mlflow")
        child_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLGRID_", "MLFLOW_"))}
        child_env.update(env)
        self._log = (work / "mlflow.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(mlflow),
                "server",
                "--backend-store-uri",
                backend_uri,
                "--default-artifact-root",
                str(work / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=child_env,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"mlflow server exited with {self.process.returncode}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise SystemExit("mlflow server did not become ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


def call(
    client: httpx.Client, method: str, path: str, body: dict[str, object]
) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    response = client.request(method, API + path, json=body)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
    return elapsed, response.json()


def measure(servers: dict[str, MlflowServer], requests: int) -> dict[str, dict[str, list[float]]]:
    clients = {name: httpx.Client(base_url=s.url, timeout=30) for name, s in servers.items()}
    state: dict[str, tuple[str, str]] = {}
    for name, client in clients.items():
        _, created = call(client, "POST", "/experiments/create", {"name": f"bench-{uuid.uuid4().hex[:8]}"})
        model = f"bench-{uuid.uuid4().hex[:8]}"
        call(client, "POST", "/registered-models/create", {"name": model})
        state[name] = (str(created["experiment_id"]), model)
    times: dict[str, dict[str, list[float]]] = {
        n: {"runs/update": [], "model-versions/create": []} for n in servers
    }
    for i in range(requests):
        order = list(clients) if i % 2 == 0 else list(reversed(clients))
        for name in order:
            client, (experiment_id, model) = clients[name], state[name]
            _, run = call(client, "POST", "/runs/create", {"experiment_id": experiment_id, "start_time": 1})
            run_id = run["run"]["info"]["run_id"]  # type: ignore[index]
            elapsed, _ = call(
                client, "POST", "/runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": 2}
            )
            times[name]["runs/update"].append(elapsed)
            elapsed, _ = call(
                client,
                "POST",
                "/model-versions/create",
                {"name": model, "source": f"runs:/{run_id}/model", "run_id": run_id},
            )
            times[name]["model-versions/create"].append(elapsed)
    for client in clients.values():
        client.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200, help="requests of each kind per server")
    parser.add_argument("--postgresql", action="store_true", help="PostgreSQL backends instead of SQLite")
    parser.add_argument(
        "--switch", choices=["scheme", "env"], default="env",
        help="turn the plugin on by URI scheme (mlgrid+sqlite://) or by MLGRID_OUTBOX=1 (default)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlgrid-bench-outbox-"))
    databases: list[str] = []
    if args.postgresql:
        import psycopg

        names = [f"bench_outbox_{uuid.uuid4().hex[:8]}" for _ in range(2)]
        with psycopg.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True
        ) as c:
            for name in names:
                c.execute(f'CREATE DATABASE "{name}"')
        databases = names
        base = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/"
        servers = {
            "mlflow": MlflowServer(base + names[0], work / "plain", {}),
            "mlflow+outbox": MlflowServer(base + names[1], work / "plugin", {"MLGRID_OUTBOX": "1"}),
        }
    else:
        plugin_uri, plugin_env = (
            (f"mlgrid+sqlite:///{work / 'plugin.db'}", {})
            if args.switch == "scheme"
            else (f"sqlite:///{work / 'plugin.db'}", {"MLGRID_OUTBOX": "1"})
        )
        servers = {
            "mlflow": MlflowServer(f"sqlite:///{work / 'plain.db'}", work / "plain", {}),
            "mlflow+outbox": MlflowServer(plugin_uri, work / "plugin", plugin_env),
        }
    try:
        for server in servers.values():
            server.wait_ready()
        times = measure(servers, args.requests)
    finally:
        for server in servers.values():
            server.stop()
        if databases:
            import psycopg

            with psycopg.connect(
                host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True
            ) as c:
                for name in databases:
                    c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)
    backend = "PostgreSQL" if args.postgresql else "SQLite"
    print(f"MLflow request latency with and without the outbox plugin ({backend}, {args.requests} each)")
    print(f"{'request':24} {'server':14} {'p50 ms':>8} {'p99 ms':>8}")
    for kind in ("runs/update", "model-versions/create"):
        for name in servers:
            values = times[name][kind]
            p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
            print(f"{kind:24} {name:14} {p50:8.2f} {p99:8.2f}")
        base50 = percentile(times["mlflow"][kind], 0.5)
        plug50 = percentile(times["mlflow+outbox"][kind], 0.5)
        print(f"{kind:24} {'ratio p50':14} {plug50 / base50:8.2f}   (+{(plug50 - base50) * 1000:.2f} ms)")


if __name__ == "__main__":
    main()
