"""Chaos: random MLflow lifecycle operations while mlgrid is SIGKILLed and MLflow restarted.

Two client threads drive a real ``mlflow server`` through its REST API (the calls the ``mlflow``
client makes) with random operations, logging each as ground truth: runs that end FINISHED,
FAILED or KILLED — some with a backdated ``end_time``, some failed with no end time, some
terminated twice — new model versions, aliases set, moved and deleted. Meanwhile mlgrid is
killed with SIGKILL and restarted at random moments, and the MLflow server is restarted once
between two operations (the clients pause while it is down, so the ground truth stays exact;
the connector sees MLflow go away and come back). At the end, after a resync, the events the
workspace holds are compared with the ground truth:

* every run that ended FINISHED has exactly one RunCompleted, every FAILED run exactly one
  RunStatusChanged (``failed``), a KILLED run none; every version exactly one ModelRegistered;
* every deployment alias's last ModelDeployed names its final version (moves between two polls
  may be folded into one), and no alias event for a non-deployment alias;
* no event id twice, ``data.Sequencer`` strictly increasing per subject.

The same chaos runs a second time with the connector's ``intake: outbox`` against an MLflow
server with the outbox plugin on PostgreSQL (``test_chaos_outbox_intake``): there every move of
the deployment alias must arrive, exactly once and in commit order (nothing is folded), and
SIGKILLs land between mlgrid's commit and the DELETE of the drained rows too.

The counts are printed (``-s`` shows them). Bounded: a fixed number of operations per thread.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.ml_workspace import admin_client
from tests.support.mlflow_server import MlflowServer
from tests.support.server import ServerProcess
from tests.support.services import create_pg_database, drop_pg_database, need_postgres, pg_url

OPS_PER_CLIENT = 30
CLIENTS = 2
KILLS = 2
MLFLOW_RESTARTS = 1
DEPLOY_ALIAS = "champion"


@dataclass
class Truth:
    """What the clients did, as far as events are concerned (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    final_status: dict[str, str] = field(default_factory=dict)
    versions: set[str] = field(default_factory=set)
    aliases: dict[str, str | None] = field(default_factory=dict)
    operations: int = 0
    errors: list[BaseException] = field(default_factory=list)
    gate: threading.Condition = field(default_factory=threading.Condition)
    pausing: bool = False
    in_flight: int = 0
    alias_log: list[tuple[str, str | None]] = field(default_factory=list)
    """Every alias set (version) or delete (None), in MLflow's commit order."""

    def enter(self) -> None:
        """Before an operation: wait while MLflow is being restarted."""
        with self.gate:
            self.gate.wait_for(lambda: not self.pausing, timeout=300)
            self.in_flight += 1

    def leave(self) -> None:
        with self.gate:
            self.in_flight -= 1
            self.gate.notify_all()

    @contextmanager
    def paused(self, timeout: float) -> Iterator[None]:
        """No operation in flight while the body runs (a thread that died mid-operation is
        waited for at most ``timeout`` seconds)."""
        with self.gate:
            self.pausing = True
            self.gate.wait_for(lambda: self.in_flight == 0, timeout=timeout)
        try:
            yield
        finally:
            with self.gate:
                self.pausing = False
                self.gate.notify_all()


class MlflowRest:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url + "/api/2.0/mlflow", timeout=60)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        if method == "GET":
            reply = self.http.request(method, path, params=body)
        else:
            reply = self.http.request(method, path, json=body)
        assert reply.status_code == 200, f"{method} {path}: {reply.status_code} {reply.text}"
        result: dict[str, Any] = reply.json() if reply.content else {}
        return result

    def close(self) -> None:
        self.http.close()


def client_work(mlflow: MlflowServer, experiment_id: str, model: str, truth: Truth, seed: int) -> None:
    try:
        operate(mlflow, experiment_id, model, truth, seed)
    except BaseException as exc:  # reported by the test, not lost in the thread
        with truth.lock:
            truth.errors.append(exc)


def operate(mlflow: MlflowServer, experiment_id: str, model: str, truth: Truth, seed: int) -> None:
    rng = random.Random(seed)
    rest = MlflowRest(mlflow.url)
    open_runs: list[str] = []
    try:
        for _ in range(OPS_PER_CLIENT):
            truth.enter()
            op = rng.choice(["start", "start", "end", "end", "fail_no_end", "version", "alias", "unalias"])
            if op == "start" or (op in ("end", "fail_no_end") and not open_runs):
                now = int(time.time() * 1000)
                run = rest.call("POST", "/runs/create", {"experiment_id": experiment_id, "start_time": now})
                open_runs.append(run["run"]["info"]["run_id"])
            elif op == "end":
                run_id = open_runs.pop(rng.randrange(len(open_runs)))
                status = rng.choice(["FINISHED", "FAILED", "KILLED"])
                end = rng.choice([int(time.time() * 1000), 1_000])  # now, or backdated to 1970
                rest.call("POST", "/runs/update", {"run_id": run_id, "status": status, "end_time": end})
                if rng.random() < 0.3:  # a second terminate with another end time
                    rest.call(
                        "POST", "/runs/update", {"run_id": run_id, "status": status, "end_time": end + 7}
                    )
                with truth.lock:
                    truth.final_status[run_id] = status
            elif op == "fail_no_end":
                run_id = open_runs.pop(rng.randrange(len(open_runs)))
                rest.call("POST", "/runs/update", {"run_id": run_id, "status": "FAILED"})
                with truth.lock:
                    truth.final_status[run_id] = "FAILED"
            elif op == "version":
                made = rest.call(
                    "POST", "/model-versions/create", {"name": model, "source": f"s3://m/{seed}"}
                )
                with truth.lock:
                    truth.versions.add(made["model_version"]["version"])
            elif op in ("alias", "unalias"):
                alias = rng.choice([DEPLOY_ALIAS, "staging"])
                with truth.lock:
                    versions = sorted(truth.versions, key=int)
                    if op == "alias" and versions:
                        version = rng.choice(versions)
                        rest.call(
                            "POST",
                            "/registered-models/alias",
                            {"name": model, "alias": alias, "version": version},
                        )
                        truth.aliases[alias] = version
                        truth.alias_log.append((alias, version))
                    elif op == "unalias" and truth.aliases.get(alias):
                        rest.call("DELETE", "/registered-models/alias", {"name": model, "alias": alias})
                        truth.aliases[alias] = None
                        truth.alias_log.append((alias, None))
            with truth.lock:
                truth.operations += 1
            truth.leave()
            time.sleep(rng.uniform(0.0, 0.3))
        truth.enter()
        for run_id in open_runs:  # leave nothing open, so the truth is final
            rest.call("POST", "/runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": 5_000})
            with truth.lock:
                truth.final_status[run_id] = "FINISHED"
        truth.leave()
    finally:
        rest.close()


@pytest.fixture
def mlgrid(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(data_dir=tmp_path / "mlgrid")
    server.start(timeout=180)
    try:
        yield server
    finally:
        server.stop()


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.5)


@pytest.fixture
def mlflow_outbox_postgres(tmp_path: Path) -> Iterator[tuple[MlflowServer, str]]:
    """An MLflow server with the outbox plugin (``MLGRID_OUTBOX=1``) on a PostgreSQL database."""
    need_postgres()
    name = create_pg_database("mlflow_chaos_outbox")
    server = MlflowServer(pg_url(name), tmp_path / "mlflow", env={"MLGRID_OUTBOX": "1"})
    try:
        server.start(timeout=600)
        yield server, pg_url(name)
    finally:
        server.stop()
        drop_pg_database(name)


def test_chaos_no_missing_no_duplicate(mlgrid: ServerProcess, mlflow_sqlite: MlflowServer) -> None:
    chaos(mlgrid, mlflow_sqlite, {})


@pytest.mark.timeout(1500)
def test_chaos_outbox_intake(mlgrid: ServerProcess, mlflow_outbox_postgres: tuple[MlflowServer, str]) -> None:
    mlflow, database_url = mlflow_outbox_postgres
    chaos(mlgrid, mlflow, {"intake": "outbox", "databaseUrl": database_url, "fullSweepMinutes": 600})


def chaos(mlgrid: ServerProcess, mlflow: MlflowServer, intake: dict[str, Any]) -> None:
    tag = uuid.uuid4().hex[:8]
    rest = MlflowRest(mlflow.url)
    experiment_id = rest.call("POST", "/experiments/create", {"name": f"chaos-{tag}"})["experiment_id"]
    model = f"chaos-{tag}"
    rest.call("POST", "/registered-models/create", {"name": model})
    rest.close()
    ws = f"chaos{tag}"
    with mlgrid.client() as http:
        assert http.put(f"/workspaces/{ws}", json={"properties": {}}).status_code == 201
        reply = http.put(
            f"/workspaces/{ws}/connectors/mlflow",
            json={
                "properties": {
                    "trackingUri": mlflow.url,
                    "pollIntervalSeconds": 1,
                    "experiments": [f"chaos-{tag}"],
                    "deploymentAliases": [DEPLOY_ALIAS],
                    **intake,
                }
            },
        )
        assert reply.status_code == 201, reply.text

    def health() -> dict[str, Any]:
        with mlgrid.client() as http:
            body: dict[str, Any] = http.get(f"/workspaces/{ws}/connectors/mlflow").json()
        return dict(body["properties"]["health"])

    wait_for(lambda: health()["state"] == "Running", 120, "the first sync")

    truth = Truth()
    threads = [
        threading.Thread(target=client_work, args=(mlflow, experiment_id, model, truth, seed))
        for seed in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    rng = random.Random(42)
    kills = restarts = 0
    while any(t.is_alive() for t in threads) and kills < KILLS:
        time.sleep(rng.uniform(1.0, 3.0))
        mlgrid.kill()
        kills += 1
        mlgrid.start(timeout=180)
        if restarts < MLFLOW_RESTARTS and any(t.is_alive() for t in threads):
            with truth.paused(timeout=60):
                mlflow.restart()  # same port and database: the connector reconnects
            restarts += 1
    for thread in threads:
        thread.join(timeout=300)
        assert not thread.is_alive()
    assert truth.errors == []

    with mlgrid.client() as http:
        assert http.post(f"/workspaces/{ws}/connectors/mlflow:resync").status_code == 202
    wait_for(lambda: (lambda h: h["state"] == "Running" and not h["resyncPending"])(health()), 180, "resync")

    expected: dict[str, str] = {}
    for run_id, status in truth.final_status.items():
        if status == "FINISHED":
            expected[f"experiments/{experiment_id}/runs/{run_id}"] = (
                "Microsoft.MachineLearningServices.RunCompleted"
            )
        elif status == "FAILED":
            expected[f"experiments/{experiment_id}/runs/{run_id}"] = (
                "Microsoft.MachineLearningServices.RunStatusChanged"
            )
    for version in truth.versions:
        expected[f"models/{model}:{version}"] = "Microsoft.MachineLearningServices.ModelRegistered"

    def events() -> list[dict[str, Any]]:
        with admin_client(mlgrid) as sdk:
            return sdk.workspace(ws).events()

    def arrived() -> bool:
        subjects = {e["subject"] for e in events()}
        return all(s in subjects for s in expected)

    wait_for(arrived, 120, "every expected event")
    stored = events()
    ids = Counter(e["id"] for e in stored)
    per_subject: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in stored:
        per_subject[event["subject"]].append(event)
    missing = [s for s in expected if s not in per_subject]
    duplicate_ids = sum(n - 1 for n in ids.values())
    extra = [s for s, evs in per_subject.items() if s in expected and len(evs) != 1]
    unexpected = [s for s in per_subject if s not in expected and not s.startswith("endpoints/")]
    alias_events = per_subject.get(f"endpoints/{model}@{DEPLOY_ALIAS}", [])
    final = truth.aliases.get(DEPLOY_ALIAS)
    print(
        f"\nchaos: {truth.operations} operations, {kills} SIGKILLs, {restarts} MLflow restarts, "
        f"{len(expected)} expected run/version events, "
        f"{len(alias_events)} alias events; missing={len(missing)} duplicate_ids={duplicate_ids} "
        f"semantic_duplicates={len(extra)} unexpected={len(unexpected)}"
    )
    assert missing == [] and duplicate_ids == 0 and extra == [] and unexpected == []
    for subject, evs in per_subject.items():
        sequencers = [e["data"]["Sequencer"] for e in evs]
        assert sequencers == sorted(sequencers) and len(set(sequencers)) == len(sequencers), subject
        if not subject.startswith("endpoints/"):
            assert [e["eventType"] for e in evs] == [expected[subject]]
    assert not any(s.endswith("@staging") for s in per_subject)
    if final is not None:
        assert alias_events and alias_events[-1]["data"]["ModelIds"] == f"{model}:{final}"
    if intake.get("intake") == "outbox":
        # Nothing folded: every move of the deployment alias, once, in commit order.
        moves: list[str] = []
        current: str | None = None
        for alias, version in truth.alias_log:
            if alias != DEPLOY_ALIAS:
                continue
            if version is not None and version != current:
                moves.append(f"{model}:{version}")
            current = version
        print(f"outbox: {len(moves)} alias moves expected, {len(alias_events)} delivered")
        assert [e["data"]["ModelIds"] for e in alias_events] == moves
