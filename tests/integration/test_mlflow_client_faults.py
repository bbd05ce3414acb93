"""The MLflow REST client turns every way a server can fail into one typed error.

A loopback HTTP server stands for a broken MLflow (5xx, 429, 4xx, garbage, slow, endless
paging); the happy paths run against the real ``mlflow server`` in the connector tests.
"""

from __future__ import annotations

import base64
import json

import pytest
from tests.support.receiver import Receiver, Reply
from tests.support.server import free_port

from mlgrid.connectors.mlflow_client import (
    MlflowBadResponse,
    MlflowClient,
    MlflowRejected,
    MlflowUnavailable,
)

EXPERIMENTS = "/api/2.0/mlflow/experiments/search"
RUNS = "/api/2.0/mlflow/runs/search"


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(503, "down"), MlflowUnavailable),
        (Reply(429, "slow down"), MlflowUnavailable),
        (Reply(401, "no"), MlflowRejected),
        (Reply(404, "not mlflow"), MlflowRejected),
        (Reply(200, "<html>garbage</html>"), MlflowBadResponse),
        (Reply(200, [1, 2]), MlflowBadResponse),
        (Reply(200, {"experiments": "nope"}), MlflowBadResponse),
        (Reply(200, {"experiments": [{"name": "no id"}]}), MlflowBadResponse),
        (Reply(200, {"experiments": [], "next_page_token": 7}), MlflowBadResponse),
        (Reply(200, {"experiments": [{"experiment_id": "1"}]}, delay=2.0), MlflowUnavailable),
    ],
)
async def test_faults_are_typed(reply: Reply, error: type[Exception]) -> None:
    with Receiver() as receiver:
        receiver.configure(EXPERIMENTS, default=reply)
        client = MlflowClient(receiver.url, timeout=0.5)
        try:
            with pytest.raises(error):
                await client.experiments()
        finally:
            await client.close()


async def test_unreachable_is_unavailable() -> None:
    client = MlflowClient(f"http://127.0.0.1:{free_port()}", timeout=1.0)
    try:
        with pytest.raises(MlflowUnavailable):
            await client.check()
    finally:
        await client.close()


async def test_pages_are_followed_and_runs_parsed_with_token() -> None:
    with Receiver() as receiver:
        token = base64.b64encode(json.dumps({"offset": 1}).encode()).decode()
        run = {"info": {"run_id": "r1", "experiment_id": "1", "status": "FAILED", "end_time": None},
               "data": {"tags": [{"key": "mlflow.source.type", "value": "LOCAL"}],
                        "params": [{"key": "alpha", "value": "0.5"}]}}
        receiver.enqueue(RUNS, Reply(200, {"runs": [run], "next_page_token": token}),
                         Reply(200, {"runs": [dict(run, info=dict(run["info"], run_id="r2"))]}))
        client = MlflowClient(receiver.url, token="secret-token")
        try:
            runs = await client.runs_by_id(["1"], ["r1", "r2"], {"1": "exp"})
        finally:
            await client.close()
        assert [(r.run_id, r.status, r.experiment_name, r.end_time_ms) for r in runs] == [
            ("r1", "FAILED", "exp", None), ("r2", "FAILED", "exp", None)]
        assert runs[0].params == {"alpha": "0.5"}
        sent = receiver.requests(RUNS)
        assert [r.json().get("page_token") for r in sent] == [None, token]
        assert sent[0].json()["filter"] == "attributes.run_id IN ('r1', 'r2')"
        assert sent[0].headers["authorization"] == "Bearer secret-token"
