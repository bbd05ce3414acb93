"""``examples/train_register.py`` runs against a live server and leaves what it promises."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pandas as pd
from tests.support.ml_workspace import MODEL_REGISTERED, RUN_COMPLETED, admin_client
from tests.support.server import ServerProcess

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train_register.py"


def test_train_register_example(sqlite_server: ServerProcess, unique_name: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLGRID_")}
    env.update(MLGRID_URL=sqlite_server.url, MLGRID_TOKEN=sqlite_server.admin_token)
    args = [sys.executable, str(EXAMPLE), "--workspace", unique_name, "--model-name", "iris-classifier"]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "registered model iris-classifier:1" in result.stdout

    with admin_client(sqlite_server) as client:
        ws = client.workspace(unique_name)
        runs = ws.runs(experiment="iris-training")
        assert [r.status for r in runs] == ["Completed"]
        run = ws.run(runs[0].run_id)
        assert [m.step for m in run.metrics("accuracy")] == [0, 1, 2]
        assert [a.path for a in run.artifacts()] == ["outputs/model.pkl"]
        assert [(d.version, d.row_count) for d in ws.datasets("iris")] == [(1, 150)]
        model_path = ws.download_model("iris-classifier", 1, tmp_path / "model.pkl")
        model = pickle.loads(model_path.read_bytes())  # our own file, written by the example
        sample = pd.DataFrame([[5.1, 3.5, 1.4, 0.2]], columns=model.feature_names_in_)
        assert list(model.predict(sample)) == [0]
        assert ws.model("iris-classifier", 1).properties["accuracy"] == run.info.properties["bestAccuracy"]
        assert [e["eventType"] for e in ws.events()] == [RUN_COMPLETED, MODEL_REGISTERED]
