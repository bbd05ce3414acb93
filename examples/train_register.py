"""Train a scikit-learn classifier on the iris data set, track it as an mlgrid run, register it.

Against a running server (``mlgrid serve``; the SDK reads ``MLGRID_URL`` and ``MLGRID_TOKEN``,
or uses the local admin token in ``./.mlgrid/admin.token``)::

    python examples/train_register.py --workspace demo-ws --model-name iris-classifier

What happens, and which events the workspace's subscribers see:

1. the workspace is created if it does not exist (that needs the admin token);
2. the iris data set (bundled with scikit-learn, nothing is downloaded) is registered as the
   dataset ``iris`` (CSV, no event);
3. a run of experiment ``iris-training`` tries three regularisation strengths, logging
   ``accuracy`` per step, uploads the best model as the artifact ``outputs/model.pkl`` and
   completes -> ``Microsoft.MachineLearningServices.RunCompleted``;
4. the artifact is registered as the next version of the model ->
   ``Microsoft.MachineLearningServices.ModelRegistered``.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

from mlgrid import ApiError, Client
from mlgrid.client.workspace import Workspace


def open_workspace(client: Client, name: str) -> Workspace:
    try:
        return client.workspace(name)
    except ApiError as error:
        if error.status != 404:
            raise
    return client.workspaces.create(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default="demo-ws")
    parser.add_argument("--experiment", default="iris-training")
    parser.add_argument("--model-name", default="iris-classifier")
    args = parser.parse_args(argv)

    with Client() as client, tempfile.TemporaryDirectory() as scratch:
        ws = open_workspace(client, args.workspace)
        frame = load_iris(as_frame=True).frame
        data_file = Path(scratch) / "iris.csv"
        frame.to_csv(data_file, index=False)
        dataset = ws.register_dataset("iris", data_file)
        print(f"dataset {dataset.name}:{dataset.version} ({dataset.row_count} rows, id {dataset.id})")

        features, target = frame.drop(columns="target"), frame["target"]
        x_train, x_test, y_train, y_test = train_test_split(
            features, target, test_size=0.3, random_state=0, stratify=target
        )
        with ws.start_run(
            experiment=args.experiment,
            run_type="training",
            tags={"dataset": "iris", "datasetId": dataset.id},
            properties={"algorithm": "LogisticRegression"},
        ) as run:
            best_accuracy, best_model = -1.0, None
            for step, strength in enumerate((0.01, 1.0, 100.0)):
                model = LogisticRegression(C=strength, max_iter=1000).fit(x_train, y_train)
                accuracy = float(accuracy_score(y_test, model.predict(x_test)))
                run.log_metrics({"accuracy": accuracy, "C": strength}, step=step)
                if accuracy > best_accuracy:
                    best_accuracy, best_model = accuracy, model
            model_file = Path(scratch) / "model.pkl"
            model_file.write_bytes(pickle.dumps(best_model))
            run.upload_file(model_file, name="outputs/model.pkl")
            run.set_properties({"bestAccuracy": f"{best_accuracy:.4f}"})
        print(f"run {run.id}: {run.status}, best accuracy {best_accuracy:.4f}")

        registered = ws.register_model(
            args.model_name,
            run_id=run.id,
            artifact_path="outputs/model.pkl",
            tags={"framework": "scikit-learn", "dataset": "iris"},
            properties={"accuracy": f"{best_accuracy:.4f}"},
            description="Logistic regression on the iris data set",
        )
        print(f"registered model {registered.id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
