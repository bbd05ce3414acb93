"""Workspaces, runs, metrics and artifacts through the REST API and the SDK (SPEC §9, §12):
the status machine, ETags and If-Match, precise 400s that change nothing, listing and
filtering, path safety, and concurrent writers that never lose an update."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import httpx
import pytest
from tests.support.azurite import stored_workspace_files
from tests.support.fixtures import (  # noqa: F401 (pytest fixtures; files on every blob store)
    blob_server_fixture,
    raw_http_fixture,
    sdk_client_fixture,
    workspace_fixture,
)
from tests.support.ml_workspace import raw, retained
from tests.support.server import ServerProcess

from mlgrid import ApiError, Client
from mlgrid.client.workspace import Workspace


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


# --- workspaces ----------------------------------------------------------------------------


def test_workspace_lifecycle(client: Client, http: httpx.Client, unique_name: str) -> None:
    created = http.put(f"/workspaces/{unique_name}", json={"properties": {"resourceGroup": "rg-ml"}})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == unique_name
    assert body["id"].endswith(
        f"/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/{unique_name}"
    )
    assert body["properties"]["runStatusChangedEvents"] == "failed"
    assert created.headers["etag"] == f'"{body["etag"]}"'

    system_topic = http.get(f"/systemTopics/{unique_name}")
    assert system_topic.status_code == 200
    assert system_topic.json()["properties"]["source"] == body["id"]

    again = http.put(f"/workspaces/{unique_name}", json={"properties": {"runStatusChangedEvents": "all"}})
    assert again.status_code == 200
    assert again.json()["properties"]["runStatusChangedEvents"] == "all"
    assert again.json()["etag"] != body["etag"]
    assert unique_name in [w.name for w in client.workspaces.list()]

    stale = http.put(f"/workspaces/{unique_name}", json={}, headers={"If-Match": f'"{body["etag"]}"'})
    assert _error(stale, 412)["code"] == "PreconditionFailed"
    moved = http.put(f"/workspaces/{unique_name}", json={"properties": {"resourceGroup": "other"}})
    assert _error(moved, 400)["details"][0]["target"] == "properties.resourceGroup"
    bad_mode = http.put(f"/workspaces/{unique_name}", json={"properties": {"runStatusChangedEvents": "some"}})
    assert "properties.runStatusChangedEvents" in _error(bad_mode, 400)["message"]
    assert http.get(f"/workspaces/{unique_name}").json()["properties"]["runStatusChangedEvents"] == "all"

    assert http.delete(f"/workspaces/{unique_name}").status_code == 204
    assert _error(http.get(f"/workspaces/{unique_name}"), 404)["code"] == "WorkspaceNotFound"
    assert http.get(f"/systemTopics/{unique_name}").status_code == 404


def test_workspace_names_are_validated_and_share_the_topic_namespace(
    http: httpx.Client, unique_name: str
) -> None:
    assert _error(http.put("/workspaces/ab"), 400)["details"][0]["target"] == "workspaceName"
    assert http.put(f"/topics/{unique_name}", json={}).status_code == 201
    assert _error(http.put(f"/workspaces/{unique_name}"), 409)["code"] == "TopicNameInUse"


# --- runs and the status machine -----------------------------------------------------------


def test_start_run_returns_the_spec_shape(ws: Workspace, http: httpx.Client) -> None:
    response = http.post(
        f"/workspaces/{ws.name}/experiments/exp-one/runs",
        json={"runType": None, "tags": {"a": "1"}, "properties": {"p": "x"}, "status": "Running"},
    )
    assert response.status_code == 201, response.text
    run = response.json()
    for key in (
        "runId",
        "experimentId",
        "experimentName",
        "status",
        "runType",
        "tags",
        "properties",
        "etag",
        "startTime",
        "endTime",
    ):
        assert key in run
    assert run["runId"].startswith("exp-one_")
    prefix, seconds, suffix = run["runId"].rsplit("_", 2)
    assert prefix == "exp-one" and seconds.isdigit() and len(suffix) == 8 and int(suffix, 16) >= 0
    assert (run["status"], run["experimentName"], run["endTime"]) == ("Running", "exp-one", None)
    assert run["startTime"] is not None
    # The experiment is created once, on first use, with a UUID.
    second = http.post(f"/workspaces/{ws.name}/experiments/EXP-ONE/runs").json()
    assert second["experimentId"] == run["experimentId"]
    assert len(run["experimentId"]) == 36


def test_terminal_states_are_final(ws: Workspace) -> None:
    run = ws.start_run(experiment="train")
    done = run.complete()
    assert done.end_time is not None
    for status in ("Completed", "Failed", "Running", "Canceled"):
        with pytest.raises(ApiError) as info:
            run.update(status=status)
        assert info.value.status == 409
        assert info.value.code == "RunAlreadyTerminal"
    # Tags remain editable after the end, without a status change.
    assert run.set_tags({"reviewed": True}).tags == {"reviewed": True}
    assert run.refresh().status == "Completed"


def test_status_moves_forward_only(ws: Workspace) -> None:
    run = ws.start_run(experiment="train")
    with pytest.raises(ApiError) as info:
        run.update(status="Queued")
    assert (info.value.status, info.value.code) == (409, "InvalidRunTransition")
    run.update(status="CancelRequested")
    with pytest.raises(ApiError):
        run.update(status="Running")
    assert run.update(status="Canceled").status == "Canceled"


def test_etags_change_with_every_change_and_if_match_guards_writes(ws: Workspace, http: httpx.Client) -> None:
    run = ws.start_run(experiment="train")
    first = run.info.etag
    same = run.update(status="Running")  # not a change
    assert same.etag == first
    tagged = run.set_tags({"k": "v"})
    assert tagged.etag != first
    path = f"/workspaces/{ws.name}/runs/{run.id}"
    stale = http.patch(path, json={"tags": {"x": "1"}}, headers={"If-Match": f'"{first}"'})
    assert _error(stale, 412)["code"] == "PreconditionFailed"
    assert "x" not in run.refresh().tags
    fresh = http.patch(path, json={"tags": {"x": "1"}}, headers={"If-Match": f'"{tagged.etag}"'})
    assert fresh.status_code == 200
    assert fresh.headers["etag"] == f'"{fresh.json()["etag"]}"'
    assert http.get(path).headers["etag"] == fresh.headers["etag"]


def test_tags_and_properties_merge(ws: Workspace) -> None:
    run = ws.start_run(experiment="train", tags={"a": 1, "b": 2}, properties={"p": "1"})
    info = run.update(tags={"b": None, "c": [1, 2]}, properties={"q": "2"})
    assert info.tags == {"a": 1, "c": [1, 2]}
    assert info.properties == {"p": "1", "q": "2"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"properties": {"team": 5}}, "properties.team"),
        ({"properties": {"team": None}}, "properties.team"),
        ({"tags": ["a"]}, "tags"),
        ({"status": "Done"}, "status"),
        ({"error": 5}, "error"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_patches_are_400_naming_the_field_and_change_nothing(
    ws: Workspace, http: httpx.Client, body: dict[str, Any], field: str
) -> None:
    run = ws.start_run(experiment="train", tags={"a": "1"})
    response = http.patch(f"/workspaces/{ws.name}/runs/{run.id}", json={"status": "Failed", **body})
    error = _error(response, 400)
    assert error["details"][0]["target"] == field
    assert field in error["message"]
    after = run.refresh()
    assert (after.status, after.tags, after.etag) == ("Running", {"a": "1"}, run.info.etag)
    assert retained(ws) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "Completed"}, "status"),
        ({"properties": {"n": 1}}, "properties.n"),
        ({"runType": 3}, "runType"),
        ({"tags": {"": 1}}, "tags."),
    ],
)
def test_bad_new_runs_are_400_naming_the_field(
    ws: Workspace, http: httpx.Client, body: dict[str, Any], field: str
) -> None:
    response = http.post(f"/workspaces/{ws.name}/experiments/train/runs", json=body)
    assert _error(response, 400)["details"][0]["target"] == field
    assert ws.runs() == []


def test_bad_experiment_name_and_unknown_run(ws: Workspace, http: httpx.Client) -> None:
    assert _error(http.post(f"/workspaces/{ws.name}/experiments/x/runs"), 400)["details"][0]["target"] == (
        "experimentName"
    )
    assert _error(http.get(f"/workspaces/{ws.name}/runs/nope_1_00000000"), 404)["code"] == "RunNotFound"
    assert _error(http.get("/workspaces/no-such-ws/runs"), 404)["code"] == "WorkspaceNotFound"


def test_listing_and_filtering_runs(ws: Workspace, http: httpx.Client) -> None:
    a = ws.start_run(experiment="exp-a", run_type="training")
    b = ws.start_run(experiment="exp-b")
    c = ws.start_run(experiment="exp-a")
    a.complete()
    b.fail("x")
    assert {r.run_id for r in ws.runs()} == {a.id, b.id, c.id}
    assert [r.run_id for r in ws.runs(experiment="exp-a")] == [c.id, a.id]  # newest first
    assert [r.run_id for r in ws.runs(status="Failed")] == [b.id]
    assert {r.run_id for r in ws.runs(status=["Completed", "Running"])} == {a.id, c.id}
    assert [r.run_id for r in ws.runs(run_type="training")] == [a.id]
    assert ws.runs(experiment="exp-missing") == []
    page = http.get(f"/workspaces/{ws.name}/runs", params={"top": 2}).json()
    assert len(page["value"]) == 2 and "nextLink" in page
    rest = http.get(page["nextLink"]).json()
    assert len(rest["value"]) == 1 and "nextLink" not in rest
    assert (
        _error(http.get(f"/workspaces/{ws.name}/runs", params={"status": "Nope"}), 400)["details"][0][
            "target"
        ]
        == "status"
    )
    assert {e["name"] for e in ws.experiments()} == {"exp-a", "exp-b"}


# --- metrics -------------------------------------------------------------------------------


def test_metrics_are_stored_exactly_and_validated(ws: Workspace, http: httpx.Client) -> None:
    run = ws.start_run(experiment="train")
    run.log_metric("rmse", 0.5, step=0)
    run.log_metrics([("rmse", 0.25, 1), ("acc", 9, 0)])
    path = f"/workspaces/{ws.name}/runs/{run.id}/metrics"
    exact = http.post(
        path,
        content=b'{"metrics": [{"name": "exact", "value": 0.30000000000000001}]}',
        headers={"Content-Type": "application/json"},
    )
    assert exact.status_code == 200, exact.text
    assert b"0.30000000000000001" in http.get(path, params={"name": "exact"}).content
    metrics = run.metrics()
    assert [(m.name, m.step, m.value) for m in metrics if m.name != "exact"] == [
        ("acc", 0, 9),
        ("rmse", 0, 0.5),
        ("rmse", 1, 0.25),
    ]
    assert [m.step for m in run.metrics("rmse")] == [0, 1]
    bad = http.post(path, json={"metrics": [{"name": "ok", "value": 1}, {"name": "x", "value": "high"}]})
    assert _error(bad, 400)["details"][0]["target"] == "metrics[1].value"
    negative = http.post(path, json={"metrics": [{"name": "x", "value": 1, "step": -1}]})
    assert _error(negative, 400)["details"][0]["target"] == "metrics[0].step"
    assert len(run.metrics()) == 4  # the rejected requests stored nothing


def test_bodies_follow_the_schema_issue_16(ws: Workspace, http: httpx.Client) -> None:
    """What schemathesis found: a whole number written ``3.0`` is an integer (JSON Schema's
    reading), ``null`` tags/properties are none, and a PATCH body of ``null`` is a 400 that
    changes nothing (the body is required and an object)."""
    created = http.post(f"/workspaces/{ws.name}/experiments/train/runs",
                        json={"properties": None, "tags": None, "status": "NotStarted"})
    assert created.status_code == 201, created.text
    assert (created.json()["properties"], created.json()["tags"]) == ({}, {})
    run_path = f"/workspaces/{ws.name}/runs/{created.json()['runId']}"
    before = http.get(run_path).json()
    refused = http.patch(run_path, content=b"null", headers={"Content-Type": "application/json"})
    error = _error(refused, 400)
    assert error["details"][0]["target"] == "body" and "must be a JSON object" in error["message"]
    assert http.get(run_path).json() == before
    path = f"{run_path}/metrics"
    whole = http.post(path, content=b'{"metrics": [{"name": "m", "value": 1, "step": 3.0}]}',
                      headers={"Content-Type": "application/json"})
    assert whole.status_code == 200, whole.text
    fraction = http.post(path, content=b'{"metrics": [{"name": "m", "value": 2, "step": 3.5}]}',
                         headers={"Content-Type": "application/json"})
    error = _error(fraction, 400)
    assert error["details"][0]["target"] == "metrics[0].step" and "integer" in error["message"]
    assert [(m["step"], m["value"]) for m in http.get(path).json()["value"]] == [(3, 1)]


# --- artifacts -----------------------------------------------------------------------------


def test_artifacts_round_trip_and_list(ws: Workspace, server: ServerProcess, tmp_path: Any) -> None:
    run = ws.start_run(experiment="train")
    local = tmp_path / "model.pkl"
    local.write_bytes(b"\x00\x01binary")
    uploaded = run.upload_file(local, name="outputs/model.pkl")
    assert (uploaded.path, uploaded.size) == ("outputs/model.pkl", 8)
    run.upload_bytes("outputs/notes with space.txt", b"hello")
    run.upload_bytes("outputs/model.pkl", b"replaced")
    assert run.download_artifact("outputs/model.pkl") == b"replaced"
    assert run.download_artifact("outputs/notes with space.txt") == b"hello"
    assert [a.path for a in run.artifacts()] == ["outputs/model.pkl", "outputs/notes with space.txt"]
    assert [a.path for a in run.artifacts(prefix="outputs/n")] == ["outputs/notes with space.txt"]
    # In the blob store under <workspace>/runs/<run-id>/artifacts/, nothing else (no leftovers
    # of the replaced file).
    base = f"{ws.name.lower()}/runs/{run.id}/artifacts/"
    stored = [base + "outputs/model.pkl", base + "outputs/notes with space.txt"]
    assert stored_workspace_files(server, ws.name) == stored
    if "MLGRID_BLOB_URL" in server.env:  # in Azure only: the data directory keeps none of them
        runs = server.data_dir / "workspaces" / ws.name.lower() / "runs"
        assert not runs.exists() or not any(p.is_file() for p in runs.rglob("*"))


def test_a_large_artifact_streams_with_its_length(ws: Workspace, http: httpx.Client) -> None:
    run = ws.start_run(experiment="train")
    data = bytes(range(256)) * (12 * 4096)  # 12 MB: several chunks and upload blocks
    run.upload_bytes("outputs/big.bin", data)
    with http.stream("GET", f"/workspaces/{ws.name}/runs/{run.id}/artifacts/outputs/big.bin") as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(data))
        assert response.headers["etag"].strip('"') == hashlib.sha256(data).hexdigest()
        assert b"".join(response.iter_bytes()) == data


@pytest.mark.parametrize(
    "raw_path",
    [
        "%2E%2E/escape.txt",
        "a/%2E%2E/%2E%2E/escape.txt",
        "%2Fetc%2Fpasswd",
        "a%5Cb.txt",
        "a//b.txt",
        "%2E/a.txt",
    ],
)
def test_artifact_paths_cannot_escape(ws: Workspace, server: ServerProcess, raw_path: str) -> None:
    run = ws.start_run(experiment="train")
    url = f"{server.url}/workspaces/{ws.name}/runs/{run.id}/artifacts/{raw_path}"
    response = httpx.put(url, content=b"x", headers={"Authorization": f"Bearer {server.admin_token}"})
    assert _error(response, 400)["details"][0]["target"] == "path"
    assert run.artifacts() == []


def test_artifact_file_and_directory_cannot_collide(ws: Workspace) -> None:
    run = ws.start_run(experiment="train")
    run.upload_bytes("outputs/a", b"file")
    with pytest.raises(ApiError) as info:
        run.upload_bytes("outputs/a/b", b"nested")
    assert info.value.status == 409
    run.upload_bytes("outputs/c/d", b"nested")
    with pytest.raises(ApiError) as info:
        run.upload_bytes("outputs/c", b"file")
    assert info.value.status == 409
    assert [a.path for a in run.artifacts()] == ["outputs/a", "outputs/c/d"]


def test_missing_artifact_is_404(ws: Workspace, http: httpx.Client) -> None:
    run = ws.start_run(experiment="train")
    response = http.get(f"/workspaces/{ws.name}/runs/{run.id}/artifacts/none.txt")
    assert _error(response, 404)["code"] == "ArtifactNotFound"


# --- concurrency ---------------------------------------------------------------------------


def test_concurrent_patches_never_lose_an_update(ws: Workspace, server: ServerProcess) -> None:
    run = ws.start_run(experiment="train")
    writers = 16
    errors: list[str] = []

    def write(index: int) -> None:
        with raw(server) as own:
            response = own.patch(f"/workspaces/{ws.name}/runs/{run.id}", json={"tags": {f"k{index}": index}})
            if response.status_code != 200:
                errors.append(response.text)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert run.refresh().tags == {f"k{i}": i for i in range(writers)}


def test_concurrent_completions_yield_one_winner_and_one_event(ws: Workspace, server: ServerProcess) -> None:
    run = ws.start_run(experiment="train")
    statuses: list[int] = []
    lock = threading.Lock()

    def complete() -> None:
        with raw(server) as own:
            response = own.patch(f"/workspaces/{ws.name}/runs/{run.id}", json={"status": "Completed"})
            with lock:
                statuses.append(response.status_code)

    threads = [threading.Thread(target=complete) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [200] + [409] * 5
    assert len(retained(ws)) == 1
