"""``mlgrid ml datadrift ...`` and ``examples/drift_monitor.py`` against a live server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.support.cli_runner import Cli, plain
from tests.support.drift_data import baseline_frame, target_frame, write_csv
from tests.support.ml_workspace import admin_client
from tests.support.server import ServerProcess

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "drift_monitor.py"
DRIFT_EVENT = "Microsoft.MachineLearningServices.DatasetDriftDetected"
JANUARY = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def cli(sqlite_server: ServerProcess) -> Cli:
    return Cli(sqlite_server)


def test_datadrift_commands(cli: Cli, tmp_path: Path) -> None:
    ws = "w" + uuid.uuid4().hex[:10]
    cli.run("ml", "workspace", "create", "--name", ws)
    baseline_csv = write_csv(baseline_frame(), tmp_path / "baseline.csv")
    target_csv = write_csv(target_frame(JANUARY, 7, drift_days=(3,)), tmp_path / "target.csv")
    baseline = cli.json("ml", "dataset", "register", "-w", ws, "--name", "base", "--path", str(baseline_csv))
    target = cli.json("ml", "dataset", "register", "-w", ws, "--name", "target", "--path", str(target_csv),
                      "--timestamp-column", "ts")

    created = cli.json("ml", "datadrift", "create", "-w", ws, "--name", "cli-drift",
                       "--baseline-dataset-id", baseline["id"], "--target-dataset-id", target["id"],
                       "--features", "amount", "channel", "--frequency", "day", "--latency", "2",
                       "--drift-threshold", "0.3", "--false-alarm-rate", "none")
    assert created["properties"] | {"createdTime": None, "updatedTime": None} == {
        "baselineDatasetId": baseline["id"], "targetDatasetId": target["id"],
        "features": ["amount", "channel"], "frequency": "Day", "latency": 2, "threshold": 0.3,
        "falseAlarmRate": None, "scheduleEnabled": False, "scheduledUntil": None, "createdTime": None,
        "updatedTime": None,
    }
    assert cli.json("ml", "datadrift", "show", "-w", ws, "-n", "cli-drift")["id"] == created["id"]
    assert [m["name"] for m in cli.json("ml", "datadrift", "list", "-w", ws)] == ["cli-drift"]
    assert "cli-drift" in cli.run("ml", "datadrift", "list", "-w", ws, "-o", "table").stdout

    runs = cli.json("ml", "datadrift", "backfill", "-w", ws, "-n", "cli-drift",
                    "--start", "2024-01-01", "--end", "2024-01-08")
    assert [r["startTime"][:10] for r in runs] == [f"2024-01-0{d}" for d in range(1, 8)]
    assert [r["startTime"][8:10] for r in runs if r["eventPublished"]] == ["03"]
    # On a terminal, a progress bar over the windows (stored windows come back as they were).
    shown = cli.run("ml", "datadrift", "backfill", "-w", ws, "-n", "cli-drift", "--start", "2024-01-01",
                    "--end", "2024-01-08", "-o", "json", env={"TTY_COMPATIBLE": "1"})
    assert "analysing day windows" in shown.stderr and "7/7" in shown.stderr
    assert [r["runId"] for r in json.loads(shown.stdout)] == [r["runId"] for r in runs]
    table = cli.run("ml", "datadrift", "runs", "-w", ws, "-n", "cli-drift", "-o", "table").stdout
    assert runs[2]["runId"] in table and "true" in table
    assert "amount (p=" in table  # the feature that moved, ranked first
    assert runs[2]["features"][0]["feature"] == "amount" and runs[2]["features"][0]["drifted"]
    bad_rate = cli.run("ml", "datadrift", "create", "-w", ws, "--name", "bad-rate",
                       "--baseline-dataset-id", baseline["id"], "--target-dataset-id", target["id"],
                       "--false-alarm-rate", "often", expect=2)
    assert "--false-alarm-rate" in plain(bad_rate.output)
    listed = cli.json("ml", "datadrift", "runs", "-w", ws, "-n", "cli-drift", "--start", "2024-01-03",
                      "--end", "2024-01-05")
    assert [r["runId"] for r in listed] == [r["runId"] for r in runs[2:4]]

    bad = cli.run("ml", "datadrift", "backfill", "-w", ws, "-n", "cli-drift", "--start", "2024-01-05",
                  "--end", "2024-01-01", expect=2)
    assert "end must be later than start" in plain(bad.output)
    missing = cli.run("ml", "datadrift", "create", "-w", ws, "--name", "bad-drift", "--baseline-dataset-id",
                      baseline["id"], "--target-dataset-id", baseline["id"], expect=1)
    assert "properties.targetDatasetId" in missing.stderr

    cli.run("ml", "datadrift", "delete", "-w", ws, "-n", "cli-drift")
    assert cli.json("ml", "datadrift", "list", "-w", ws) == []


def test_drift_monitor_example(sqlite_server: ServerProcess, unique_name: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLGRID_")}
    env.update(MLGRID_URL=sqlite_server.url, MLGRID_TOKEN=sqlite_server.admin_token)
    plot = tmp_path / "drift.svg"
    args = [sys.executable, str(EXAMPLE), "--workspace", unique_name, "--plot", str(plot)]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # The default decision alarms on about 5 % of calm days: the drifted days must all be
    # flagged, with "amount" named, and at most 4 of the 28 calm days (probability > 99 %).
    lines = [line for line in result.stdout.splitlines() if line.endswith("DRIFT")]
    flagged = [line[:10] for line in lines]
    assert {"2024-01-08", "2024-01-09", "2024-01-20"} <= set(flagged) and len(flagged) <= 7
    assert all("amount" in line for line in lines if line[:10] in {"2024-01-08", "2024-01-09", "2024-01-20"})
    assert f"{len(flagged)} of 31 windows drifted" in result.stdout
    assert result.stdout.count(f"event {DRIFT_EVENT}") == len(flagged)
    assert "analysed 31/31 windows" in result.stderr
    assert plot.read_text().startswith("<svg") and plot.read_text().count("<rect") == 32

    with admin_client(sqlite_server) as client:
        ws = client.workspace(unique_name)
        monitor = ws.drift_monitor("sales-drift")
        assert [r.start_time.strftime("%Y-%m-%d") for r in monitor.runs() if r.event_published] == flagged
        events = ws.events(event_type=DRIFT_EVENT)
        assert [e["data"]["DataDriftId"] for e in events] == [monitor.id] * len(flagged)
