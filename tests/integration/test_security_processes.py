"""``workspace/processes.py`` directly: the bubblewrap sandbox (what a non-root server uses), the
mounts that make a closed interpreter reachable, the scrubbed environment, the cleanup."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlgrid.errors import CodeExecutionDisabled
from mlgrid.workspace import processes
from mlgrid.workspace.processes import BUBBLEWRAP, DISABLED, USER, Command, Containment


def _run(containment: Containment, script: str, log: Path) -> tuple[int, str, Path]:
    async def go() -> tuple[int, Path]:
        sandbox = await asyncio.to_thread(containment.new_sandbox, "test")
        environment = processes.contained_environment(dict(os.environ), {"PROBE": "1"}, sandbox.path)
        process = await processes.start(containment, sandbox, Command([sys.executable, "-c", script],
                                                                      environment, log))
        code = await asyncio.wait_for(process.wait(), 60)
        await process.release()
        return code, sandbox.path

    code, sandbox = asyncio.run(go())
    return code, log.read_text(), sandbox


PROBE = """
import os
def attempt(name, action):
    try:
        action()
        print(name, "ALLOWED")
    except OSError as exc:
        print(name, "denied", type(exc).__name__)
attempt("read-secret", lambda: open(os.environ["SECRET"]).read())
attempt("parent-environ", lambda: open("/proc/%s/environ" % os.environ["PARENT"]).read())
attempt("write-outside", lambda: open(os.environ["OUTSIDE"], "w").write("x"))
attempt("write-own", lambda: open("own.txt", "w").write("x"))
attempt("other-sandbox", lambda: open(os.environ["OTHER"]).read())
print("env", sorted(k for k in os.environ if k.startswith("MLGRID") or k == "SECRET_SERVER_VARIABLE"))
"""


@pytest.fixture
def secret_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "secret.key").write_text("top secret")
    return data


def _probe(containment: Containment, secret_dir: Path, tmp_path: Path) -> tuple[int, str, Path]:
    outside = tmp_path / "outside.txt"
    other = containment.new_sandbox("other")  # another process's private copy
    (other.path / "data.txt").write_text("another workspace's data")
    if other.uid is not None:
        os.chown(other.path / "data.txt", other.uid, other.uid)
    script = (
        f"import os; os.environ.update(SECRET={str(secret_dir / 'secret.key')!r}, PARENT='{os.getpid()}', "
        f"OUTSIDE={str(outside)!r}, OTHER={str(other.path / 'data.txt')!r})\n" + PROBE
    )
    os.environ["SECRET_SERVER_VARIABLE"] = "must not leak"
    try:
        return _run(containment, script, tmp_path / "log.txt")
    finally:
        del os.environ["SECRET_SERVER_VARIABLE"]


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed (make bubblewrap)")
def test_the_bubblewrap_sandbox_hides_the_data_directory_and_the_server(
    secret_dir: Path, tmp_path: Path
) -> None:
    containment = Containment(BUBBLEWRAP, tmp_path / "sandboxes", hidden=(secret_dir,), bubblewrap="bwrap")
    code, log, sandbox = _probe(containment, secret_dir, tmp_path)
    print(log)
    assert code == 0, log
    assert "read-secret denied FileNotFoundError" in log  # an empty directory in its place
    assert "parent-environ denied FileNotFoundError" in log  # another pid namespace
    assert "write-outside denied OSError" in log  # read-only file system (EROFS)
    assert "write-own ALLOWED" in log
    assert "other-sandbox denied FileNotFoundError" in log  # every sandbox but its own is hidden
    assert "env []" in log
    assert not sandbox.exists()  # removed when the process was released


@pytest.mark.skipif(os.geteuid() != 0, reason="the user mode needs root")
def test_the_user_mode_runs_under_another_uid(secret_dir: Path, tmp_path: Path) -> None:
    containment = Containment.detect(secret_dir, unsafe_local_code=False)
    assert containment.mode == USER
    tmp_path.chmod(0o755)  # the probe may reach (not write) the test's directory
    code, log, sandbox = _probe(containment, secret_dir, tmp_path)
    print(log)
    assert code == 0, log
    assert "read-secret denied PermissionError" in log
    assert "parent-environ denied PermissionError" in log
    assert "write-outside denied PermissionError" in log
    assert "write-own ALLOWED" in log
    assert "other-sandbox denied PermissionError" in log  # another uid's 0700 directory
    assert "env []" in log
    assert not sandbox.exists()


def test_without_containment_user_code_is_refused(tmp_path: Path) -> None:
    containment = Containment.detect(tmp_path, unsafe_local_code=False, euid=1000, bubblewrap="")
    assert containment.mode == DISABLED
    with pytest.raises(CodeExecutionDisabled) as info:
        containment.check_allowed("jobs")
    assert "--unsafe-local-code" in info.value.message and info.value.status == 409
    unsafe = Containment.detect(tmp_path, unsafe_local_code=True, euid=1000, bubblewrap="")
    assert unsafe.mode == processes.UNSAFE and not unsafe.contained
    unsafe.check_allowed("jobs")


def test_reachable_mounts_open_only_the_path_through_closed_directories(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    runtime = closed / "open" / "python"
    runtime.mkdir(parents=True)
    (closed / "private").mkdir()
    tmp_path.chmod(0o755)
    closed.chmod(0o700)
    (closed / "open").chmod(0o755)
    plan = processes.reachable_mounts([runtime])
    assert plan[-2:] == [("tmpfs", str(closed)), ("bind", str(closed / "open"))]
    assert all(str(closed / "private") not in path for _, path in plan)
    assert processes.reachable_mounts([Path("/usr/bin")]) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the user mode needs root")
def test_a_restart_kills_what_a_dead_servers_sandbox_uid_still_runs(tmp_path: Path) -> None:
    """The backstop behind the watchdog: a sandbox whose server is dead has its uid's
    processes killed when a server prepares the sandbox root again."""
    containment = Containment.detect(tmp_path / "data", unsafe_local_code=False)
    containment.prepare()
    uid = processes.UID_BASE + processes.UID_SPAN - 1 - os.getpid() % 1000
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid no server has any more
    sandbox = containment.sandbox_root / f"{dead.pid}-job-test"
    sandbox.mkdir()
    os.chown(sandbox, uid, uid)
    argv = processes.launch_argv(["sleep", "300"], uid=uid, gid=uid, mounts=containment.reach)
    leftover = subprocess.Popen(argv, start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while processes.processes_of_uid(uid) != [leftover.pid] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes.processes_of_uid(uid) == [leftover.pid]
        containment.prepare()
        assert leftover.wait(15) == -9
        assert processes.processes_of_uid(uid) == []
        assert not sandbox.exists()
    finally:
        if leftover.poll() is None:
            leftover.kill()
        containment.close()


def test_a_zombie_is_not_counted_as_a_process_of_its_uid() -> None:
    """A zombie runs nothing; in a container whose pid 1 never reaps, a killed job's processes stay
    zombies forever and must not read as code still running under the job's uid."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while "State:\tZ" not in Path(f"/proc/{child.pid}/status").read_text():
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.02)
        assert child.pid not in processes.processes_of_uid(os.getuid())
        assert os.getpid() in processes.processes_of_uid(os.getuid())
    finally:
        child.wait()
