"""The MLflow connector end to end: a real ``mlflow server``, the real ``mlflow`` client running
an ordinary scikit-learn script, a real ``mlgrid serve`` and a real webhook receiver.

What a subscriber of the workspace receives is checked exactly — which events, on which
subjects, with which fields, parseable by ``azure.eventgrid.EventGridEvent.from_dict`` — and
then that it stays exact across a SIGKILL of mlgrid and an outage of MLflow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.eventgrid import EventGridEvent
from tests.support.mlflow_server import MlflowServer
from tests.support.receiver import Receiver
from tests.support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
MODEL_REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"
MODEL_DEPLOYED = "Microsoft.MachineLearningServices.ModelDeployed"


def lifecycle(mlflow: MlflowServer, prefix: str, step: str) -> dict[str, Any]:
    """Run the user script (``tests/support/mlflow_lifecycle.py``) against MLflow."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGRID_"))}
    env["GIT_PYTHON_REFRESH"] = "quiet"
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.mlflow_lifecycle", mlflow.url, prefix, step],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def history(mlflow: MlflowServer, prefix: str) -> str:
    """A finished run that exists before the connector (through MLflow's REST API: the same
    server-side writes the client makes, without a client start-up)."""
    api = mlflow.url + "/api/2.0/mlflow"
    reply = httpx.post(api + "/experiments/create", json={"name": f"{prefix}-history"}, timeout=30)
    assert reply.status_code == 200, reply.text
    experiment_id = reply.json()["experiment_id"]
    body = {"experiment_id": experiment_id, "start_time": 1}
    reply = httpx.post(api + "/runs/create", json=body, timeout=30)
    run_id = reply.json()["run"]["info"]["run_id"]
    reply = httpx.post(
        api + "/runs/update", json={"run_id": run_id, "status": "FINISHED", "end_time": 2}, timeout=30
    )
    assert reply.status_code == 200, reply.text
    return str(run_id)


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def connector(http: httpx.Client, ws: str, name: str = "mlflow") -> dict[str, Any]:
    reply = http.get(f"/workspaces/{ws}/connectors/{name}")
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def health_when(http: httpx.Client, ws: str, **expected: Any) -> dict[str, Any] | None:
    """The connector when its health shows every ``expected`` value, else None."""
    body = connector(http, ws)
    health = body["properties"]["health"]
    return body if all(health[k] == v for k, v in expected.items()) else None


def setup_workspace(http: httpx.Client, receiver: Receiver, ws: str) -> str:
    assert http.put(f"/workspaces/{ws}", json={"properties": {}}).status_code in (200, 201)
    path = f"/{ws}/events"
    reply = http.put(
        f"/workspaces/{ws}/eventSubscriptions/all",
        json={
            "properties": {
                "destination": {
                    "endpointType": "WebHook",
                    "properties": {"endpointUrl": receiver.endpoint(path)},
                }
            }
        },
    )
    assert reply.status_code in (200, 201), reply.text
    return path


def create_connector(http: httpx.Client, ws: str, mlflow: MlflowServer, **extra: Any) -> dict[str, Any]:
    body = {
        "properties": {
            "kind": "MLflow",
            "trackingUri": mlflow.url,
            "pollIntervalSeconds": 1,
            "deploymentAliases": ["champion"],
            **extra,
        }
    }
    reply = http.put(f"/workspaces/{ws}/connectors/mlflow", json=body)
    assert reply.status_code == 201, reply.text
    result: dict[str, Any] = reply.json()
    return result


def wait_synced(http: httpx.Client, ws: str, after: str | None = None) -> dict[str, Any]:
    def synced() -> dict[str, Any] | None:
        body = connector(http, ws)
        health = body["properties"]["health"]
        last = health["lastSuccessfulPoll"]
        return body if health["state"] == "Running" and last and (after is None or last > after) else None

    result: dict[str, Any] = wait_for(synced, 120, "a successful poll")
    return result


def by_type(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        out.setdefault(event["eventType"], []).append(event)
    return out


def check_train_events(events: list[dict[str, Any]], ids: dict[str, Any], topic: str) -> None:
    """Exactly RunCompleted(train), ModelRegistered(v1), ModelDeployed(champion→1), and
    RunStatusChanged(failed) for the failed run and the update_run(FAILED) run; nothing for the
    killed run, the second terminate, the pre-existing run or the ``shadow`` alias."""
    for event in events:
        parsed = EventGridEvent.from_dict(dict(event))
        assert parsed.event_type == event["eventType"] and parsed.subject == event["subject"]
        assert event["topic"] == topic and event["dataVersion"] == "" and event["metadataVersion"] == "1"
        assert len(event["data"]["Sequencer"]) == 20 and event["data"]["ETag"]
    kinds = by_type(events)
    assert sorted((t, len(v)) for t, v in kinds.items()) == [
        (MODEL_DEPLOYED, 1),
        (MODEL_REGISTERED, 1),
        (RUN_COMPLETED, 1),
        (RUN_STATUS_CHANGED, 2),
    ]
    exp = ids["experiment_id"]
    completed = kinds[RUN_COMPLETED][0]
    assert completed["subject"] == f"experiments/{exp}/runs/{ids['train_run']}"
    data = completed["data"]
    assert data["ExperimentId"] == exp and data["ExperimentName"] == ids["experiment"]
    assert data["RunId"] == ids["train_run"] and data["RunProperties"] == {"C": "1.0"}
    assert data["RunType"] == data["RunTags"].get("mlflow.source.type") == "LOCAL"
    failed = sorted(kinds[RUN_STATUS_CHANGED], key=lambda e: e["data"]["RunId"])
    assert sorted(e["data"]["RunId"] for e in failed) == sorted([ids["failed_run"], ids["update_failed_run"]])
    assert {e["data"]["RunStatus"] for e in failed} == {"failed"}
    registered = kinds[MODEL_REGISTERED][0]
    assert registered["subject"] == f"models/{ids['model']}:1"
    assert registered["data"]["ModelVersion"] == "1"
    assert registered["data"]["ModelProperties"]["run_id"] == ids["train_run"]
    assert registered["data"]["ModelProperties"]["source"]
    deployed = kinds[MODEL_DEPLOYED][0]
    assert deployed["subject"] == f"endpoints/{ids['model']}@champion"
    assert deployed["data"]["ModelIds"] == f"{ids['model']}:1"
    assert deployed["data"]["ServiceComputeType"] == "MLflowAlias"


@pytest.fixture
def mlgrid_sqlite(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(data_dir=tmp_path / "mlgrid", extra_args=["--retry-schedule", "0.2,0.4,0.8"])
    server.start(timeout=180)
    try:
        yield server
    finally:
        server.stop()


def test_lifecycle_restart_and_outage(mlgrid_sqlite: ServerProcess, mlflow_sqlite: MlflowServer) -> None:
    server, mlflow = mlgrid_sqlite, mlflow_sqlite
    prefix = f"lc{server.port}"
    with Receiver() as receiver, server.client() as http:
        path = setup_workspace(http, receiver, "mlws")
        history(mlflow, prefix)
        created = create_connector(http, "mlws", mlflow, webhookSecret="s3cret", token="mlflow-token")
        assert "token" not in created["properties"] and "webhookSecret" not in created["properties"]
        assert created["properties"]["hasToken"] is True
        first = wait_synced(http, "mlws")
        assert first["properties"]["health"]["objectsTracked"] >= 1
        ids = lifecycle(mlflow, prefix, "train")
        events = receiver.wait_for_events(5, path=path, timeout=120)
        time.sleep(3)  # a few more polls: nothing else may arrive
        events = receiver.events(path=path)
        topic = http.get("/workspaces/mlws").json()["id"]
        check_train_events(events, ids, topic)

        # SIGKILL mlgrid and start it again; a full sweep must not emit anything again.
        server.kill()
        server.start(timeout=180)
        assert http.post("/workspaces/mlws/connectors/mlflow:resync").status_code == 202
        body = wait_for(lambda: health_when(http, "mlws", resyncPending=False), 90, "the resync")
        assert body["properties"]["health"]["state"] == "Running"

        # MLflow goes down: the connector shows it, the server keeps serving.
        mlflow.stop()
        failing = wait_for(lambda: health_when(http, "mlws", state="Failing"), 60, "state Failing")
        assert "MlflowUnavailable" in failing["properties"]["health"]["lastError"]
        assert http.get("/healthz").status_code == 200
        mlflow.start()
        more = lifecycle(mlflow, prefix, "more")
        seen = {e["id"] for e in events}
        receiver.wait_for_events(len(events) + 3, path=path, timeout=120)
        new = [e for e in receiver.events(path=path) if e["id"] not in seen]
        assert sorted(e["eventType"] for e in new) == [MODEL_DEPLOYED, MODEL_REGISTERED, RUN_COMPLETED]
        deployed = next(e for e in new if e["eventType"] == MODEL_DEPLOYED)
        assert deployed["data"]["ModelIds"] == f"{more['model']}:2"
        assert deployed["data"]["Sequencer"] > by_type(events)[MODEL_DEPLOYED][0]["data"]["Sequencer"]
        time.sleep(2)
        every = receiver.events(path=path)
        counts = Counter(e["id"] for e in every)
        assert [i for i, n in counts.items() if n > 1] == []
        assert len(every) == 8


def test_mlflow_webhook_rings_the_doorbell(mlgrid_sqlite: ServerProcess, mlflow_sqlite: MlflowServer) -> None:
    """With an hour between polls, a version registered in MLflow still arrives at once: MLflow's
    own signed webhook reaches the connector's doorbell, which re-reads MLflow."""
    server, mlflow = mlgrid_sqlite, mlflow_sqlite
    model = f"bell{server.port}"
    with Receiver() as receiver, server.client() as http:
        path = setup_workspace(http, receiver, "bell")
        reply = http.put(
            "/workspaces/bell/connectors/mlflow",
            json={
                "properties": {
                    "trackingUri": mlflow.url,
                    "pollIntervalSeconds": 3600,
                    "webhookSecret": "ding-dong",
                    "experiments": [],
                }
            },
        )
        assert reply.status_code == 201, reply.text
        wait_synced(http, "bell")
        api = mlflow.url + "/api/2.0/mlflow"
        hook = httpx.post(
            api + "/webhooks",
            timeout=30,
            json={
                "name": model,
                "url": f"{server.url}/workspaces/bell/connectors/mlflow/webhook",
                "secret": "ding-dong",
                "events": [{"entity": "MODEL_VERSION", "action": "CREATED"}],
            },
        )
        assert hook.status_code == 200, hook.text
        time.sleep(2)  # MLflow caches its webhook list (MLFLOW_WEBHOOK_CACHE_TTL=1 s here)
        assert (
            httpx.post(api + "/registered-models/create", json={"name": model}, timeout=30).status_code == 200
        )
        made = httpx.post(
            api + "/model-versions/create", json={"name": model, "source": "s3://b/m"}, timeout=30
        )
        assert made.status_code == 200, made.text
        events = receiver.wait_for_events(1, path=path, timeout=90)
        assert [(e["eventType"], e["subject"]) for e in events] == [(MODEL_REGISTERED, f"models/{model}:1")]
        assert events[0]["data"]["ModelProperties"]["source"] == "s3://b/m"
