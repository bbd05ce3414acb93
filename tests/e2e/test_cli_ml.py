"""``mlgrid ml workspace|run|job|model|dataset ...`` against a real server, including error exits."""

from __future__ import annotations

import io
import json
import sys
import uuid
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress
from tests.support.cli_runner import Cli, plain

from mlgrid.cli.uploads import ProgressReader, ProgressTransport
from mlgrid.client import Client
from mlgrid.client.workspace import Workspace

RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
MODEL_REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"


@pytest.fixture(scope="module")
def workspace(cli: Cli) -> str:
    name = "w" + uuid.uuid4().hex[:10]
    cli.run("ml", "workspace", "create", "--name", name)
    return name


def test_workspace_lifecycle(cli: Cli) -> None:
    name = "w" + uuid.uuid4().hex[:10]
    created = cli.json("ml", "workspace", "create", "--name", name, "--run-status-changed-events", "all")
    assert created["name"] == name
    assert created["properties"]["runStatusChangedEvents"] == "all"
    assert created["id"].endswith(f"/providers/Microsoft.MachineLearningServices/workspaces/{name}")
    assert cli.json("ml", "workspace", "show", "-n", name)["id"] == created["id"]
    assert name in [w["name"] for w in cli.json("ml", "workspace", "list")]
    assert name in cli.run("ml", "workspace", "list", "-o", "table").stdout
    cli.run("ml", "workspace", "delete", "-n", name)
    missing = cli.run("ml", "workspace", "show", "-n", name, expect=1)
    assert missing.stderr.startswith("error: ") and name in missing.stderr


def test_runs(cli: Cli, workspace: str) -> None:
    started = cli.json("ml", "run", "start", "-w", workspace, "--experiment", "train", "--run-type", "cli",
                       "--tags", "team=a", "stage=dev", "--properties", "git=abc")
    run_id = started["runId"]
    assert run_id.startswith("train_") and started["status"] == "Running"
    assert started["tags"] == {"team": "a", "stage": "dev"} and started["properties"] == {"git": "abc"}

    metrics = cli.json("ml", "run", "log-metric", "-w", workspace, "--run-id", run_id,
                       "--name", "rmse", "--value", "0.25", "--step", "3")
    assert [(m["name"], m["value"], m["step"]) for m in metrics] == [("rmse", 0.25, 3)]
    bad_value = cli.run("ml", "run", "log-metric", "-w", workspace, "--run-id", run_id,
                        "--name", "rmse", "--value", "abc", expect=2)
    assert "not a number" in plain(bad_value.output)

    assert cli.json("ml", "run", "show", "-w", workspace, "--run-id", run_id)["status"] == "Running"
    assert cli.json("ml", "run", "complete", "-w", workspace, "--run-id", run_id)["status"] == "Completed"
    again = cli.run("ml", "run", "complete", "-w", workspace, "--run-id", run_id, expect=1)
    assert again.stderr.startswith("error: RunAlreadyTerminal: ")

    failing = cli.json("ml", "run", "start", "-w", workspace, "-e", "train")["runId"]
    failed = cli.json("ml", "run", "fail", "-w", workspace, "--run-id", failing, "--error", "out of memory")
    assert failed["status"] == "Failed" and failed["error"] == "out of memory"

    listed = cli.json("ml", "run", "list", "-w", workspace, "--experiment", "train")
    assert {r["runId"] for r in listed} >= {run_id, failing}
    completed = cli.json("ml", "run", "list", "-w", workspace, "--status", "Completed")
    assert [r["runId"] for r in completed] == [run_id]
    table = cli.run("ml", "run", "list", "-w", workspace, "-o", "table").stdout
    assert run_id in table and "Failed" in table

    events = cli.json("events", "list", "--topic", f"/workspaces/{workspace}", "--event-type", RUN_COMPLETED)
    assert [e["data"]["RunId"] for e in events] == [run_id]


def test_workspace_from_the_environment_and_unknown_workspace(cli: Cli, workspace: str) -> None:
    result = cli.run("ml", "run", "list", env={"MLGRID_WORKSPACE": workspace})
    assert isinstance(json.loads(result.stdout), list)
    unknown = cli.run("ml", "run", "list", "-w", "nosuchworkspace", expect=1)
    assert unknown.stderr.startswith("error: ")
    missing = cli.run("ml", "run", "list", expect=2, env={"MLGRID_WORKSPACE": ""})
    assert "--workspace-name" in plain(missing.output)


def test_jobs(cli: Cli, workspace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the code directory, uploaded by default: empty here
    submitted = cli.json("ml", "job", "submit", "-w", workspace, "-e", "jobs",
                         "--command", 'echo "hello $GREETING"', "--env", "GREETING=cli", "--wait",
                         "--poll-interval", "0.1")
    assert submitted["status"] == "Completed" and submitted["job"]["exitCode"] == 0
    log = cli.run("ml", "job", "show", "-w", workspace, "--run-id", submitted["runId"], "--log").stdout
    assert "hello cli" in log
    shown = cli.json("ml", "job", "show", "-w", workspace, "--run-id", submitted["runId"])
    assert shown["runId"] == submitted["runId"]

    failed = cli.run("ml", "job", "submit", "-w", workspace, "-e", "jobs", "--command", "exit 3", "--wait",
                     "--poll-interval", "0.1", "-o", "json", expect=1)
    assert json.loads(failed.stdout)["status"] == "Failed"
    assert "ended Failed (exit code 3)" in failed.stderr

    queued = cli.json("ml", "job", "submit", "-w", workspace, "-e", "jobs", "--command", "true", "--no-code")
    assert queued["runId"].startswith("jobs_")

    slow = cli.run("ml", "job", "submit", "-w", workspace, "-e", "jobs", "--command", "sleep 3", "--wait",
                   "--timeout", "0.2", "--poll-interval", "0.1", expect=1)
    assert "is still" in slow.stderr


def test_job_code_travels_with_the_job(
    cli: Cli, workspace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/workspace.md's `job submit --command "python train.py"` from the code's directory."""
    (tmp_path / "train.py").write_text("print('trained from the snapshot')\n")
    (tmp_path / ".gitignore").write_text("*.ckpt\n")
    (tmp_path / "old.ckpt").write_bytes(b"\0" * 100)
    monkeypatch.chdir(tmp_path)
    python = sys.executable
    submitted = cli.json("ml", "job", "submit", "-w", workspace, "-e", "code",
                         "--command", f"{python} train.py", "--wait", "--poll-interval", "0.1")
    assert submitted["status"] == "Completed", submitted
    log = cli.run("ml", "job", "show", "-w", workspace, "--run-id", submitted["runId"], "--log").stdout
    assert "trained from the snapshot" in log
    artifacts = cli.json("ml", "run", "artifacts", "-w", workspace, "--run-id", submitted["runId"])
    paths = sorted(a["path"] for a in artifacts)
    assert paths == ["logs/job.log", "snapshot/.gitignore", "snapshot/train.py"]
    shown = cli.run("ml", "run", "download", "-w", workspace, "--run-id", submitted["runId"],
                    "--path", "snapshot/train.py").stdout
    assert shown == (tmp_path / "train.py").read_text()

    other = tmp_path / "elsewhere"
    (other / "pkg").mkdir(parents=True)
    (other / "pkg" / "step.sh").write_text("echo step ran\n")
    moved = cli.json("ml", "job", "submit", "-w", workspace, "-e", "code", "--code", str(other),
                     "--command", "sh pkg/step.sh", "--wait", "--poll-interval", "0.1")
    assert moved["status"] == "Completed", moved

    too_big = cli.run("ml", "job", "submit", "-w", workspace, "-e", "code", "--command", "true",
                      "--code", str(tmp_path / "missing"), expect=2)
    assert "does not exist" in too_big.stderr
    both = cli.run("ml", "job", "submit", "-w", workspace, "-e", "code", "--command", "true",
                   "--code", ".", "--working-directory", ".", expect=2)
    assert "not both" in plain(both.output)


def test_models(cli: Cli, workspace: str, tmp_path: Path) -> None:
    model_file = tmp_path / "model.pkl"
    model_file.write_bytes(b"\x80model" * 1000)
    first = cli.json("ml", "model", "register", "-w", workspace, "--name", "churn", "--path", str(model_file),
                     "--tags", "key1=value1", "--description", "first")
    assert (first["name"], first["version"], first["tags"]) == ("churn", "1", {"key1": "value1"})

    directory = tmp_path / "mlmodel"
    (directory / "sub").mkdir(parents=True)
    (directory / "MLmodel").write_text("flavors: {}\n")
    (directory / "sub" / "weights.bin").write_bytes(b"w" * 10)
    second = cli.json("ml", "model", "register", "-w", workspace, "-n", "churn", "--path", str(directory))
    assert second["version"] == "2" and second["isDirectory"] is True

    with Client(cli.server.url, cli.server.admin_token) as client:
        run = client.workspace(workspace).start_run("train")
        run.upload_bytes("outputs/model.pkl", b"from-a-run")
        run.complete()
    third = cli.json("ml", "model", "register", "-w", workspace, "-n", "churn", "--run-id", run.id,
                     "--artifact-path", "outputs/model.pkl")
    assert third["version"] == "3" and third["runId"] == run.id

    versions = cli.json("ml", "model", "list", "-w", workspace, "--name", "churn")
    assert sorted(m["version"] for m in versions) == ["1", "2", "3"]
    assert "churn" in cli.run("ml", "model", "list", "-w", workspace, "-o", "table").stdout
    shown = cli.json("ml", "model", "show", "-w", workspace, "-n", "churn", "-v", "1")
    assert shown["description"] == "first"

    out = tmp_path / "out"
    out.mkdir()
    downloaded = cli.json("ml", "model", "download", "-w", workspace, "-n", "churn", "-v", "1",
                          "--dest", str(out))
    assert Path(downloaded["path"]).read_bytes() == model_file.read_bytes()
    cli.run("ml", "model", "download", "-w", workspace, "-n", "churn", "-v", "2", "--dest", str(out / "dir"))
    assert (out / "dir" / "sub" / "weights.bin").read_bytes() == b"w" * 10

    topic = f"/workspaces/{workspace}"
    events = cli.json("events", "list", "--topic", topic, "--event-type", MODEL_REGISTERED)
    assert [e["subject"] for e in events] == ["models/churn:1", "models/churn:2", "models/churn:3"]


def test_model_usage_errors(cli: Cli, workspace: str, tmp_path: Path) -> None:
    neither = cli.run("ml", "model", "register", "-w", workspace, "-n", "m1", expect=2)
    assert "--path, or --run-id with --artifact-path" in plain(neither.output)
    both = cli.run("ml", "model", "register", "-w", workspace, "-n", "m1", "--path", str(tmp_path),
                   "--run-id", "r", "--artifact-path", "a", expect=2)
    assert "--path" in plain(both.output)
    missing = cli.run("ml", "model", "register", "-w", workspace, "-n", "m1",
                      "--path", str(tmp_path / "nope.pkl"), expect=2)
    assert "does not exist" in plain(missing.output)
    unknown = cli.run("ml", "model", "show", "-w", workspace, "-n", "nosuchmodel", "-v", "1", expect=1)
    assert unknown.stderr.startswith("error: ")


def test_datasets(cli: Cli, workspace: str, tmp_path: Path) -> None:
    data = tmp_path / "sales.csv"
    rows = "".join(f"{i},r{i % 3},2030-01-0{1 + i % 9}\n" for i in range(60))
    data.write_text("amount,region,date\n" + rows)
    registered = cli.json("ml", "dataset", "register", "-w", workspace, "--name", "sales",
                          "--path", str(data), "--timestamp-column", "date", "--description", "daily sales")
    assert registered["rowCount"] == 60 and registered["timestampColumn"] == "date"
    assert registered["version"] == 1
    listed = cli.json("ml", "dataset", "list", "-w", workspace, "--name", "sales")
    assert [d["id"] for d in listed] == [registered["id"]]
    assert "sales" in cli.run("ml", "dataset", "list", "-w", workspace, "-o", "table").stdout
    missing = cli.run("ml", "dataset", "register", "-w", workspace, "-n", "x1",
                      "--path", str(tmp_path / "no.csv"), expect=2)
    assert "is not a file" in plain(missing.output)
    bad_column = cli.run("ml", "dataset", "register", "-w", workspace, "-n", "sales", "--path", str(data),
                         "--timestamp-column", "nosuchcolumn", expect=1)
    assert bad_column.stderr.startswith("error: ") and "nosuchcolumn" in bad_column.stderr


def test_upload_progress_counts_every_byte(cli: Cli, workspace: str, tmp_path: Path) -> None:
    model_file = tmp_path / "big.bin"
    model_file.write_bytes(bytes(range(256)) * 2048)  # 512 KiB: several multipart chunks
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with Client(cli.server.url, cli.server.admin_token) as client, Progress(console=console) as progress:
        ws = client.workspace(workspace)
        transport = ProgressTransport(ws.http, progress, "uploading")
        version = Workspace(transport, ws.info).register_model("progress", path=model_file)
        (task,) = progress.tasks
        assert task.total == model_file.stat().st_size
        assert task.completed == model_file.stat().st_size
    assert version.name == "progress"


def test_progress_reader_reports_positions(tmp_path: Path) -> None:
    source = tmp_path / "f.bin"
    source.write_bytes(b"abcdef")
    seen: list[int] = []
    with source.open("rb") as handle:
        reader = ProgressReader(handle, seen.append)
        assert reader.read(2) == b"ab" and reader.read() == b"cdef"
        reader.seek(0)
        assert reader.tell() == 0 and reader.fileno() == handle.fileno()
    assert seen == [2, 6, 0]
