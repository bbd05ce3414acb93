"""The endpoints API on one server: model formats, entry scripts, failures, validation, ETags,
deletion, who may deploy, read and score (SPEC §9, §12), and the supervisor that restarts a
scoring process that died."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from tests.support.deployments import (
    ECHO_SCRIPT,
    SETOSA,
    VIRGINICA,
    deployed_events,
    iris,
    iris_classifier,
    joblib_bytes,
    pickle_bytes,
    pid_alive,
    register_bytes,
    register_directory,
    wait_for,
)
from tests.support.ml_workspace import admin_client, principal_token, raw
from tests.support.server import ServerProcess

from mlgrid import ApiError, Client
from mlgrid.client.endpoints import DeploymentFailed
from mlgrid.client.workspace import Workspace
from mlgrid.workspace.scoring.process import kill_orphan

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def client(sqlite_server: ServerProcess) -> Iterator[Client]:
    with admin_client(sqlite_server) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def ws(client: Client, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """One workspace with the models most tests deploy."""
    workspace = client.workspaces.create("endpoints-api")
    folder = tmp_path_factory.mktemp("models")
    features, target = iris()
    frame = pd.DataFrame(features, columns=FEATURES)
    named = LogisticRegression(max_iter=500).fit(frame, target)
    register_bytes(workspace, "framed", "model.joblib", joblib_bytes(named), folder)
    register_bytes(workspace, "plain", "model.pkl", pickle_bytes(iris_classifier(["a", "b", "c"])), folder)
    register_directory(workspace, "labels", {"label.txt": "from-the-model-dir\n"}, folder)
    register_directory(
        workspace,
        "bundle",
        {"score.py": ECHO_SCRIPT, "data/label.txt": "from-the-bundle\n"},
        folder,
    )
    return workspace


def _put(
    server: ServerProcess, ws: str, name: str, properties: Any, token: str | None = None, **headers: str
) -> httpx.Response:
    with raw(server, token) as http:
        return http.put(
            f"/workspaces/{ws}/endpoints/{name}", json={"properties": properties}, headers=headers
        )


def test_joblib_model_with_named_columns_and_several_models(ws: Workspace) -> None:
    endpoint = ws.deploy("framed-api", models=["framed:1", "plain:1"], tags={"k": "v"})
    assert endpoint.state == "Healthy", endpoint.error
    record = dict(zip(FEATURES, SETOSA, strict=True))
    # Rows as lists get the model's column names; rows as objects are matched by name.
    assert endpoint.score({"data": [SETOSA, VIRGINICA]}) == {"predictions": [0, 2]}
    assert endpoint.score([record]) == {"predictions": [0]}
    split = {"input_data": {"columns": FEATURES, "index": [7], "data": [VIRGINICA]}}
    assert endpoint.score(split) == {"predictions": [2]}
    # With several models, the first listed scores unless the body names one.
    assert endpoint.score({"data": [SETOSA], "model": "plain:1"}) == {"predictions": ["a"]}
    with pytest.raises(ApiError) as unknown:
        endpoint.score({"data": [SETOSA], "model": "nope:1"})
    assert unknown.value.status == 400 and "not deployed" in unknown.value.message
    with pytest.raises(ApiError) as missing_column:
        endpoint.score([{"sepal_length": 1.0}])
    assert missing_column.value.status == 400 and "sepal_width" in missing_column.value.message
    event = deployed_events(ws)[-1]
    assert event["subject"] == "endpoints/framed-api"
    assert event["data"]["ModelIds"] == "framed:1,plain:1"
    endpoint.delete()


def test_entry_script_inside_a_model_and_sent_inline(ws: Workspace, tmp_path: Path) -> None:
    bundled = ws.deploy("bundle-api", models=["bundle:1"], entry_script="score.py")
    assert bundled.state == "Healthy", bundled.error
    answer = bundled.score({"x": [1, 2]})
    assert answer["label"] == "from-the-bundle" and answer["echo"] == {"x": [1, 2]}

    script = tmp_path / "echo_score.py"
    script.write_text(ECHO_SCRIPT)
    inline = ws.deploy("inline-api", models=["labels:1"], entry_script=script)
    assert inline.raw["properties"]["entryScript"] == {"fileName": "echo_score.py", "source": ECHO_SCRIPT}
    answer = inline.score("[1, 2, 3]")
    assert answer["label"] == "from-the-model-dir" and answer["echo"] == [1, 2, 3]
    assert answer["pid"] == inline.pid

    # No model at all: the script alone.
    alone = ws.deploy(
        "script-only",
        entry_script="import json\ndef init():\n    pass\n"
        "def run(raw_data):\n    return {'n': len(json.loads(raw_data))}\n",
    )
    assert alone.score([1, 2, 3, 4]) == {"n": 4}
    assert [
        e["data"]["ModelIds"] for e in deployed_events(ws) if e["subject"] == "endpoints/script-only"
    ] == [""]
    for endpoint in (bundled, inline, alone):
        endpoint.delete()


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (
            "def init():\n    raise RuntimeError('no GPU here')\ndef run(raw_data):\n    return 1\n",
            "RuntimeError: no GPU here",
        ),
        ("def init():\n    pass\n", "defines no run(raw_data)"),
        ("import os\ndef init():\n    os._exit(7)\ndef run(raw_data):\n    return 1\n", "exited with code 7"),
        (
            "import time\ndef init():\n    time.sleep(60)\ndef run(raw_data):\n    return 1\n",
            "did not answer its health check within 1.5 s",
        ),
    ],
    ids=["init-raises", "no-run", "exits", "too-slow"],
)
def test_failing_entry_scripts_leave_failed_and_emit_nothing(
    ws: Workspace, unique_name: str, script: str, expected: str
) -> None:
    before = len(deployed_events(ws))
    with pytest.raises(DeploymentFailed) as failed:
        ws.deploy(unique_name, entry_script=script, startup_timeout=1.5)
    assert failed.value.endpoint.state == "Failed"
    assert expected in failed.value.error
    assert "--- scoring log ---" in failed.value.error
    assert len(deployed_events(ws)) == before
    ws.endpoint(unique_name).delete()


def test_models_this_server_cannot_load(ws: Workspace, tmp_path: Path) -> None:
    register_bytes(ws, "dictionary", "weights.pkl", pickle_bytes({"w": [1, 2]}), tmp_path)
    with pytest.raises(DeploymentFailed) as no_predict:
        ws.deploy("dict-api", models=["dictionary:1"])
    assert "has no predict() method" in no_predict.value.error

    register_directory(ws, "textonly", {"notes.txt": "hello"}, tmp_path)
    with pytest.raises(DeploymentFailed) as unknown_format:
        ws.deploy("text-api", models=["textonly:1"])
    assert "notes.txt" in unknown_format.value.error and ".joblib" in unknown_format.value.error

    if importlib.util.find_spec("mlflow") is None:
        register_directory(ws, "mlflowish", {"MLmodel": "flavors: {}\n", "model.pkl": b"x"}, tmp_path)
        with pytest.raises(DeploymentFailed) as no_mlflow:
            ws.deploy("mlflow-api", models=["mlflowish:1"])
        assert "mlflow is not installed" in no_mlflow.value.error


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ({"computeType": "AKS", "models": ["plain:1"]}, "properties.computeType"),
        ({"computeType": "Local", "models": ["plain:1", "nosuchmodel:1"]}, "properties.models[1]"),
        ({"computeType": "Local", "models": ["plain:9"]}, "properties.models[0]"),
        ({"computeType": "Local", "models": ["plain"]}, "properties.models[0]"),
        ({"computeType": "Local", "models": "plain:1"}, "properties.models"),
        ({"computeType": "Local", "models": ["plain:1", "plain:1"]}, "properties.models[1]"),
        ({"computeType": "Local", "models": []}, "properties.models"),
        ({"computeType": "Local", "models": ["plain:1"], "entryScript": "../x.py"}, "properties.entryScript"),
        (
            {"computeType": "Local", "models": ["plain:1"], "entryScript": "score.py"},
            "properties.entryScript",
        ),
        ({"computeType": "Local", "models": ["plain:1"], "entryScript": 3}, "properties.entryScript"),
        ({"computeType": "Local", "models": ["plain:1"], "tags": []}, "properties.tags"),
        ({"computeType": "Local", "models": ["plain:1"], "properties": {"a": 1}}, "properties.properties.a"),
        (
            {"computeType": "Local", "models": ["plain:1"], "startupTimeoutSeconds": 0},
            "properties.startupTimeoutSeconds",
        ),
        ({"computeType": "Local", "models": ["plain:1"], "replicas": 2}, "properties.replicas"),
    ],
)
def test_bad_requests_are_400_naming_the_field(
    sqlite_server: ServerProcess, ws: Workspace, unique_name: str, properties: Any, field: str
) -> None:
    answer = _put(sqlite_server, ws.name, unique_name, properties)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert field in error["message"]
    assert error["details"][0]["target"] == field
    with raw(sqlite_server) as http:
        assert http.get(f"/workspaces/{ws.name}/endpoints/{unique_name}").status_code == 404


def test_other_bad_requests(sqlite_server: ServerProcess, ws: Workspace) -> None:
    with raw(sqlite_server) as http:
        assert http.put(f"/workspaces/{ws.name}/endpoints/ab", json={"properties": {}}).status_code == 400
        no_body = http.put(f"/workspaces/{ws.name}/endpoints/no-body")
        assert no_body.status_code == 400
        missing_ws = http.put("/workspaces/no-such-ws/endpoints/e1", json={"properties": {"models": ["a:1"]}})
        assert missing_ws.status_code == 404
        assert http.get(f"/workspaces/{ws.name}/endpoints/nothing-here").json()["error"]["code"] == (
            "EndpointNotFound"
        )
        assert http.post(f"/workspaces/{ws.name}/endpoints/nothing-here/score", json=[1]).status_code == 404
        assert http.delete(f"/workspaces/{ws.name}/endpoints/nothing-here").status_code == 404


def test_etags_and_if_match(sqlite_server: ServerProcess, ws: Workspace) -> None:
    script = "def init():\n    pass\ndef run(raw_data):\n    return 'ok'\n"
    created = _put(sqlite_server, ws.name, "etag-api", {"entryScript": script}, **{"If-Match": '"nope"'})
    assert created.status_code == 412
    first = _put(sqlite_server, ws.name, "etag-api", {"entryScript": script})
    assert first.status_code == 202
    assert first.headers["ETag"] == f'"{first.json()["etag"]}"'
    assert first.json()["properties"]["state"] == "Deploying"
    endpoint = ws.endpoint("etag-api").wait(60)
    assert endpoint.state == "Healthy" and endpoint.etag != first.json()["etag"]  # Healthy is a change
    stale = _put(
        sqlite_server,
        ws.name,
        "etag-api",
        {"entryScript": script},
        **{"If-Match": f'"{first.json()["etag"]}"'},
    )
    assert stale.status_code == 412
    with raw(sqlite_server) as http:
        denied = http.delete(f"/workspaces/{ws.name}/endpoints/etag-api", headers={"If-Match": '"old"'})
        assert denied.status_code == 412
        current = http.get(f"/workspaces/{ws.name}/endpoints/etag-api")
        assert current.headers["ETag"] == f'"{endpoint.etag}"'
        deleted = http.delete(
            f"/workspaces/{ws.name}/endpoints/etag-api", headers={"If-Match": f'"{endpoint.etag}"'}
        )
        assert deleted.status_code == 204


def test_delete_stops_the_process(ws: Workspace) -> None:
    endpoint = ws.deploy("doomed-api", models=["labels:1"], entry_script=ECHO_SCRIPT)
    pid = endpoint.pid
    assert pid is not None and pid_alive(pid)
    assert "doomed-api" in [e.name for e in ws.endpoints()]
    endpoint.delete()
    wait_for(lambda: not pid_alive(pid), what="the scoring process to stop")
    assert "doomed-api" not in [e.name for e in ws.endpoints()]
    with pytest.raises(ApiError) as gone:
        endpoint.score([1])
    assert (gone.value.status, gone.value.code) == (404, "EndpointNotFound")
    with pytest.raises(ApiError):
        endpoint.refresh()


def test_roles(sqlite_server: ServerProcess, ws: Workspace) -> None:
    reader = principal_token(sqlite_server, "endpoint-reader")
    contributor = principal_token(sqlite_server, "endpoint-contributor")
    ws.assign_role("endpoint-reader", "Reader")
    ws.assign_role("endpoint-contributor", "Contributor")
    script = {"entryScript": "def init():\n    pass\ndef run(raw_data):\n    return 'scored'\n"}

    assert _put(sqlite_server, ws.name, "rbac-api", script, token=reader).status_code == 403
    assert _put(sqlite_server, ws.name, "rbac-api", script, token=contributor).status_code == 202
    ws.endpoint("rbac-api").wait(60)
    with raw(sqlite_server, reader) as http:
        assert (
            http.get(f"/workspaces/{ws.name}/endpoints/rbac-api").json()["properties"]["state"] == "Healthy"
        )
        assert "rbac-api" in [e["name"] for e in http.get(f"/workspaces/{ws.name}/endpoints").json()["value"]]
        denied = http.post(f"/workspaces/{ws.name}/endpoints/rbac-api/score", json=[1])
        assert denied.status_code == 403 and "score" in denied.json()["error"]["message"]
        assert http.delete(f"/workspaces/{ws.name}/endpoints/rbac-api").status_code == 403
    with raw(sqlite_server, contributor) as http:
        scored = http.post(f"/workspaces/{ws.name}/endpoints/rbac-api/score", json=[1])
        assert scored.status_code == 200 and scored.json() == "scored"
    with httpx.Client(base_url=sqlite_server.url) as anonymous:
        assert anonymous.post(f"/workspaces/{ws.name}/endpoints/rbac-api/score", json=[1]).status_code == 401
    with raw(sqlite_server, contributor) as http:
        assert http.delete(f"/workspaces/{ws.name}/endpoints/rbac-api").status_code == 204


# --- supervision -----------------------------------------------------------------------------


def _fresh_workspace(client: Client, name: str, tmp_path: Path) -> Workspace:
    ws = client.workspaces.create(name)
    register_directory(ws, "labels", {"label.txt": "v1\n"}, tmp_path)
    return ws


def test_the_supervisor_restarts_a_crashed_scoring_process(
    client: Client, unique_name: str, tmp_path: Path
) -> None:
    ws = _fresh_workspace(client, unique_name, tmp_path)
    endpoint = ws.deploy("supervised", models=["labels:1"], entry_script=ECHO_SCRIPT)
    pid, uri, etag = endpoint.pid, endpoint.scoring_uri, endpoint.etag
    assert pid is not None and endpoint.score({"a": 1})["pid"] == pid

    os.kill(pid, signal.SIGKILL)
    recovered = wait_for(
        lambda: (e := ws.endpoint("supervised")).state == "Healthy" and e.pid not in (None, pid) and e,
        what="the endpoint to be Healthy on a new process",
    )
    assert recovered.scoring_uri == uri  # the same port when it is free
    assert recovered.etag != etag  # Unhealthy and back are changes of the object
    assert recovered.error is None
    assert recovered.score({"a": 2})["pid"] == recovered.pid
    assert len(deployed_events(ws)) == 1  # no new event: the deployment did not change
    recovered.delete()


def test_deleting_the_workspace_stops_its_endpoints(client: Client, unique_name: str, tmp_path: Path) -> None:
    ws = _fresh_workspace(client, unique_name, tmp_path)
    endpoint = ws.deploy("with-workspace", models=["labels:1"], entry_script=ECHO_SCRIPT)
    pid = endpoint.pid
    assert pid is not None
    client.workspaces.delete(unique_name)
    wait_for(lambda: not pid_alive(pid), what="the scoring process to stop")
    recreated = client.workspaces.create(unique_name)
    assert recreated.endpoints() == []


def test_leftover_processes_are_killed_only_when_proc_proves_they_are_ours() -> None:
    env = {**os.environ, "MLGRID_DEPLOYMENT_ID": "d1"}
    code = "import time; time.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    environ = Path(f"/proc/{process.pid}/environ")
    try:
        # Until the child has exec'd, /proc shows the environment it was forked with (ours).
        wait_for(lambda: b"MLGRID_DEPLOYMENT_ID=d1" in environ.read_bytes(), what="the child to start")
        assert not kill_orphan(process.pid, "another-deployment")
        assert process.poll() is None
        assert kill_orphan(process.pid, "d1")
        assert process.wait(10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
