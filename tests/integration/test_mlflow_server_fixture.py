"""The ``mlflow server`` fixtures start a real server on both backends that the real client can use."""

from __future__ import annotations

import httpx
import pytest
from tests.support.mlflow_server import MlflowServer


@pytest.fixture(params=["sqlite", "postgres"])
def mlflow_server(request: pytest.FixtureRequest) -> MlflowServer:
    server: MlflowServer = request.getfixturevalue(f"mlflow_{request.param}")
    return server


def test_real_client_writes_and_rest_search_reads(mlflow_server: MlflowServer) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url)
    experiment_id = client.create_experiment(f"fixture-{mlflow_server.port}-{id(client)}")
    run = client.create_run(experiment_id)
    client.set_terminated(run.info.run_id, "FAILED")
    reply = httpx.post(
        mlflow_server.url + "/api/2.0/mlflow/runs/search",
        json={"experiment_ids": [experiment_id], "filter": "attributes.status = 'FAILED'"},
        timeout=10,
    )
    assert reply.status_code == 200
    runs = reply.json()["runs"]
    assert [r["info"]["run_id"] for r in runs] == [run.info.run_id]
    assert runs[0]["info"]["status"] == "FAILED"
