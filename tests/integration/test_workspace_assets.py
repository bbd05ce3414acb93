"""The model registry and registered datasets (SPEC §9, §12): uploads and run artifacts,
versions per name, downloads, CSV and Parquet with a validated ``timestampColumn``."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx
import pandas as pd
import pytest
from tests.support.fixtures import (  # noqa: F401 (pytest fixtures; files on every blob store)
    blob_server_fixture,
    raw_http_fixture,
    sdk_client_fixture,
    workspace_fixture,
)
from tests.support.ml_workspace import retained

from mlgrid import ApiError
from mlgrid.client.workspace import Workspace


def _target(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    return str(response.json()["error"]["details"][0]["target"])


# --- models --------------------------------------------------------------------------------


def test_register_a_file_and_download_it(ws: Workspace, tmp_path: Path) -> None:
    source = tmp_path / "model.pkl"
    source.write_bytes(b"\x80\x04model-bytes")
    first = ws.register_model(
        "file-model", path=source, tags={"stage": "dev"}, properties={"auc": "0.91"}, description="baseline"
    )
    assert (first.name, first.version, first.is_directory) == ("file-model", "1", False)
    assert (first.tags, first.properties, first.description) == (
        {"stage": "dev"},
        {"auc": "0.91"},
        "baseline",
    )
    second = ws.register_model("file-model", path=source)
    assert second.version == "2"
    assert ws.model("file-model", 1).etag == first.etag
    assert [m.version for m in ws.models("file-model")] == ["1", "2"]
    downloaded = ws.download_model("file-model", 1, tmp_path / "out")
    assert downloaded == tmp_path / "out"
    assert downloaded.read_bytes() == source.read_bytes()
    into_dir = tmp_path / "dir"
    into_dir.mkdir()
    assert ws.download_model("file-model", 2, into_dir).name == "model.pkl"


def test_register_a_directory_and_download_it_as_a_zip(
    ws: Workspace, tmp_path: Path, http: httpx.Client
) -> None:
    model_dir = tmp_path / "mlflow-model"
    (model_dir / "sub").mkdir(parents=True)
    (model_dir / "MLmodel").write_text("flavors: {}\n")
    (model_dir / "sub" / "weights.bin").write_bytes(b"\x01\x02")
    view = ws.register_model("dir-model", path=model_dir)
    assert view.is_directory
    assert sorted(f["path"] for f in view.raw["files"]) == ["MLmodel", "sub/weights.bin"]
    response = http.get(f"/workspaces/{ws.name}/models/dir-model/versions/1/download")
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert sorted(archive.namelist()) == ["MLmodel", "sub/weights.bin"]
    extracted = ws.download_model("dir-model", 1, tmp_path / "extracted")
    assert (extracted / "sub" / "weights.bin").read_bytes() == b"\x01\x02"


def test_register_from_run_artifacts(ws: Workspace) -> None:
    with ws.start_run(experiment="train") as run:
        run.upload_bytes("outputs/model.pkl", b"pickled")
        run.upload_bytes("outputs/bundle/MLmodel", b"flavors")
        run.upload_bytes("outputs/bundle/model.pkl", b"inner")
        run.upload_bytes("outputs/bundled.txt", b"not in the bundle")
    single = ws.register_model("from-run", run_id=run.id, artifact_path="outputs/model.pkl")
    assert (single.run_id, single.artifact_path, single.is_directory) == (run.id, "outputs/model.pkl", False)
    bundle = ws.register_model("from-run", run_id=run.id, artifact_path="outputs/bundle/")
    assert bundle.version == "2" and bundle.is_directory
    assert sorted(f["path"] for f in bundle.raw["files"]) == ["MLmodel", "model.pkl"]
    # The registry keeps a copy: later artifact uploads do not change the model.
    run.upload_bytes("outputs/model.pkl", b"changed")
    assert ws.model("from-run", 1).raw["files"][0]["size"] == len(b"pickled")


def test_bad_model_registrations_are_400_and_register_nothing(ws: Workspace, http: httpx.Client) -> None:
    run = ws.start_run(experiment="train")
    run.upload_bytes("outputs/model.pkl", b"x")
    base = f"/workspaces/{ws.name}/models/bad-model/versions"
    assert (
        _target(http.post(base, json={"runId": "nope_1_00000000", "artifactPath": "outputs/model.pkl"}))
        == "runId"
    )
    assert (
        _target(http.post(base, json={"runId": run.id, "artifactPath": "outputs/missing"})) == "artifactPath"
    )
    assert _target(http.post(base, json={"runId": run.id, "artifactPath": "../etc/passwd"})) == "artifactPath"
    assert _target(http.post(base, json={"runId": run.id})) == "artifactPath"
    assert (
        _target(
            http.post(
                base, json={"runId": run.id, "artifactPath": "outputs/model.pkl", "properties": {"n": 1}}
            )
        )
        == "properties.n"
    )
    assert _target(http.post(base, files={"file": ("../x.pkl", b"x")})) == "file"
    assert _target(http.post(base, data={"metadata": "{}"}, files={"other": ("x.pkl", b"x")})) == "other"
    bad_metadata = http.post(base, files={"file": ("m.pkl", b"x")}, data={"metadata": '{"tags": []}'})
    assert _target(bad_metadata) == "tags"
    assert _target(
        http.post(f"/workspaces/{ws.name}/models/x/versions", files={"file": ("m.pkl", b"x")})
    ) == ("modelName")
    assert ws.models() == []
    assert retained(ws) == []
    missing = http.get(f"/workspaces/{ws.name}/models/bad-model/versions/1")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ModelNotFound"
    assert http.get(f"/workspaces/{ws.name}/models/bad-model/versions/one").status_code == 400


# --- datasets ------------------------------------------------------------------------------


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": ["2024-05-01T10:00:00Z", "2024-05-02T10:00:00Z", "2024-05-03 10:00:00+02:00"],
            "x": [1.5, 2.5, None],
            "label": ["a", "b", "a"],
            "n": [1, 2, 3],
        }
    )


def test_register_csv_with_a_timestamp_column(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    _frame().to_csv(path, index=False)
    first = ws.register_dataset("training-data", path, timestamp_column="ts")
    assert (first.name, first.version, first.row_count, first.timestamp_column) == (
        "training-data",
        1,
        3,
        "ts",
    )
    assert len(first.id) == 36
    assert [(c.name, c.dtype) for c in first.columns][1:] == [
        ("x", "float64"),
        ("label", first.columns[2].dtype),
        ("n", "int64"),
    ]
    second = ws.register_dataset("training-data", path)
    assert (second.version, second.timestamp_column) == (2, None)
    assert second.id != first.id
    assert [(d.name, d.version) for d in ws.datasets()] == [("training-data", 1), ("training-data", 2)]
    assert ws.dataset("training-data", 1).id == first.id


def test_register_parquet(ws: Workspace, tmp_path: Path, http: httpx.Client) -> None:
    frame = _frame()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    path = tmp_path / "data.parquet"
    frame.to_parquet(path, index=False)
    view = ws.register_dataset("parquet-data", path, timestamp_column="ts")
    assert view.raw["format"] == "parquet"
    assert view.row_count == 3
    assert dict((c.name, c.dtype) for c in view.columns)["ts"].startswith("datetime64")
    by_id = http.get(f"/workspaces/{ws.name}/datasetsById/{view.id}")
    assert by_id.json()["name"] == "parquet-data"
    downloaded = http.get(f"/workspaces/{ws.name}/datasets/parquet-data/versions/1/download")
    assert downloaded.content == path.read_bytes()


@pytest.mark.parametrize(
    ("column", "reason"),
    [("missing", "does not exist"), ("n", "not date-times"), ("label", "ISO 8601"), ("x", "not date-times")],
)
def test_a_bad_timestamp_column_is_400_naming_it(
    ws: Workspace, tmp_path: Path, column: str, reason: str
) -> None:
    path = tmp_path / "train.csv"
    _frame().to_csv(path, index=False)
    with pytest.raises(ApiError) as info:
        ws.register_dataset("bad-data", path, timestamp_column=column)
    assert info.value.status == 400
    assert info.value.details[0]["target"] == "timestampColumn"
    assert column in info.value.message and reason in info.value.message
    assert ws.datasets() == []
    # A failed registration consumed no version number.
    assert ws.register_dataset("bad-data", path).version == 1


def test_unreadable_files_are_400_naming_file(ws: Workspace, http: httpx.Client) -> None:
    base = f"/workspaces/{ws.name}/datasets/bad-file/versions"
    assert _target(http.post(base, files={"file": ("empty.csv", b"")})) == "file"
    assert _target(http.post(base, files={"file": ("broken.parquet", b"PAR1 not parquet")})) == "file"
    assert _target(http.post(base, json={"x": 1})) == "file"
    assert _target(http.post(base, data={"timestampColumn": "ts"})) == "file"
    assert ws.datasets() == []
