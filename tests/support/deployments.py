"""Helpers for the model deployment tests: tiny real models, scripts, event assertions.

Models are trained in the test process on scikit-learn's bundled iris data (no download) and
registered through the SDK like a user would; ``assert_deployed_event`` checks a
ModelDeployed event field for field (SPEC §2.2).
"""

from __future__ import annotations

import io
import os
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from mlgrid.client.workspace import ModelVersion, Workspace
from tests.support.ml_workspace import assert_envelope

MODEL_DEPLOYED = "Microsoft.MachineLearningServices.ModelDeployed"
DEPLOYED_DATA_KEYS = {
    "ServiceName",
    "ServiceComputeType",
    "ModelIds",
    "ServiceTags",
    "ServiceProperties",
    "ETag",
    "Sequencer",
}
SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]

# An entry script that needs no scikit-learn: it starts in a fraction of a second, which keeps
# the lifecycle tests (kills, restarts) quick. ``init`` reads the deployed model's text file.
ECHO_SCRIPT = """\
import json
import os
from pathlib import Path


def init():
    global label
    root = Path(os.environ["AZUREML_MODEL_DIR"])
    files = sorted(p for p in root.rglob("*.txt"))
    label = files[0].read_text().strip() if files else "no-model"


def run(raw_data):
    body = json.loads(raw_data)
    return {"label": label, "echo": body, "pid": os.getpid()}
"""


def iris() -> tuple[np.ndarray, np.ndarray]:
    features, target = load_iris(return_X_y=True)
    return np.asarray(features), np.asarray(target)


def iris_classifier(labels: Sequence[Any] | None = None) -> LogisticRegression:
    """A tiny LogisticRegression on iris; ``labels`` renames the three classes."""
    features, target = iris()
    if labels is not None:
        target = np.asarray([labels[int(t)] for t in target])
    return LogisticRegression(max_iter=500).fit(features, target)


def pickle_bytes(model: Any) -> bytes:
    return pickle.dumps(model)


def joblib_bytes(model: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def register_bytes(
    ws: Workspace, name: str, file_name: str, data: bytes, tmp_path: Path, **kwargs: Any
) -> ModelVersion:
    folder = tmp_path / f"{name}-{time.monotonic_ns()}"
    folder.mkdir(parents=True)
    path = folder / file_name
    path.write_bytes(data)
    return ws.register_model(name, path=path, **kwargs)


def register_directory(
    ws: Workspace, name: str, files: Mapping[str, bytes | str], tmp_path: Path
) -> ModelVersion:
    folder = tmp_path / f"{name}-{time.monotonic_ns()}"
    for relative, content in files.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            target.write_text(content)
        else:
            target.write_bytes(content)
    return ws.register_model(name, path=folder)


def deployed_events(ws: Workspace) -> list[dict[str, Any]]:
    return ws.events(event_type=MODEL_DEPLOYED)


def assert_deployed_event(
    event: Mapping[str, Any],
    ws: Workspace,
    name: str,
    model_ids: str,
    tags: Mapping[str, Any],
    properties: Mapping[str, Any],
    etag: str,
) -> None:
    assert_envelope(event, ws)
    assert event["eventType"] == MODEL_DEPLOYED
    assert event["subject"] == f"endpoints/{name}"
    data = event["data"]
    assert set(data) == DEPLOYED_DATA_KEYS, sorted(data)
    assert data["ServiceName"] == name
    assert data["ServiceComputeType"] == "Local"
    assert data["ModelIds"] == model_ids
    assert data["ServiceTags"] == dict(tags)
    assert data["ServiceProperties"] == dict(properties)
    assert data["ETag"] == etag


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie (a killed child of the server may linger unreaped briefly)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll (bounded) until ``predicate()`` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
