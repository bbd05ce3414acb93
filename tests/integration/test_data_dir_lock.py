"""One server per data directory: a second ``mlgrid serve`` on it exits at once, touching
nothing, and the first one's running job carries on.

Before the lock, the second server's start-up killed the first one's job and scoring
processes as "leftovers" and marked the job failed, then failed on the port.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support.ml_workspace import admin_client
from tests.support.server import ServerProcess, free_port

from mlgrid.data_dir_lock import LOCK_FILE


def _job_pid(run_id: str) -> int:
    """The job's process, found by the MLGRID_RUN_ID in its environment (Linux /proc)."""
    needle = f"MLGRID_RUN_ID={run_id}".encode()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
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
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under the directory with its size and modification time."""
    found: dict[str, tuple[int, int]] = {}
    for path in directory.rglob("*"):
        if path.is_file():
            stat = path.stat()
            found[str(path.relative_to(directory))] = (stat.st_size, stat.st_mtime_ns)
    return found


def test_a_second_server_on_the_same_data_directory_is_refused_and_harms_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "shared"
    first = ServerProcess(data_dir=data_dir)
    first.start()
    try:
        with admin_client(first) as sdk:
            ws = sdk.workspaces.create("lock-ws")
            run = ws.submit_job("exec sleep 60", experiment="jobs")
            assert run.status == "Running"
        job_pid = _job_pid(run.id)
        assert first.process is not None
        assert (data_dir / LOCK_FILE).read_text().strip() == str(first.process.pid)
        before = _snapshot(data_dir)

        env = {k: v for k, v in os.environ.items() if not k.startswith("MLGRID_")}
        second = subprocess.run(
            [sys.executable, "-m", "mlgrid.cli.main", "serve", "--port", str(free_port()),
             "--data-dir", str(data_dir)],
            capture_output=True, text=True, timeout=60, env=env,
        )
        assert second.returncode != 0
        expected = f"another mlgrid server (pid {first.process.pid}) is using {data_dir.resolve()}"
        assert expected in second.stderr, second.stderr

        after = _snapshot(data_dir)
        changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
        # Only the first server's own files may have moved on meanwhile (its database and log).
        assert all(name.startswith(("mlgrid.db", "server-")) for name in changed), changed
        assert _alive(job_pid)
        with admin_client(first) as sdk:
            assert sdk.workspace("lock-ws").run(run.id).info.status == "Running"
        with first.client() as client:
            assert client.get("/readyz").status_code == 200
    finally:
        first.stop()
