"""An ordinary MLflow user's script, run as a subprocess by the connector tests.

``python -m tests.support.mlflow_lifecycle TRACKING_URI PREFIX STEP`` uses only the public
``mlflow`` client, exactly as a training script would, and prints one JSON object with the ids
it created. Steps:

* ``history`` — a finished run that exists before the connector does (must emit nothing);
* ``train`` — scikit-learn training with ``log_model(registered_model_name=...)`` (version 1),
  ``set_registered_model_alias(champion → 1)``, a failed run terminated twice, a killed run,
  and a run failed with ``update_run(status="FAILED")`` (no end time);
* ``more`` — a second training run registering version 2 and moving ``champion`` to it.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _train(mlflow: Any, model_name: str, c: float) -> tuple[str, str]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    features = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.9, 0.1], [0.1, 0.8], [0.7, 0.2]])
    labels = np.array([0, 1, 0, 1, 0, 1])
    with mlflow.start_run() as run:
        mlflow.log_param("C", c)
        model = LogisticRegression(C=c).fit(features, labels)
        mlflow.log_metric("accuracy", float(model.score(features, labels)))
        # Pinned requirements: inferring them starts a subprocess that imports the model again.
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=model_name, pip_requirements=["scikit-learn"]
        )
    return run.info.run_id, str(info.registered_model_version)


def main(uri: str, prefix: str, step: str) -> dict[str, Any]:
    import mlflow
    import mlflow.sklearn
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = f"{prefix}-experiment"
    mlflow.set_experiment(experiment)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    model_name = f"{prefix}-model"
    out: dict[str, Any] = {"experiment_id": experiment_id, "experiment": experiment, "model": model_name}
    if step == "history":
        with mlflow.start_run() as run:
            mlflow.log_param("old", "yes")
        out["history_run"] = run.info.run_id
    elif step == "train":
        out["train_run"], out["version"] = _train(mlflow, model_name, 1.0)
        client.set_registered_model_alias(model_name, "champion", out["version"])
        client.set_registered_model_alias(model_name, "shadow", out["version"])  # not a deployment alias
        failed = client.create_run(experiment_id, tags={"mlflow.source.type": "LOCAL"})
        client.log_param(failed.info.run_id, "lr", "0.1")
        client.set_terminated(failed.info.run_id, "FAILED")
        client.set_terminated(failed.info.run_id, "FAILED")  # a second terminate: no second event
        out["failed_run"] = failed.info.run_id
        killed = client.create_run(experiment_id)
        client.set_terminated(killed.info.run_id, "KILLED")
        out["killed_run"] = killed.info.run_id
        crashed = client.create_run(experiment_id)
        client.update_run(crashed.info.run_id, status="FAILED")  # no end time
        out["update_failed_run"] = crashed.info.run_id
    elif step == "more":
        out["train_run"], out["version"] = _train(mlflow, model_name, 0.5)
        client.set_registered_model_alias(model_name, "champion", out["version"])
    else:
        raise SystemExit(f"unknown step {step!r}")
    return out


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])), flush=True)
