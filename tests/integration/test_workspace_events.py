"""The ML lifecycle events of a workspace, end to end (SPEC §2.2, §9).

A real server (SQLite and PostgreSQL) driven with the SDK; events are checked three ways: the
topic's retained events (the exact sequence a change produced), a real webhook receiver on
loopback (push delivery), and a pull (``Queue``) subscription.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.fixtures import receiver_fixture, sdk_client_fixture  # noqa: F401 (pytest fixtures)
from tests.support.ml_workspace import (
    MODEL_REGISTERED,
    RUN_COMPLETED,
    RUN_STATUS_CHANGED,
    assert_model_event,
    assert_run_event,
    assert_strictly_increasing,
    retained,
)
from tests.support.receiver import Receiver

from mlgrid import ApiError, Client
from mlgrid.client.filters import StringIn
from mlgrid.client.workspace import Workspace


def _workspace(client: Client, name: str, receiver: Receiver, mode: str = "failed") -> Workspace:
    ws = client.workspaces.create(name, run_status_changed_events=mode)
    ws.create_subscription("all-events", endpoint=receiver.endpoint(f"/{name}/all"))
    ws.create_subscription("pulled", endpoint_type="Queue", event_delivery_schema="EventGridSchema")
    return ws


def _pull_all(ws: Workspace, count: int) -> list[dict[str, Any]]:
    """Receive (and acknowledge) until ``count`` events came; bounded."""
    events: list[dict[str, Any]] = []
    for _ in range(20):
        items = ws.receive("pulled", max_events=100, max_wait=2)
        if items:
            ws.acknowledge("pulled", [i["brokerProperties"]["lockToken"] for i in items])
            events.extend(i["event"] for i in items)
        if len(events) >= count:
            break
    return events


def _pushed(receiver: Receiver, ws: Workspace, count: int) -> list[dict[str, Any]]:
    return receiver.wait_for_events(count, path=f"/{ws.name}/all", timeout=15)


def test_a_completed_run_yields_exactly_one_run_completed(
    client: Client, receiver: Receiver, unique_name: str
) -> None:
    ws = _workspace(client, unique_name, receiver)
    with ws.start_run(
        experiment="train",
        run_type="training",
        tags={"team": "ml", "epochs": 3},
        properties={"algo": "lasso"},
    ) as run:
        run.log_metric("rmse", 0.31)
    assert run.status == "Completed"

    events = retained(ws)
    assert [e["eventType"] for e in events] == [RUN_COMPLETED]
    assert_run_event(events[0], ws, run.info, RUN_COMPLETED)
    assert events[0]["data"]["RunTags"] == {"team": "ml", "epochs": 3}
    assert events[0]["data"]["RunProperties"] == {"algo": "lasso"}
    assert events[0]["data"]["RunType"] == "training"

    pushed = _pushed(receiver, ws, 1)
    assert [e["id"] for e in pushed] == [events[0]["id"]]
    assert pushed[0] == events[0]
    pulled = _pull_all(ws, 1)
    assert [e["id"] for e in pulled] == [events[0]["id"]]
    assert pulled[0]["data"] == events[0]["data"]


def test_a_failing_with_block_yields_run_status_changed_failed(
    client: Client, receiver: Receiver, unique_name: str
) -> None:
    ws = _workspace(client, unique_name, receiver)
    with pytest.raises(ValueError, match="bad data"), ws.start_run(experiment="train") as run:
        raise ValueError("bad data")
    info = run.refresh()
    assert info.status == "Failed"
    assert info.error == "ValueError: bad data"

    events = retained(ws)
    assert [e["eventType"] for e in events] == [RUN_STATUS_CHANGED]
    assert_run_event(events[0], ws, info, RUN_STATUS_CHANGED, "failed")
    assert events[0]["data"]["RunStatus"] == "failed"
    assert events[0]["data"]["RunType"] is None
    pushed = _pushed(receiver, ws, 1)
    assert [e["eventType"] for e in pushed] == [RUN_STATUS_CHANGED]
    assert [e["eventType"] for e in _pull_all(ws, 1)] == [RUN_STATUS_CHANGED]


def test_by_default_only_failure_emits_run_status_changed(
    client: Client, receiver: Receiver, unique_name: str
) -> None:
    ws = _workspace(client, unique_name, receiver)
    run = ws.start_run(experiment="train", status="Queued")
    run.update(status="Running")
    run.update(status="Finalizing")
    run.cancel()
    assert retained(ws) == []


def test_all_mode_emits_every_status_change_in_order(
    client: Client, receiver: Receiver, unique_name: str
) -> None:
    ws = _workspace(client, unique_name, receiver, mode="all")
    run = ws.start_run(experiment="train", status="NotStarted")
    seen = []
    for status in ("Queued", "Preparing", "Running", "Finalizing", "Completed"):
        seen.append(run.update(status=status))
    events = retained(ws)
    assert [(e["eventType"], e["data"].get("RunStatus")) for e in events] == [
        (RUN_STATUS_CHANGED, "queued"),
        (RUN_STATUS_CHANGED, "preparing"),
        (RUN_STATUS_CHANGED, "running"),
        (RUN_STATUS_CHANGED, "finalizing"),
        (RUN_COMPLETED, None),
        (RUN_STATUS_CHANGED, "completed"),
    ]
    for event, info in zip(events[:4], seen[:4], strict=True):
        assert_run_event(event, ws, info, RUN_STATUS_CHANGED)
    assert_run_event(events[4], ws, seen[4], RUN_COMPLETED)
    assert_run_event(events[5], ws, seen[4], RUN_STATUS_CHANGED)
    assert_strictly_increasing([e["data"]["Sequencer"] for e in events])
    assert len({e["data"]["ETag"] for e in events}) == 5  # both events of the completion share one

    # Two runs: each has its own Sequencer, counting from 1.
    other = ws.start_run(experiment="train")
    other.fail("boom")
    other_events = [e for e in retained(ws) if e["data"]["RunId"] == other.id]
    assert [e["data"]["Sequencer"] for e in other_events] == ["00000000000000000001"]
    pushed = _pushed(receiver, ws, 7)
    assert sorted(e["id"] for e in pushed) == sorted(e["id"] for e in retained(ws))


def test_two_registrations_yield_model_registered_1_and_2(
    client: Client, receiver: Receiver, unique_name: str, tmp_path: Any
) -> None:
    ws = _workspace(client, unique_name, receiver)
    ws.create_subscription(
        "tagged-models",
        endpoint=receiver.endpoint(f"/{unique_name}/tagged"),
        included_event_types=[MODEL_REGISTERED],
        subject_begins_with="models/",
        advanced_filters=[StringIn("data.ModelTags.key1", ["value1"])],
    )
    model_file = tmp_path / "model.pkl"
    model_file.write_bytes(b"not really a pickle")
    first = ws.register_model(
        "churn-model",
        path=model_file,
        tags={"key1": "value1"},
        properties={"auc": "0.9"},
        description="first",
    )
    second = ws.register_model("churn-model", path=model_file, tags={"key1": "other"})
    assert (first.version, second.version) == ("1", "2")

    events = retained(ws)
    assert [e["data"]["ModelVersion"] for e in events] == ["1", "2"]
    assert_model_event(events[0], ws, "churn-model", "1", {"key1": "value1"}, {"auc": "0.9"}, first.etag)
    assert_model_event(events[1], ws, "churn-model", "2", {"key1": "other"}, {}, second.etag)
    assert_strictly_increasing([e["data"]["Sequencer"] for e in events])

    tagged = receiver.wait_for_events(1, path=f"/{unique_name}/tagged", timeout=15)
    _pushed(receiver, ws, 2)  # both arrived at the catch-all, so routing has finished
    assert [e["subject"] for e in receiver.events(f"/{unique_name}/tagged")] == ["models/churn-model:1"]
    assert tagged[0]["data"]["ModelTags"] == {"key1": "value1"}


def test_failed_operations_emit_nothing(client: Client, receiver: Receiver, unique_name: str) -> None:
    ws = _workspace(client, unique_name, receiver, mode="all")
    run = ws.start_run(experiment="train")
    run.complete()
    before = retained(ws)
    with pytest.raises(ApiError) as conflict:
        run.update(status="Completed")
    assert conflict.value.status == 409
    with pytest.raises(ApiError) as bad:
        ws.start_run(experiment="train").update(status="Failed", properties={"n": 1})  # type: ignore[dict-item]
    assert bad.value.status == 400
    with pytest.raises(ApiError):
        ws.register_model("broken-model", run_id=run.id, artifact_path="outputs/missing.pkl")
    assert retained(ws) == before
