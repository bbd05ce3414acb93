"""Data-drift monitors over HTTP (SPEC §2.2 DatasetDriftDetected, §9, §12), on both databases.

A month of daily target windows (1,000 rows each) with a 3-sd mean shift of ``amount`` injected
on known days is backfilled through the REST API and the SDK. DatasetDriftDetected must be
published exactly for those days — checked in the system topic's retained events, at a real
webhook receiver and through a pull (``Queue``) subscription — with every data field of the
spec, and a re-run of analysed windows must publish nothing new.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.drift_data import baseline_frame, target_frame, write_csv
from tests.support.fixtures import blob_server_fixture  # noqa: F401 (pytest fixture: files on every blob store)
from tests.support.ml_workspace import admin_client, assert_envelope, principal_token
from tests.support.receiver import Receiver
from tests.support.server import ServerProcess

from mlgrid import Client
from mlgrid.client.drift import DriftRun, to_dataframe
from mlgrid.client.workspace import Dataset, Workspace

DRIFT_EVENT = "Microsoft.MachineLearningServices.DatasetDriftDetected"
DRIFT_DATA_KEYS = {
    "DataDriftId",
    "DataDriftName",
    "RunId",
    "BaseDatasetId",
    "TargetDatasetId",
    "DriftCoefficient",
    "StartTime",
    "EndTime",
    "ETag",
    "Sequencer",
}
JANUARY = datetime(2024, 1, 1, tzinfo=UTC)
DRIFT_DAYS = (5, 12, 20)
SHORT_DAY = 25  # 20 rows: no coefficient, a reason instead


@dataclass
class Setup:
    ws: Workspace
    baseline: Dataset
    target: Dataset
    untimed: Dataset
    receiver: Receiver

    @property
    def hook_path(self) -> str:
        return f"/{self.ws.name}/drift"


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[Client]:
    with admin_client(server) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def setup(client: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp("drift-data")
    baseline_csv = write_csv(baseline_frame(), folder / "baseline.csv")
    target_csv = write_csv(
        target_frame(JANUARY, 31, drift_days=DRIFT_DAYS, short_days=(SHORT_DAY,)), folder / "target.csv"
    )
    ws = client.workspaces.create("drift" + uuid.uuid4().hex[:10])
    with Receiver() as receiver:
        ws.create_subscription(
            "drift-hook", endpoint=receiver.endpoint(f"/{ws.name}/drift"), included_event_types=[DRIFT_EVENT]
        )
        ws.create_subscription(
            "drift-queue", endpoint_type="Queue", event_delivery_schema="EventGridSchema",
            included_event_types=[DRIFT_EVENT],
        )
        yield Setup(
            ws=ws,
            baseline=ws.register_dataset("baseline", baseline_csv),
            target=ws.register_dataset("target", target_csv, timestamp_column="ts"),
            untimed=ws.register_dataset("untimed", baseline_csv),
            receiver=receiver,
        )


def _drift_events(ws: Workspace, monitor_id: str | None = None) -> list[dict[str, Any]]:
    events = ws.events(event_type=DRIFT_EVENT)
    return [e for e in events if monitor_id is None or e["data"]["DataDriftId"] == monitor_id]


def _pull(ws: Workspace, count: int) -> list[dict[str, Any]]:
    """Receive and acknowledge until ``count`` events came (bounded), then check nothing more."""
    events: list[dict[str, Any]] = []
    for _ in range(20):
        items = ws.receive("drift-queue", max_events=100, max_wait=1 if len(events) >= count else 2)
        if items:
            ws.acknowledge("drift-queue", [i["brokerProperties"]["lockToken"] for i in items])
            events.extend(i["event"] for i in items)
        elif len(events) >= count:
            break
    return events


def _monitor_body(setup: Setup, **changes: Any) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "baselineDatasetId": setup.baseline.id,
        "targetDatasetId": setup.target.id,
        "features": None,
        "frequency": "Day",
        "latency": 0,
        "threshold": 0.2,
        # The Azure-style rule (coefficient >= threshold): the month below must publish exactly
        # the drifted days. The calibrated default is tested on its own further down.
        "falseAlarmRate": None,
        "scheduleEnabled": False,
    }
    properties.update(changes)
    return {"properties": properties}


def _http(server: ServerProcess, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token or server.admin_token}"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=120.0)


def test_backfilling_a_month_publishes_exactly_the_drifted_days(
    server: ServerProcess, setup: Setup
) -> None:
    ws = setup.ws
    with _http(server) as http:
        created = http.put(f"/workspaces/{ws.name}/datadrifts/month", json=_monitor_body(setup))
        assert created.status_code == 201, created.text
        monitor = created.json()
        assert created.headers["etag"] == f'"{monitor["etag"]}"'
        assert str(uuid.UUID(monitor["id"])) == monitor["id"]
        assert monitor["name"] == "month"
        assert monitor["properties"]["threshold"] == 0.2
        assert monitor["properties"]["frequency"] == "Day"

        answer = http.post(
            f"/workspaces/{ws.name}/datadrifts/month/runs",
            json={"start": "2024-01-01T00:00:00Z", "end": "2024-02-01T00:00:00Z"},
        )
    assert answer.status_code == 200, answer.text
    runs = answer.json()["value"]
    assert len(runs) == 31
    days = [JANUARY + timedelta(days=i) for i in range(31)]
    assert [r["startTime"] for r in runs] == [d.isoformat() for d in days]
    assert [r["endTime"] for r in runs] == [(d + timedelta(days=1)).isoformat() for d in days]
    for run in runs:
        assert {"runId", "startTime", "endTime", "driftCoefficient", "featureMetrics",
                "featureContributions", "rowCounts", "eventPublished", "reason"} <= set(run)
    drifted = {datetime.fromisoformat(r["startTime"]).day for r in runs if r["eventPublished"]}
    assert drifted == set(DRIFT_DAYS)
    for run in runs:
        day = datetime.fromisoformat(run["startTime"]).day
        if day == SHORT_DAY:
            assert run["driftCoefficient"] is None
            assert "20 rows" in run["reason"] and "50" in run["reason"]
            assert run["rowCounts"] == {"baseline": 1500, "target": 20}
            continue
        assert run["reason"] is None
        assert run["rowCounts"] == {"baseline": 1500, "target": 1000}
        assert set(run["featureMetrics"]) == {"amount", "age", "channel"}
        assert run["featureMetrics"]["amount"]["kind"] == "numeric"
        assert run["featureMetrics"]["channel"]["kind"] == "categorical"
        if day in DRIFT_DAYS:
            assert run["driftCoefficient"] >= 0.5
            top = max(run["featureContributions"], key=run["featureContributions"].__getitem__)
            assert top == "amount"
            assert run["featureMetrics"]["amount"]["wasserstein_distance"] > 30
        else:
            assert 0 <= run["driftCoefficient"] < 0.2

    # Exactly one event per drifted day, in the order the windows were analysed.
    events = _drift_events(ws, monitor["id"])
    by_run = {r["runId"]: r for r in runs}
    published = [r for r in runs if r["eventPublished"]]
    assert [e["data"]["RunId"] for e in events] == [r["runId"] for r in published]
    assert [e["id"] for e in events] == [r["eventId"] for r in published]
    for event in events:
        run = by_run[event["data"]["RunId"]]
        assert_envelope(event, ws)
        assert event["eventType"] == DRIFT_EVENT
        assert event["subject"] == f"datadrift/{monitor['id']}/run/{run['runId']}"
        data = event["data"]
        assert set(data) >= DRIFT_DATA_KEYS, sorted(data)
        assert [f["Feature"] for f in data["DriftedFeatures"]][:1] == ["amount"]
        assert data["DriftExplanation"].startswith("amount moved most")
        assert data["FalseAlarmRate"] is None and data["Threshold"] == 0.2
        assert data["DataDriftId"] == monitor["id"]
        assert data["DataDriftName"] == "month"
        assert data["BaseDatasetId"] == setup.baseline.id
        assert data["TargetDatasetId"] == setup.target.id
        assert isinstance(data["DriftCoefficient"], float)
        assert data["DriftCoefficient"] == run["driftCoefficient"]
        assert data["StartTime"] == run["startTime"]
        assert data["EndTime"] == run["endTime"]
        assert datetime.fromisoformat(data["StartTime"]).utcoffset() == timedelta(0)
        assert data["StartTime"].endswith("+00:00")
        assert data["ETag"] == monitor["etag"]
    sequencers = [e["data"]["Sequencer"] for e in events]
    assert all(a < b for a, b in itertools.pairwise(sequencers)), sequencers

    # Delivered to a real webhook and to a pull subscription, the same events.
    pushed = setup.receiver.wait_for_events(3, path=setup.hook_path, timeout=20)
    assert sorted(e["id"] for e in pushed) == sorted(e["id"] for e in events)
    pulled = _pull(ws, 3)
    assert sorted(e["id"] for e in pulled) == sorted(e["id"] for e in events)
    assert {e["id"]: e["data"] for e in pulled} == {e["id"]: e["data"] for e in events}

    # Re-running analysed windows returns the stored runs and publishes nothing new.
    with _http(server) as http:
        again = http.post(
            f"/workspaces/{ws.name}/datadrifts/month/runs",
            json={"start": "2023-12-30T12:00:00+02:00", "end": "2024-02-01T00:00:00Z"},
        ).json()["value"]
        listed = http.get(f"/workspaces/{ws.name}/datadrifts/month/runs").json()["value"]
    assert [r["runId"] for r in again][1:] == [r["runId"] for r in runs]
    assert again[0]["startTime"] == "2023-12-31T00:00:00+00:00"  # a new (empty) window
    assert again[0]["eventPublished"] is False
    assert again[0]["driftCoefficient"] is None
    assert again[1:] == runs
    assert [r["runId"] for r in listed] == [r["runId"] for r in again]
    assert [e["id"] for e in _drift_events(ws, monitor["id"])] == [e["id"] for e in events]
    assert _pull(ws, 0) == []
    assert len(setup.receiver.events(path=setup.hook_path)) == 3


def test_a_calibrated_monitor_alarms_by_p_value_and_the_event_ranks_the_moved_feature_first(
    server: ServerProcess, setup: Setup
) -> None:
    """A monitor with ``falseAlarmRate`` 0.05 alarms on the drifted days, by a calibrated
    p-value, and names ``amount`` first in the run and in the event. Without the setting a
    monitor keeps SPEC §2.2's rule (coefficient ≥ threshold)."""
    ws = setup.ws
    body = _monitor_body(setup)
    del body["properties"]["falseAlarmRate"]
    with _http(server) as http:
        plain = http.put(f"/workspaces/{ws.name}/datadrifts/by-threshold", json=body).json()
        assert plain["properties"]["falseAlarmRate"] is None
        body["properties"]["falseAlarmRate"] = 0.05
        created = http.put(f"/workspaces/{ws.name}/datadrifts/calibrated", json=body).json()
        assert created["properties"]["falseAlarmRate"] == 0.05
        runs = http.post(
            f"/workspaces/{ws.name}/datadrifts/calibrated/runs",
            json={"start": "2024-01-01T00:00:00Z", "end": "2024-01-15T00:00:00Z"},
        ).json()["value"]
    assert len(runs) == 14
    for run in runs:
        assert run["decisionRule"] == "falseAlarmRate" and run["falseAlarmRate"] == 0.05
        assert run["nullWindows"]["draws"] > 0 and 0 < run["pValue"] <= 1
        assert run["eventPublished"] is (run["pValue"] <= 0.05)
        assert [f["rank"] for f in run["features"]] == [1, 2, 3]
    drifted = {datetime.fromisoformat(r["startTime"]).day: r for r in runs if r["eventPublished"]}
    assert {5, 12} <= set(drifted)
    # 12 no-drift days at a 5 % false-alarm rate: more than 4 alarms has probability < 0.3 %.
    assert len(set(drifted) - {5, 12}) <= 4
    for day in (5, 12):
        assert drifted[day]["features"][0]["feature"] == "amount"
        assert drifted[day]["features"][0]["drifted"] is True
        assert drifted[day]["auroc"] > 0.9
    events = {e["data"]["RunId"]: e["data"] for e in _drift_events(ws, created["id"])}
    assert set(events) == {r["runId"] for r in drifted.values()}
    data = events[drifted[5]["runId"]]
    assert data["DriftedFeatures"][0]["Feature"] == "amount"
    assert data["DriftedFeatures"][0]["PValue"] <= 0.05
    assert data["PValue"] == drifted[5]["pValue"] and data["FalseAlarmRate"] == 0.05
    assert data["DriftCoefficient"] == drifted[5]["driftCoefficient"]


def test_the_sdk_backfills_in_chunks_with_progress_and_makes_a_dataframe(setup: Setup) -> None:
    ws = setup.ws
    monitor = ws.create_drift_monitor(
        "weekly", setup.baseline, setup.target.id, features=["amount", "channel"], frequency="Week",
        threshold=0.5,
    )
    assert monitor.features == ["amount", "channel"]
    assert (monitor.frequency, monitor.threshold, monitor.latency) == ("Week", 0.5, 0.0)
    seen: list[tuple[int, int]] = []
    runs = monitor.backfill("2024-01-01", "2024-02-01", progress=lambda d, t: seen.append((d, t)),
                            windows_per_request=2)
    # Weeks Monday to Sunday: 1 January 2024 is a Monday; 29 January's week is not complete.
    assert [r.start_time.date().isoformat() for r in runs] == [
        "2024-01-01", "2024-01-08", "2024-01-15", "2024-01-22"
    ]
    assert seen == [(0, 4), (2, 4), (4, 4)]
    assert all(isinstance(r, DriftRun) and r.drift_coefficient is not None for r in runs)
    assert all(set(r.feature_contributions) == {"amount", "channel"} for r in runs)
    assert [r.event_published for r in runs] == [r.drifted for r in runs]
    assert [r.run_id for r in monitor.runs()] == [r.run_id for r in runs]
    in_range = monitor.runs(start="2024-01-08", end="2024-01-22")
    assert [r.run_id for r in in_range] == [r.run_id for r in runs[1:3]]

    frame = to_dataframe(runs)
    assert list(frame["run_id"]) == [r.run_id for r in runs]
    assert list(frame["target_rows"]) == [r.row_counts["target"] for r in runs]
    assert {"drift_coefficient", "event_published", "contribution_amount"} <= set(frame.columns)
    assert to_dataframe([]).empty

    assert [m.name for m in ws.drift_monitors()] == sorted(m.name for m in ws.drift_monitors())
    assert "weekly" in [m.name for m in ws.drift_monitors()]
    updated = monitor.update(threshold=0.9)
    assert updated.threshold == 0.9 and updated.id == monitor.id
    ws.delete_drift_monitor("weekly")
    assert "weekly" not in [m.name for m in ws.drift_monitors()]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"baselineDatasetId": None}, "properties.baselineDatasetId"),
        ({"baselineDatasetId": "not-a-uuid"}, "properties.baselineDatasetId"),
        ({"baselineDatasetId": str(uuid.uuid4())}, "properties.baselineDatasetId"),
        ({"targetDatasetId": str(uuid.uuid4())}, "properties.targetDatasetId"),
        ({"targetDatasetId": "untimed"}, "properties.targetDatasetId"),
        ({"features": ["amount", "nope"]}, "properties.features"),
        ({"features": ["ts"]}, "properties.features"),
        ({"features": []}, "properties.features"),
        ({"frequency": "Hour"}, "properties.frequency"),
        ({"latency": -1}, "properties.latency"),
        ({"latency": "2"}, "properties.latency"),
        ({"threshold": 0}, "properties.threshold"),
        ({"threshold": 1.5}, "properties.threshold"),
        ({"scheduleEnabled": "yes"}, "properties.scheduleEnabled"),
        ({"falseAlarmRate": 0}, "properties.falseAlarmRate"),
        ({"falseAlarmRate": 0.9}, "properties.falseAlarmRate"),
        ({"falseAlarmRate": "0.05"}, "properties.falseAlarmRate"),
        ({"treshold": 0.3}, "properties.treshold"),
    ],
)
def test_a_bad_definition_is_a_400_naming_the_field_and_creates_nothing(
    server: ServerProcess, setup: Setup, changes: dict[str, Any], field: str
) -> None:
    if changes.get("targetDatasetId") == "untimed":
        changes = {"targetDatasetId": setup.untimed.id}
    with _http(server) as http:
        path = f"/workspaces/{setup.ws.name}/datadrifts/badmonitor"
        answer = http.put(path, json=_monitor_body(setup, **changes))
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert field in error["message"]
        assert error["details"][0]["target"].startswith(field)
        assert http.get(path).status_code == 404


def test_bad_ranges_are_400s_naming_the_field_and_change_nothing(server: ServerProcess, setup: Setup) -> None:
    path = f"/workspaces/{setup.ws.name}/datadrifts/ranges"
    with _http(server) as http:
        assert http.put(path, json=_monitor_body(setup)).status_code == 201
        cases = [
            ({"start": "2024-01-10", "end": "2024-01-01"}, "end"),
            ({"start": "2024-01-10", "end": "2024-01-10"}, "end"),
            ({"start": "yesterday", "end": "2024-01-10"}, "start"),
            ({"start": "2024-01-01", "end": 5}, "end"),
            ({"end": "2024-01-10"}, "start"),
            ({"start": "2000-01-01", "end": "2024-01-01"}, "end"),  # more than 400 windows
            ({"start": "2024-01-01", "end": "2024-01-03", "extra": 1}, "extra"),
        ]
        for body, field in cases:
            answer = http.post(f"{path}/runs", json=body)
            assert answer.status_code == 400, (body, answer.text)
            assert answer.json()["error"]["details"][0]["target"] == field, (body, answer.text)
        assert http.get(f"{path}/runs").json()["value"] == []
        assert http.post(f"{path}/runs", content=b"[", headers={"content-type": "application/json"}
                         ).status_code == 400
        # A range shorter than one window analyses nothing.
        short = {"start": "2024-01-01T06:00:00Z", "end": "2024-01-02T05:00:00Z"}
        assert http.post(f"{path}/runs", json=short).json() == {"value": []}
        assert http.get(f"{path}/runs").json()["value"] == []
    assert [e for e in _drift_events(setup.ws) if e["data"]["DataDriftName"] == "ranges"] == []


def test_put_replaces_keeps_the_id_and_honours_if_match(server: ServerProcess, setup: Setup) -> None:
    path = f"/workspaces/{setup.ws.name}/datadrifts/replaced"
    with _http(server) as http:
        assert http.put(path, json=_monitor_body(setup), headers={"If-Match": '"nope"'}).status_code == 412
        assert http.get(path).status_code == 404
        first = http.put(path, json=_monitor_body(setup)).json()
        same = http.put(path, json=_monitor_body(setup))
        assert same.status_code == 200
        assert same.json()["etag"] == first["etag"]  # nothing changed
        stale = http.put(path, json=_monitor_body(setup, threshold=0.4), headers={"If-Match": '"stale"'})
        assert stale.status_code == 412
        assert http.get(path).json()["properties"]["threshold"] == 0.2
        changed = http.put(
            path, json=_monitor_body(setup, threshold=0.4, latency=1.5, frequency="month"),
            headers={"If-Match": f'"{first["etag"]}"'},
        ).json()
        assert changed["id"] == first["id"]
        assert changed["etag"] != first["etag"]
        expected = {**first["properties"], "threshold": 0.4, "latency": 1.5, "frequency": "Month"}
        assert changed["properties"] | {"updatedTime": None} == expected | {"updatedTime": None}
        # A GET answer may be sent back as it is.
        round_trip = http.put(path, json=http.get(path).json())
        assert round_trip.status_code == 200 and round_trip.json()["etag"] == changed["etag"]
        listed = http.get(f"/workspaces/{setup.ws.name}/datadrifts").json()["value"]
        assert [m["id"] for m in listed if m["name"] == "replaced"] == [first["id"]]
        assert http.delete(path, headers={"If-Match": '"stale"'}).status_code == 412
        assert http.delete(path).status_code == 204
        assert http.get(path).status_code == 404
        assert http.get(f"{path}/runs").status_code == 404
        assert http.delete(path).status_code == 404
        assert http.post(f"{path}/runs", json={"start": "2024-01-01", "end": "2024-01-02"}).status_code == 404


def test_a_reader_may_read_but_not_create_change_or_backfill(
    server: ServerProcess, setup: Setup, unique_name: str
) -> None:
    token = principal_token(server, unique_name)
    setup.ws.assign_role(unique_name, "Reader")
    path = f"/workspaces/{setup.ws.name}/datadrifts/guarded"
    with _http(server) as admin, _http(server, token) as reader:
        denied = reader.put(path, json=_monitor_body(setup))
        assert denied.status_code == 403, denied.text
        assert admin.get(path).status_code == 404
        assert admin.put(path, json=_monitor_body(setup)).status_code == 201
        assert reader.get(path).status_code == 200
        assert reader.get(f"/workspaces/{setup.ws.name}/datadrifts").status_code == 200
        assert reader.get(f"{path}/runs").json() == {"value": []}
        range_body = {"start": "2024-01-01", "end": "2024-01-03"}
        assert reader.post(f"{path}/runs", json=range_body).status_code == 403
        assert reader.put(path, json=_monitor_body(setup, threshold=0.5)).status_code == 403
        assert reader.delete(path).status_code == 403
        assert admin.get(f"{path}/runs").json() == {"value": []}
        assert admin.get(path).json()["properties"]["threshold"] == 0.2
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get(path).status_code == 401


def test_routes_and_body_schemas_are_in_openapi(server: ServerProcess) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    monitor = spec["paths"]["/workspaces/{workspace}/datadrifts/{name}"]
    assert {"put", "get", "delete"} <= set(monitor)
    body = monitor["put"]["requestBody"]["content"]["application/json"]["schema"]
    assert "targetDatasetId" in body["properties"]["properties"]["properties"]
    runs = spec["paths"]["/workspaces/{workspace}/datadrifts/{name}/runs"]
    assert {"post", "get"} <= set(runs)
    range_schema = runs["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert range_schema["required"] == ["start", "end"]
    assert "get" in spec["paths"]["/workspaces/{workspace}/datadrifts"]


def test_deleting_the_workspace_deletes_its_monitors(
    client: Client, setup: Setup, tmp_path: Path, unique_name: str
) -> None:
    ws = client.workspaces.create(unique_name)
    csv = write_csv(target_frame(JANUARY, 2, rows_per_day=60), tmp_path / "t.csv")
    target = ws.register_dataset("target", csv, timestamp_column="ts")
    ws.create_drift_monitor("gone", target, target)
    client.workspaces.delete(unique_name)
    again = client.workspaces.create(unique_name)
    assert again.drift_monitors() == []
