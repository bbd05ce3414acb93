"""Deploying real scikit-learn models to Local endpoints (SPEC §2.2 ModelDeployed, §9), on
SQLite and PostgreSQL: the event is emitted exactly once and only when the scoring process
answers, a failed deployment emits nothing, a redeploy emits again without a scoring gap."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from tests.support.deployments import (
    SETOSA,
    VIRGINICA,
    assert_deployed_event,
    deployed_events,
    iris_classifier,
    pickle_bytes,
    pid_alive,
    register_bytes,
    wait_for,
)
from tests.support.fixtures import (  # noqa: F401 (pytest fixtures; files on every blob store)
    blob_server_fixture,
    receiver_fixture,
    sdk_client_fixture,
)
from tests.support.ml_workspace import assert_strictly_increasing
from tests.support.receiver import Receiver

from mlgrid import ApiError, Client
from mlgrid.client.endpoints import DeploymentFailed


def test_a_deployed_model_scores_and_yields_exactly_one_model_deployed(
    client: Client, receiver: Receiver, unique_name: str, tmp_path: Path
) -> None:
    ws = client.workspaces.create(unique_name)
    ws.create_subscription(
        "deployments",
        endpoint=receiver.endpoint(f"/{unique_name}"),
        included_event_types=["Microsoft.MachineLearningServices.ModelDeployed"],
    )
    model = iris_classifier()
    registered = register_bytes(ws, "iris-clf", "model.pkl", pickle_bytes(model), tmp_path)
    assert registered.version == "1"

    endpoint = ws.deploy(
        "iris-api",
        models=["iris-clf:1"],
        tags={"team": "ml", "stage": 2},
        properties={"owner": "alice"},
        timeout=120,
    )
    assert endpoint.state == "Healthy", endpoint.error
    assert endpoint.error is None
    assert endpoint.scoring_uri is not None and endpoint.scoring_uri.startswith("http://127.0.0.1:")
    assert endpoint.models == ["iris-clf:1"] and endpoint.active_models == ["iris-clf:1"]

    expected = [int(p) for p in model.predict([SETOSA, VIRGINICA])]
    assert endpoint.score({"data": [SETOSA, VIRGINICA]}) == {"predictions": expected}
    assert endpoint.score([SETOSA, VIRGINICA]) == {"predictions": expected}
    assert endpoint.score({"input_data": [VIRGINICA]}) == {"predictions": expected[1:]}
    direct = httpx.post(endpoint.scoring_uri, json={"data": [SETOSA, VIRGINICA]}, timeout=30)
    assert direct.status_code == 200 and direct.json() == {"predictions": expected}

    events = deployed_events(ws)
    assert len(events) == 1
    assert_deployed_event(
        events[0], ws, "iris-api", "iris-clf:1", {"team": "ml", "stage": 2}, {"owner": "alice"}, endpoint.etag
    )
    assert events[0]["data"]["Sequencer"] == "00000000000000000001"
    pushed = receiver.wait_for_events(1, path=f"/{unique_name}", timeout=20)
    assert [e["id"] for e in pushed] == [events[0]["id"]]
    assert pushed[0] == events[0]

    # Bad input is the model's 400, passed through the proxy with its message.
    with pytest.raises(ApiError) as refused:
        endpoint.score({"data": [[1.0, 2.0]]})
    assert refused.value.status == 400 and "4 features" in refused.value.message
    endpoint.delete()


def test_redeploy_switches_without_a_gap_and_emits_a_second_event(
    client: Client, unique_name: str, tmp_path: Path
) -> None:
    ws = client.workspaces.create(unique_name)
    register_bytes(ws, "species", "model.pkl", pickle_bytes(iris_classifier()), tmp_path)
    register_bytes(ws, "species", "model.pkl", pickle_bytes(iris_classifier(["s", "ve", "vi"])), tmp_path)
    first = ws.deploy("species-api", models=["species:1"], tags={"v": "1"})
    assert first.score([SETOSA]) == {"predictions": [0]}
    old_pid = first.pid
    assert old_pid is not None

    answers: list[tuple[int, object]] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(
            base_url=client.url, headers={"Authorization": f"Bearer {client.http.token}"}, timeout=30
        ) as http:
            for _ in range(20_000):  # bounded; stopped once the redeploy is done
                if stop.is_set():
                    return
                answer = http.post(
                    "/workspaces/" + unique_name + "/endpoints/species-api/score", json={"data": [SETOSA]}
                )
                answers.append((answer.status_code, answer.json().get("predictions")))

    worker = threading.Thread(target=hammer, daemon=True)
    worker.start()
    try:
        second = ws.deploy("species-api", models=["species:2"], tags={"v": "2"})
        # Keep the load on until the new process has answered some of it.
        wait_for(lambda: any(p == ["s"] for _, p in answers), what="answers of the new deployment")
    finally:
        stop.set()
        worker.join(30)
    assert {status for status, _ in answers} == {200}, answers[-5:]
    # Every answer came from one of the two deployments; none failed in between.
    assert {str(p) for _, p in answers} <= {"[0]", "['s']"}
    assert second.state == "Healthy"
    assert second.score([SETOSA]) == {"predictions": ["s"]}
    assert second.active_models == ["species:2"]
    wait_for(lambda: not pid_alive(old_pid), what="the old scoring process to stop")

    events = deployed_events(ws)
    assert [e["data"]["ModelIds"] for e in events] == ["species:1", "species:2"]
    assert [e["data"]["ServiceTags"] for e in events] == [{"v": "1"}, {"v": "2"}]
    assert_strictly_increasing([e["data"]["Sequencer"] for e in events])
    assert events[0]["data"]["ETag"] != events[1]["data"]["ETag"]
    assert events[1]["data"]["ETag"] == second.etag


def test_a_model_that_fails_to_load_leaves_failed_with_the_log_and_no_event(
    client: Client, unique_name: str, tmp_path: Path
) -> None:
    ws = client.workspaces.create(unique_name)
    register_bytes(ws, "broken", "model.pkl", b"this is not a pickle", tmp_path)
    register_bytes(ws, "good", "model.pkl", pickle_bytes(iris_classifier()), tmp_path)

    with pytest.raises(DeploymentFailed) as failed:
        ws.deploy("broken-api", models=["broken:1"])
    endpoint = failed.value.endpoint
    assert endpoint.state == "Failed"
    error = endpoint.error or ""
    assert "could not load the deployment" in error
    assert "--- scoring log ---" in error and "UnpicklingError" in error  # the traceback itself
    assert endpoint.scoring_uri is None
    with pytest.raises(ApiError) as not_ready:
        endpoint.score([SETOSA])
    assert (not_ready.value.status, not_ready.value.code) == (503, "EndpointNotReady")

    # A failed redeploy leaves the deployment that serves in place.
    working = ws.deploy("broken-api", models=["good:1"])
    assert working.state == "Healthy"
    with pytest.raises(DeploymentFailed):
        ws.deploy("broken-api", models=["broken:1"])
    after = ws.endpoint("broken-api")
    assert after.state == "Failed" and "UnpicklingError" in (after.error or "")
    assert after.models == ["broken:1"] and after.active_models == ["good:1"]
    assert after.scoring_uri == working.scoring_uri
    assert after.score([SETOSA]) == {"predictions": [0]}

    assert [e["data"]["ModelIds"] for e in deployed_events(ws)] == ["good:1"]
