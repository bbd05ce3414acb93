"""The MLflow connector with ``intake: outbox``: a real ``mlflow server`` with the plugin on
PostgreSQL, a real ``mlgrid serve``, and the cases polling cannot see.

* ``update_run(status="FAILED")`` without an end time, an alias moved v1→v2→v3 within 100 ms,
  a double terminate, a backdated end time: each yields exactly the right events, in order
  (``data.Sequencer`` per subject), and a full sweep afterwards adds nothing.
* Two MLflow server processes with the plugin on one PostgreSQL database, writing at once, and
  a transaction that takes an outbox id early and commits late (after later ids were drained):
  nothing is skipped — delete-on-consume, not a watermark.

Latencies (MLflow call returned → event readable in mlgrid) are printed (``-s``); the only
time bound asserted is a generous wait deadline. The goal (≤ 1 s at p99) is measured by
``benchmarks/mlflow_connector.py``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from tests.support.ml_workspace import admin_client
from tests.support.mlflow_server import MlflowServer, need_mlflow
from tests.support.server import ServerProcess
from tests.support.services import create_pg_database, drop_pg_database, need_postgres, pg_url

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

WAIT = 60.0
"""Deadline of any one wait (the goal is 1 s; a loaded CI box may be much slower)."""
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
MODEL_DEPLOYED = "Microsoft.MachineLearningServices.ModelDeployed"
MODEL_REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"


class Rest:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url + "/api/2.0/mlflow", timeout=60)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        if method in ("GET", "DELETE"):
            reply = self.http.request(method, path, params=body)
        else:
            reply = self.http.request(method, path, json=body)
        assert reply.status_code == 200, f"{method} {path}: {reply.status_code} {reply.text}"
        return dict(reply.json()) if reply.content else {}

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="module")
def mlflow_db() -> Iterator[str]:
    need_mlflow()
    need_postgres()
    name = create_pg_database("mlflow_outbox_intake")
    try:
        yield pg_url(name)
    finally:
        drop_pg_database(name)


@pytest.fixture(scope="module")
def plugin_servers(
    mlflow_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[MlflowServer, MlflowServer]]:
    """Two MLflow server processes with the plugin (``MLGRID_OUTBOX=1``) on ONE database."""
    first = MlflowServer(mlflow_db, tmp_path_factory.mktemp("mlflow-a"), env={"MLGRID_OUTBOX": "1"})
    second = MlflowServer(mlflow_db, tmp_path_factory.mktemp("mlflow-b"), env={"MLGRID_OUTBOX": "1"})
    try:
        first.start(timeout=600)  # creates MLflow's schema and the outbox table; then the second joins
        second.start(timeout=600)
        yield first, second
    finally:
        second.stop()
        first.stop()


@pytest.fixture(scope="module")
def mlgrid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(data_dir=tmp_path_factory.mktemp("mlgrid"))
    server.start(timeout=180)
    try:
        yield server
    finally:
        server.stop()


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> float:
    """Seconds until ``predicate()``; fails after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started


class Setup:
    def __init__(self, mlgrid: ServerProcess, mlflow: MlflowServer, database_url: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.mlgrid, self.ws, self.rest = mlgrid, f"outbox{tag}", Rest(mlflow.url)
        self.experiment_name = f"outbox-{tag}"
        self.experiment_id = self.rest.call("POST", "/experiments/create", {"name": self.experiment_name})[
            "experiment_id"
        ]
        self.model = f"outbox-{tag}"
        self.rest.call("POST", "/registered-models/create", {"name": self.model})
        with mlgrid.client() as http:
            assert http.put(f"/workspaces/{self.ws}", json={"properties": {}}).status_code == 201
            reply = http.put(
                f"/workspaces/{self.ws}/connectors/mlflow",
                json={
                    "properties": {
                        "trackingUri": mlflow.url,
                        "intake": "outbox",
                        "databaseUrl": database_url,
                        "pollIntervalSeconds": 5,  # the fallback; LISTEN wakes the drain at once
                        "fullSweepMinutes": 600,
                        "experiments": [self.experiment_name],
                        "deploymentAliases": ["champion"],
                    }
                },
            )
            assert reply.status_code == 201, reply.text
            body = reply.json()["properties"]
            assert body["intake"] == "outbox" and body["hasDatabaseUrl"] is True
            assert "databaseUrl" not in body and database_url not in reply.text
        wait_for(lambda: self.health()["state"] == "Running" and not self.health()["resyncPending"], "sync")

    def health(self) -> dict[str, Any]:
        with self.mlgrid.client() as http:
            body: dict[str, Any] = http.get(f"/workspaces/{self.ws}/connectors/mlflow").json()
        return dict(body["properties"]["health"])

    def events(self) -> list[dict[str, Any]]:
        with admin_client(self.mlgrid) as sdk:
            return sdk.workspace(self.ws).events()

    def subject_events(self, subject: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["subject"] == subject]

    def run_subject(self, run_id: str) -> str:
        return f"experiments/{self.experiment_id}/runs/{run_id}"

    def new_run(self) -> str:
        start = int(time.time() * 1000)
        body = {"experiment_id": self.experiment_id, "start_time": start}
        made = self.rest.call("POST", "/runs/create", body)
        return str(made["run"]["info"]["run_id"])

    def delete(self) -> None:
        """One connector per outbox table: the next test's connector needs this one gone."""
        with self.mlgrid.client() as http:
            http.delete(f"/workspaces/{self.ws}/connectors/mlflow")
        self.rest.close()

    def resync(self) -> None:
        with self.mlgrid.client() as http:
            assert http.post(f"/workspaces/{self.ws}/connectors/mlflow:resync").status_code == 202
        wait_for(lambda: not self.health()["resyncPending"], "the full sweep", timeout=180)


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out = []
    for event in events:
        data = event["data"]
        detail = data.get("RunStatus") or data.get("ModelIds") or data.get("ModelVersion") or ""
        out.append((event["eventType"].rsplit(".", 1)[1], str(detail)))
    return out


def assert_ordered(events: list[dict[str, Any]]) -> None:
    """No id twice; ``data.Sequencer`` strictly increasing per subject, in the order stored."""
    assert max(Counter(e["id"] for e in events).values(), default=1) == 1
    per_subject: dict[str, list[str]] = defaultdict(list)
    for event in events:
        per_subject[event["subject"]].append(event["data"]["Sequencer"])
    for subject, sequencers in per_subject.items():
        assert sequencers == sorted(sequencers) and len(set(sequencers)) == len(sequencers), subject


@pytest.fixture
def connectors() -> Iterator[list[Setup]]:
    """Deletes the test's connectors afterwards, pass or fail."""
    made: list[Setup] = []
    yield made
    for setup in made:
        setup.delete()


def test_the_cases_polling_cannot_see_arrive_exactly_and_in_order(
    mlgrid: ServerProcess, plugin_servers: tuple[MlflowServer, MlflowServer], mlflow_db: str,
    connectors: list[Setup],
) -> None:
    s = Setup(mlgrid, plugin_servers[0], mlflow_db)
    connectors.append(s)
    latencies: dict[str, float] = {}
    expected: dict[str, list[tuple[str, str]]] = {}

    # update_run(status="FAILED") with no end time
    failed = s.new_run()
    s.rest.call("POST", "/runs/update", {"run_id": failed, "status": "FAILED"})
    subject = s.run_subject(failed)
    expected[subject] = [("RunStatusChanged", "failed")]
    latencies["failed without end time"] = wait_for(lambda: bool(s.subject_events(subject)), "failed run")

    # the alias moved v1 → v2 → v3 within 100 ms
    for _ in range(3):
        s.rest.call("POST", "/model-versions/create", {"name": s.model, "source": "s3://m/model"})
    wait_for(lambda: len([e for e in s.events() if e["eventType"] == MODEL_REGISTERED]) == 3, "3 versions")
    started = time.monotonic()
    for version in ("1", "2", "3"):
        move = {"name": s.model, "alias": "champion", "version": version}
        s.rest.call("POST", "/registered-models/alias", move)
    moves = time.monotonic() - started
    alias_subject = f"endpoints/{s.model}@champion"
    expected[alias_subject] = [("ModelDeployed", f"{s.model}:{v}") for v in ("1", "2", "3")]
    latencies["alias v1→v2→v3"] = wait_for(lambda: len(s.subject_events(alias_subject)) >= 3, "3 moves")

    # a double terminate (the second with another end time)
    finished = s.new_run()
    now = int(time.time() * 1000)
    s.rest.call("POST", "/runs/update", {"run_id": finished, "status": "FINISHED", "end_time": now})
    s.rest.call("POST", "/runs/update", {"run_id": finished, "status": "FINISHED", "end_time": now + 7})
    subject = s.run_subject(finished)
    expected[subject] = [("RunCompleted", "")]
    latencies["double terminate"] = wait_for(lambda: bool(s.subject_events(subject)), "finished run")

    # a backdated end time
    backdated = s.new_run()
    s.rest.call("POST", "/runs/update", {"run_id": backdated, "status": "FINISHED", "end_time": 1_000})
    subject = s.run_subject(backdated)
    expected[subject] = [("RunCompleted", "")]
    latencies["backdated end time"] = wait_for(lambda: bool(s.subject_events(subject)), "backdated run")

    print(f"\nalias moves took {moves * 1000:.0f} ms; MLflow call → event readable in mlgrid:")
    for case, seconds in latencies.items():
        print(f"  {case}: {seconds * 1000:.0f} ms")

    s.resync()  # the safety net reads MLflow in full: it must find nothing new
    stored = s.events()
    assert_ordered(stored)
    for subject, wanted in expected.items():
        assert summary([e for e in stored if e["subject"] == subject]) == wanted, subject
    assert s.health()["state"] == "Running"


def _late_commit(database_url: str, model: str, version: str, previous: str, hold: threading.Event,
                 taken: threading.Event, errors: list[BaseException]) -> None:
    """A writer that changes the alias and writes its outbox row (as the plugin would) in one
    transaction that takes its outbox id now and commits only when ``hold`` is set."""
    try:
        with psycopg.connect(database_url) as conn:
            conn.execute(
                "UPDATE registered_model_aliases SET version = %s WHERE name = %s AND alias = 'champion'",
                (int(version), model),
            )
            conn.execute(
                "INSERT INTO mlgrid_outbox (recorded_at_ms, kind, object_key, payload) "
                "VALUES (%s, 'alias_set', %s, %s)",
                (
                    int(time.time() * 1000),
                    f"alias:{model}@champion",
                    f'{{"alias":"champion","name":"{model}","previous_version":"{previous}",'
                    f'"version":"{version}","workspace":null}}',
                ),
            )
            conn.execute("SELECT pg_notify('mlgrid_outbox', '')")
            taken.set()
            hold.wait(WAIT)
            conn.commit()
    except BaseException as exc:
        errors.append(exc)
        taken.set()


def test_two_mlflow_servers_and_a_late_commit_lose_nothing(
    mlgrid: ServerProcess, plugin_servers: tuple[MlflowServer, MlflowServer], mlflow_db: str,
    connectors: list[Setup],
) -> None:
    first, second = plugin_servers
    s = Setup(mlgrid, first, mlflow_db)
    connectors.append(s)
    other = Rest(second.url)
    for _ in range(2):
        s.rest.call("POST", "/model-versions/create", {"name": s.model, "source": "s3://m/model"})
    s.rest.call("POST", "/registered-models/alias", {"name": s.model, "alias": "champion", "version": "1"})
    alias_subject = f"endpoints/{s.model}@champion"
    wait_for(lambda: len(s.subject_events(alias_subject)) == 1, "the alias at v1")

    hold, taken, errors = threading.Event(), threading.Event(), []
    late = threading.Thread(target=_late_commit, args=(mlflow_db, s.model, "2", "1", hold, taken, errors))
    late.start()
    assert taken.wait(WAIT) and not errors, errors  # its outbox id is taken, not committed yet

    per_server = 15
    runs: dict[str, str] = {}
    lock = threading.Lock()

    def work(rest: Rest, status: str) -> None:
        for _ in range(per_server):
            made = rest.call("POST", "/runs/create", {"experiment_id": s.experiment_id, "start_time": 1})
            run_id = made["run"]["info"]["run_id"]
            rest.call("POST", "/runs/update", {"run_id": run_id, "status": status, "end_time": 2})
            with lock:
                runs[run_id] = status

    threads = [threading.Thread(target=work, args=(s.rest, "FINISHED")),
               threading.Thread(target=work, args=(other, "FAILED"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 3)
    assert len(runs) == 2 * per_server
    subjects = {s.run_subject(r) for r in runs}
    # Every later id is drained while the early id is still uncommitted.
    wait_for(lambda: subjects <= {e["subject"] for e in s.events()}, "both servers' runs")
    assert len(s.subject_events(alias_subject)) == 1
    hold.set()
    late.join(WAIT)
    assert not errors, errors
    seconds = wait_for(lambda: len(s.subject_events(alias_subject)) == 2, "the late commit's alias move")
    print(f"\nlate commit drained {seconds * 1000:.0f} ms after its commit; {len(runs)} runs, two servers")

    stored = s.events()
    assert_ordered(stored)
    for run_id, status in runs.items():
        want = [("RunCompleted", "")] if status == "FINISHED" else [("RunStatusChanged", "failed")]
        assert summary([e for e in stored if e["subject"] == s.run_subject(run_id)]) == want
    assert summary([e for e in stored if e["subject"] == alias_subject]) == [
        ("ModelDeployed", f"{s.model}:1"), ("ModelDeployed", f"{s.model}:2")
    ]
    with psycopg.connect(mlflow_db) as conn:
        left = conn.execute("SELECT count(*) FROM mlgrid_outbox").fetchone()
    assert left is not None and left[0] == 0  # consumed rows are deleted
    other.close()


def test_database_url_is_validated_and_never_echoed(
    mlgrid: ServerProcess, plugin_servers: tuple[MlflowServer, MlflowServer], mlflow_db: str,
    tmp_path: Path, connectors: list[Setup],
) -> None:
    connectors.append(Setup(mlgrid, plugin_servers[0], mlflow_db))  # drains mlflow_db
    ws = f"outboxv{uuid.uuid4().hex[:8]}"
    secret_url = "postgresql://someone:hunter2@127.0.0.1:5432/no_such_database_here"
    with mlgrid.client() as http:
        assert http.put(f"/workspaces/{ws}", json={"properties": {}}).status_code == 201
        path = f"/workspaces/{ws}/connectors/mlflow"
        base = {"trackingUri": plugin_servers[0].url, "intake": "outbox"}
        cases = [
            ({**base}, "properties.databaseUrl"),  # required with intake outbox
            ({**base, "databaseUrl": "mysql://x@h/db"}, "properties.databaseUrl"),
            ({**base, "databaseUrl": secret_url}, "properties.databaseUrl"),  # unreachable
            ({**base, "databaseUrl": f"sqlite:///{tmp_path / 'empty.db'}"}, "properties.databaseUrl"),
            ({**base, "intake": "webhook"}, "properties.intake"),
            # one connector per outbox table (another spelling of the same database)
            ({**base, "databaseUrl": mlflow_db.replace("postgresql://", "postgres://")}, "already drained"),
        ]
        for properties, field in cases:
            reply = http.put(path, json={"properties": properties})
            assert reply.status_code == 400, reply.text
            assert field in reply.text and "hunter2" not in reply.text, reply.text
        assert http.get(path).status_code == 404  # nothing was created
