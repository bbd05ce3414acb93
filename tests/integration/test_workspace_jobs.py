"""Submitted jobs (SPEC §9): the server runs a command as a run, captures its log as the
artifact ``logs/job.log`` and sets Completed/Failed from the exit code; cancelling kills it; a
job left running by a server that died is Failed at the next start."""

from __future__ import annotations

import io
import json
import os
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.azurite import stored_workspace_files
from tests.support.fixtures import blob_server_fixture  # noqa: F401 (pytest fixture: files on every blob store)
from tests.support.ml_workspace import RUN_COMPLETED, RUN_STATUS_CHANGED, admin_client, retained, wait_until
from tests.support.server import ServerProcess

from mlgrid import ApiError, Client
from mlgrid.client.code_snapshot import CodeSnapshotError
from mlgrid.client.workspace import Workspace

PYTHON = sys.executable


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[Client]:
    with admin_client(server) as sdk:
        yield sdk


@pytest.fixture
def ws(client: Client, unique_name: str) -> Workspace:
    return client.workspaces.create(unique_name)


def test_a_successful_job_completes_with_its_log(
    ws: Workspace, shared_tmp: Path, server: ServerProcess
) -> None:
    (shared_tmp / "train.py").write_text("print('snapshot')\n")
    (shared_tmp / "train.py").chmod(0o644)
    script = (
        "import os, pathlib; print('run', os.environ['MLGRID_RUN_ID']); "
        "print('url', os.environ['MLGRID_URL']); "
        "print('ws', os.environ['MLGRID_WORKSPACE']); print('cwd', pathlib.Path.cwd()); "
        "print('files', sorted(os.listdir())); "
        "print('token', os.environ.get('MLGRID_TOKEN')); print('team', os.environ['TEAM'])"
    )
    run = ws.submit_job(
        f'{PYTHON} -c "{script}" && {PYTHON} train.py && echo to-stderr >&2',
        experiment="jobs",
        working_directory=shared_tmp,
        environment={"TEAM": "ml"},
        tags={"kind": "job"},
        wait=True,
    )
    info = run.info
    assert info.status == "Completed", info
    assert info.exit_code == 0
    assert info.run_type == "job"
    assert info.tags == {"kind": "job"}
    log = run.download_artifact("logs/job.log").decode()
    assert f"run {run.id}" in log
    assert f"ws {ws.name}" in log
    # The job runs in its own working copy holding a snapshot of workingDirectory.
    assert f"cwd {shared_tmp}" not in log
    assert "files ['train.py']" in log and "snapshot" in log
    # Its token is a run token (never the server's or the submitter's) ...
    token = next(line.split()[1] for line in log.splitlines() if line.startswith("token "))
    assert token.startswith("mlgrun_") and token != server.admin_token
    assert "team ml" in log
    assert "to-stderr" in log
    assert [a.path for a in run.artifacts()] == ["logs/job.log"]
    assert [e["eventType"] for e in retained(ws)] == [RUN_COMPLETED]


def test_a_job_runs_in_a_snapshot_of_its_uploaded_code(ws: Workspace, tmp_path: Path) -> None:
    """The code directory travels with the job, less what .amlignore/.gitignore ignore."""
    code = tmp_path / "project"
    (code / "src").mkdir(parents=True)
    (code / "data").mkdir()
    (code / ".git").mkdir()
    (code / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (code / ".gitignore").write_text("*.log\n!keep.log\ndata/\n__pycache__/\n")
    (code / "train.py").write_text(
        "import pathlib\n"
        "files = sorted(str(p) for p in pathlib.Path('.').rglob('*') if p.is_file())\n"
        "print('files', files)\nimport helper\nprint(helper.GREETING)\n"
        "pathlib.Path('out.txt').write_text('written in the working copy')\n"
    )
    (code / "helper.py").write_text("GREETING = 'hello from helper'\n")
    (code / "run.sh").write_text("#!/bin/sh\necho ran-the-script\n")
    (code / "run.sh").chmod(0o755)
    (code / "debug.log").write_text("ignored\n")
    (code / "keep.log").write_text("kept\n")
    (code / "data" / "big.csv").write_text("a,b\n" * 1000)
    (code / "src" / "__pycache__").mkdir()
    (code / "src" / "__pycache__" / "m.pyc").write_bytes(b"\0")
    (code / "src" / "model.py").write_text("X = 1\n")
    (code / "src" / ".gitignore").write_text("local_*.py\n")
    (code / "src" / "local_secret.py").write_text("TOKEN = 'x'\n")

    run = ws.submit_job(f"{PYTHON} train.py && ./run.sh", experiment="jobs", code=code, wait=True)
    log = run.download_artifact("logs/job.log").decode()
    assert run.status == "Completed", log
    expected = [".gitignore", "helper.py", "keep.log", "run.sh", "src/.gitignore", "src/model.py", "train.py"]
    assert f"files {expected}" in log
    assert "hello from helper" in log and "ran-the-script" in log
    snapshot = sorted(a.path for a in run.artifacts() if a.path.startswith("snapshot/"))
    assert snapshot == [f"snapshot/{name}" for name in expected]
    assert run.download_artifact("snapshot/helper.py") == (code / "helper.py").read_bytes()
    # What the job wrote stays in its working copy; the snapshot is what was uploaded.
    assert "snapshot/out.txt" not in snapshot

    # An .amlignore wins over the .gitignore of the same directory (as in Azure ML).
    (code / ".amlignore").write_text("helper.py\ndata/\n")
    second = ws.submit_job("ls", experiment="jobs", code=code, wait=True)
    listed = {a.path for a in second.artifacts()}
    assert "snapshot/helper.py" not in listed and "snapshot/debug.log" in listed


def test_a_code_snapshot_over_the_limit_is_refused_before_upload(ws: Workspace, tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\0" * 5000)
    with pytest.raises(CodeSnapshotError, match=r"more than the limit.*weights.bin"):
        ws.submit_job("true", experiment="jobs", code=tmp_path, code_max_bytes=4000)
    assert ws.runs() == []


def test_bad_code_archives_are_400_and_leave_nothing(ws: Workspace, client: Client) -> None:
    def archive(members: dict[str, bytes], symlink: str | None = None) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as bundle:
            for name, data in members.items():
                bundle.writestr(name, data)
            if symlink is not None:
                info = zipfile.ZipInfo(symlink)
                info.external_attr = (0o120777 << 16)
                bundle.writestr(info, "/etc/passwd")
        return buffer.getvalue()

    url = f"/workspaces/{ws.name}/experiments/jobs/jobs"
    for content, target in (
        (b"not a zip", "code"),
        (archive({"../escape.py": b"x"}), "code: '../escape.py'"),
        (archive({"/abs.py": b"x"}), "code: '/abs.py'"),
        (archive({"ok.py": b"x"}, symlink="link"), "code: 'link'"),
        (archive({"a": b"x", "a/b": b"y"}), "code: 'a/b'"),
    ):
        response = client.http.client.post(
            url, data={"job": json.dumps({"command": "true"})}, files={"code": ("code.zip", content)}
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["details"][0]["target"] == target
    for files, target in (
        ({"job": ("job.json", b'{"command": "true"}')}, "job"),  # a file, not the text part
        ({"other": ("x", b"y")}, "other"),
    ):
        response = client.http.client.post(url, files=files)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["details"][0]["target"] == target
    assert ws.runs() == []


def test_a_failing_job_is_failed_with_its_exit_code(ws: Workspace) -> None:
    run = ws.submit_job("echo about to fail; exit 3", experiment="jobs", wait=True)
    assert run.status == "Failed"
    assert run.info.exit_code == 3
    assert run.info.error is not None and "code 3" in run.info.error
    assert run.download_artifact("logs/job.log") == b"about to fail\n"
    events = retained(ws)
    assert [(e["eventType"], e["data"]["RunStatus"]) for e in events] == [(RUN_STATUS_CHANGED, "failed")]


def test_a_cancelled_job_is_killed_and_canceled(ws: Workspace, shared_tmp: Path) -> None:
    marker = shared_tmp / "started"
    run = ws.submit_job(f"touch {marker}; echo started; exec sleep 60", experiment="jobs")
    assert run.status == "Running"
    wait_until(marker.exists, what="the job to start")
    requested = run.cancel()
    assert requested.status in ("CancelRequested", "Canceled")
    final = run.wait(timeout=30)
    assert final.status == "Canceled"
    assert final.end_time is not None
    assert b"started" in run.download_artifact("logs/job.log")
    assert retained(ws) == []  # neither RunCompleted nor a failure
    with pytest.raises(ApiError) as info:
        run.update(status="Running")
    assert info.value.status == 409


def test_clients_cannot_set_a_jobs_status(ws: Workspace) -> None:
    run = ws.submit_job("exec sleep 30", experiment="jobs")
    try:
        with pytest.raises(ApiError) as info:
            run.complete()
        assert (info.value.status, info.value.code) == (409, "JobStatusManagedByServer")
        assert run.set_tags({"note": "tags are fine"}).tags == {"note": "tags are fine"}
    finally:
        run.cancel()
        run.wait(timeout=30)


def test_bad_job_requests_are_400(ws: Workspace, client: Client) -> None:
    for body, field in (
        ({"command": ""}, "command"),
        ({"command": "true", "workingDirectory": "relative/dir"}, "workingDirectory"),
        ({"command": "true", "workingDirectory": "/does/not/exist"}, "workingDirectory"),
        ({"command": "true", "environment": {"MLGRID_RUN_ID": "x"}}, "environment.MLGRID_RUN_ID"),
        ({"command": "true", "environment": {"X": 1}}, "environment.X"),
    ):
        response = client.http.client.post(f"/workspaces/{ws.name}/experiments/jobs/jobs", json=body)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["details"][0]["target"] == field
    assert ws.runs() == []


def test_a_job_orphaned_by_a_dead_server_is_failed_at_restart(tmp_path: Path) -> None:
    server = ServerProcess(data_dir=tmp_path / "orphans")
    server.start()
    try:
        with admin_client(server) as sdk:
            ws = sdk.workspaces.create("orphan-ws")
            run = ws.submit_job("echo running; exec sleep 120", experiment="jobs")
            assert run.status == "Running"
        pid = _job_pid(server, run.id)
        server.kill()
        # The job dies with its server (PR_SET_PDEATHSIG, or bubblewrap's --die-with-parent);
        # anything it daemonised is killed at the restart (test_security_isolation.py).
        wait_until(lambda: not _alive(pid), timeout=10, what="the job to die with its server")
        server.start()
        with admin_client(server) as sdk:
            info = sdk.workspace("orphan-ws").run(run.id).info
            assert info.status == "Failed"
            assert info.error is not None and "stopped" in info.error
            events = sdk.workspace("orphan-ws").events()
            assert [(e["eventType"], e["data"]["RunStatus"]) for e in events] == [
                (RUN_STATUS_CHANGED, "failed")
            ]
    finally:
        server.stop()


def _job_pid(server: ServerProcess, run_id: str) -> int:
    """The job's process, found by the MLGRID_RUN_ID in its environment (Linux /proc)."""
    needle = f"MLGRID_RUN_ID={run_id}".encode()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    return int(entry.name)
            except OSError:
                continue
        time.sleep(0.05)
    raise AssertionError(f"no process of job {run_id}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_deleting_a_workspace_stops_its_jobs_and_removes_its_files(
    client: Client, server: ServerProcess, unique_name: str
) -> None:
    ws = client.workspaces.create(unique_name)
    run = ws.submit_job("echo hi; exec sleep 60", experiment="jobs")
    pid = _job_pid(server, run.id)
    run.upload_bytes("outputs/kept.txt", b"until the workspace goes")
    # (With the data directory as the blob store, the running job's log is there too: the
    # node writes it where the artifact logs/job.log will be.)
    assert f"{unique_name.lower()}/runs/{run.id}/artifacts/outputs/kept.txt" in stored_workspace_files(
        server, unique_name
    )
    files = server.data_dir / "workspaces" / unique_name.lower()  # the node's own (the job log)
    assert files.is_dir()
    client.workspaces.delete(unique_name)
    wait_until(lambda: not _alive(pid), timeout=10, what="the job to be killed")
    assert not files.exists()
    assert stored_workspace_files(server, unique_name) == []
    with pytest.raises(ApiError) as info:
        client.workspace(unique_name)
    assert info.value.status == 404
