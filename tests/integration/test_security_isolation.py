"""Contained code against a whole server, under both containments (docs/security.md).

Each test runs twice: against a server running as root (``user`` mode: a fresh uid per
process) and against a server running as an unprivileged uid (``bubblewrap`` mode). The suite
runs as root here, so the unprivileged server is started through the launcher of
``workspace/processes.py`` under a uid of its own (no passwd entry needed), with the
interpreter under ``/root`` made reachable for it, its data directory and home in a temporary
directory it owns. Run by an unprivileged user, the suite starts that server as itself.

What is checked, from a job, an inline entry script and a pickled model's ``__reduce__``: no
secret is reachable; jobs and a scoring endpoint still work; a job reaches neither the server
nor PostgreSQL unless it asks for the host's network; memory and CPU time limits end a job
with a reason naming the limit; and after a SIGKILL of the server and a restart, nothing of a
job that daemonised (double fork, ``setsid``) is left.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.ml_workspace import admin_client, principal_token, wait_until
from tests.support.server import ServerProcess

from mlgrid import Client
from mlgrid.client.endpoints import DeploymentFailed
from mlgrid.client.workspace import Workspace
from mlgrid.workspace import processes

PYTHON = sys.executable
MARK = "ATTEMPT "
UNPRIVILEGED_UID_BASE = 1_400_000_000
"""The unprivileged server's uid: below the range of ``user`` mode's per-process uids."""
LIMIT_ARGS = ["--code-memory-limit-mb", "2048", "--job-cpu-seconds", "120"]
POSTGRES_PORT = 5432


def _require_bubblewrap() -> None:
    if shutil.which("bwrap") is not None:
        return
    reason = "bubblewrap is not installed (make bubblewrap): the unprivileged server cannot contain code"
    if os.environ.get("MLGRID_REQUIRE_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class Isolated:
    mode: str
    server: ServerProcess
    server_uid: int
    home: Path | None = None


def _unprivileged_server(uid: int) -> tuple[ServerProcess, Path]:
    """A server run as ``uid``: data directory and home in a directory that uid owns, the
    interpreter under a closed directory (pyenv in /root) bound into its mount namespace."""
    home = Path(tempfile.mkdtemp(prefix="mlgrid-unprivileged-"))
    data_dir = home / "data"
    data_dir.mkdir()
    for path in (home, data_dir):
        os.chown(path, uid, uid)
    mounts = processes.reachable_mounts(processes.runtime_paths())

    def as_unprivileged(args: list[str]) -> list[str]:
        return processes.launch_argv(args, uid=uid, gid=uid, mounts=mounts, parent=os.getpid())

    source = Path(__file__).resolve().parents[2]
    python_path = os.pathsep.join(
        str(source / part) for part in ("src", "plugins/mlflow-outbox/src")
    )
    server = ServerProcess(
        data_dir=data_dir,
        extra_args=LIMIT_ARGS,
        env={"HOME": str(home), "PYTHONPATH": python_path},
        wrap=as_unprivileged,
    )
    return server, home


@pytest.fixture(scope="module", params=["root", "unprivileged"])
def isolated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Isolated]:
    home = None
    if request.param == "root":
        if os.geteuid() != 0:
            pytest.skip("the per-uid containment needs a server running as root")
        server = ServerProcess(tmp_path_factory.mktemp("isolated-root"), extra_args=LIMIT_ARGS)
        uid = 0
    else:
        _require_bubblewrap()
        if os.geteuid() == 0:
            uid = UNPRIVILEGED_UID_BASE + os.getpid() % 1_000_000
            server, home = _unprivileged_server(uid)
        else:
            uid = os.geteuid()
            server = ServerProcess(tmp_path_factory.mktemp("isolated-bwrap"), extra_args=LIMIT_ARGS)
    server.start(timeout=60)
    try:
        yield Isolated(request.param, server, uid, home)
    finally:
        server.stop()
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def attacker(isolated: Isolated) -> Iterator[Workspace]:
    """A workspace where an ordinary principal is Contributor (may run code), as that principal."""
    token = principal_token(isolated.server, "mallory")
    with admin_client(isolated.server) as admin:
        ws = admin.workspaces.create("attacker-ws")
        ws.assign_role("mallory", "Contributor")
    with Client(isolated.server.url, token=token, environ={}) as mallory:
        yield mallory.workspace("attacker-ws")


@pytest.fixture(scope="module")
def victim_file(isolated: Isolated) -> Path:
    with admin_client(isolated.server) as admin:
        run = admin.workspaces.create("victim-ws").start_run("private")
        run.upload_bytes("secret.txt", b"victim data")
    path = isolated.server.data_dir / "workspaces" / "victim-ws" / "runs" / run.id / "artifacts"
    path /= "secret.txt"
    assert path.read_bytes() == b"victim data"
    return path


# --- what the code tries ----------------------------------------------------------------------

ATTACK = '''
import json, os, socket, urllib.request, urllib.error
def report(name, result):
    print("ATTEMPT " + json.dumps({"attempt": name, "result": result}), flush=True)
def read(name, path):
    try:
        with open(path, "rb") as handle:
            report(name, "READ %d bytes" % len(handle.read(64)))
    except OSError as exc:
        report(name, "denied: %s" % type(exc).__name__)
def others(name, path):
    """Entries of ``path`` other than this process's own sandbox."""
    try:
        # (api.sock is the server's API socket, reachable by design: docs/security.md)
        found = sorted(set(os.listdir(path)) - {os.path.basename(os.getcwd()), "api.sock"})
        report(name, "LISTED %s" % found[:3] if found else "denied: nothing but its own")
    except OSError as exc:
        report(name, "denied: %s" % type(exc).__name__)
def call(name, url, path, credential):
    headers = {"Content-Type": "application/json"}
    if credential:
        headers["Authorization"] = "Bearer " + credential
    request = urllib.request.Request(url + path, data=b"{}", method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            report(name, "HTTP %d" % answer.status)
    except urllib.error.HTTPError as exc:
        report(name, "HTTP %d" % exc.code)
    except OSError as exc:
        report(name, "error: %s" % exc)
def attack(data_dir, server_pid, other_file, url, token):
    read("admin token", os.path.join(data_dir, "admin.token"))
    read("secret key", os.path.join(data_dir, "secret.key"))
    read("database", os.path.join(data_dir, "mlgrid.db"))
    read("other workspace's artifact", other_file)
    others("data directory", data_dir)
    others("other sandboxes", os.path.dirname(os.getcwd()))
    read("server environ", "/proc/%d/environ" % server_pid)
    try:
        own = set(open("/proc/self/environ", "rb").read().split(b"\\0"))
        init = set(open("/proc/1/environ", "rb").read().split(b"\\0"))
        # Under bubblewrap pid 1 is the sandbox's own init, started with the job's environment
        # (a shell in between may have added its own PWD, SHLVL, _).
        shell = (b"PWD=", b"SHLVL=", b"_=", b"OLDPWD=")
        extra = sorted(v.split(b"=")[0].decode() for v in init - own if not v.startswith(shell))
        result = "denied: its own sandbox's init" if not extra else "READ %s" % extra[:5]
    except OSError as exc:
        result = "denied: %s" % type(exc).__name__
    report("environ of pid 1", result)
    call("admin API: create a principal (own credential)", url, "/principals/intruder", token)
    call("admin API: create a principal (no credential)", url, "/principals/intruder", None)
'''

NETWORK_PROBE = '''
import json, os, socket, urllib.request
def report(name, result):
    print("ATTEMPT " + json.dumps({"attempt": name, "result": result}), flush=True)
try:
    with urllib.request.urlopen(os.environ["MLGRID_URL"] + "/readyz", timeout=10) as answer:
        report("the server's API (MLGRID_URL)", "HTTP %d" % answer.status)
except OSError as exc:
    report("the server's API (MLGRID_URL)", "denied: %s" % getattr(exc, "reason", exc))
try:
    with socket.create_connection(("127.0.0.1", 5432), timeout=5):
        report("PostgreSQL 127.0.0.1:5432", "CONNECTED")
except OSError as exc:
    report("PostgreSQL 127.0.0.1:5432", "denied: %s" % (exc.strerror or type(exc).__name__))
'''


def _attempts(text: str) -> list[dict[str, str]]:
    return [json.loads(line[line.index(MARK) + len(MARK):]) for line in text.splitlines() if MARK in line]


def _report(isolated: Isolated, vector: str, attempts: list[dict[str, str]]) -> None:
    print(f"\n--- {isolated.mode} server: {vector} ---")
    for attempt in attempts:
        print(f"  {attempt['attempt']:<55} {attempt['result']}")


def _assert_all_denied(attempts: list[dict[str, str]]) -> None:
    names = {a["attempt"] for a in attempts}
    assert {"admin token", "secret key", "database", "other workspace's artifact", "server environ",
            "other sandboxes", "admin API: create a principal (no credential)"} <= names, names
    for attempt in attempts:
        if attempt["attempt"].startswith("admin API"):
            assert attempt["result"] in ("HTTP 401", "HTTP 403"), attempt
        else:
            assert attempt["result"].startswith("denied"), attempt


def _arguments(isolated: Isolated, victim: Path, token: str = "None") -> str:
    assert isolated.server.process is not None
    return (
        f"{str(isolated.server.data_dir.resolve())!r}, {isolated.server.process.pid}, "
        f"{str(victim.resolve())!r}, {isolated.server.url!r}, {token}"
    )


def _job_log(run: Any) -> str:
    return bytes(run.download_artifact("logs/job.log")).decode()


class _Payload:
    """Unpickling this runs ``source`` (then yields None, which is not a model)."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self) -> tuple[Any, tuple[str, dict[str, Any]]]:
        return (exec, (self.source, {}))


# --- the tests --------------------------------------------------------------------------------


def test_the_server_runs_in_the_containment_it_should(isolated: Isolated, attacker: Workspace) -> None:
    run = attacker.submit_job(f"{PYTHON} -c 'import os; print(\"uid\", os.getuid())'", "who", wait=True)
    log = _job_log(run)
    assert run.status == "Completed", log
    uid = int(log.split()[-1])
    assert isolated.server.process is not None
    server_uid = _real_uid(isolated.server.process.pid)
    assert server_uid == isolated.server_uid
    if isolated.mode == "root":
        assert uid >= processes.UID_BASE  # a fresh uid of its own
    else:
        assert server_uid != 0 and uid == server_uid  # the server's own uid, inside bubblewrap


def test_a_job_reaches_no_secret(isolated: Isolated, attacker: Workspace, victim_file: Path) -> None:
    token = "os.environ.get('MLGRID_TOKEN')"
    script = ATTACK + f"\nattack({_arguments(isolated, victim_file, token)})\n"
    command = f"{PYTHON} -c {_shell_quote(script)}"
    run = attacker.submit_job(command, "attack", wait=True)  # the API through the default relay
    log = _job_log(run)
    assert run.status == "Completed", log
    attempts = _attempts(log)
    _report(isolated, "job", attempts)
    _assert_all_denied(attempts)


def test_an_inline_entry_script_reaches_no_secret(
    isolated: Isolated, attacker: Workspace, victim_file: Path, tmp_path: Path
) -> None:
    model = tmp_path / "labels"
    model.mkdir()
    (model / "label.txt").write_text("x\n")
    attacker.register_model("entry-model", model)
    script = tmp_path / "score.py"
    script.write_text(
        ATTACK
        + "def init():\n"
        + f"    attack({_arguments(isolated, victim_file)})\n"
        + "def run(raw_data):\n    return 'ok'\n"
    )
    endpoint = attacker.deploy("entry-attack", models=["entry-model:1"], entry_script=script, timeout=120)
    attempts = _attempts(endpoint.logs())
    _report(isolated, "inline entry script", attempts)
    _assert_all_denied(attempts)


def test_a_pickled_models_reduce_reaches_no_secret(
    isolated: Isolated, attacker: Workspace, victim_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(_Payload(ATTACK + f"\nattack({_arguments(isolated, victim_file)})\n")))
    attacker.register_model("pickled", path)
    try:
        log = attacker.deploy("pickle-attack", models=["pickled:1"], timeout=120).logs()
    except DeploymentFailed as failed:  # exec returns None: not a model; the error holds the log
        log = str(failed)
    attempts = _attempts(log)
    _report(isolated, "pickled model __reduce__", attempts)
    _assert_all_denied(attempts)


def test_jobs_and_a_scoring_endpoint_still_work(
    isolated: Isolated, attacker: Workspace, tmp_path: Path
) -> None:
    report = (
        "import json, os, urllib.request\n"
        "body = json.dumps({'metrics': [{'name': 'loss', 'value': 0.25}]}).encode()\n"
        "url = os.environ['MLGRID_URL'] + '/workspaces/attacker-ws/runs/'\n"
        "url += os.environ['MLGRID_RUN_ID'] + '/metrics'\n"
        "request = urllib.request.Request(url, data=body, method='POST', headers={\n"
        "    'Authorization': 'Bearer ' + os.environ['MLGRID_TOKEN'], 'Content-Type': 'application/json'})\n"
        "print(urllib.request.urlopen(request, timeout=10).status)\n"
    )
    run = attacker.submit_job(f"{PYTHON} -c {_shell_quote(report)}", "works", wait=True)
    assert run.status == "Completed", _job_log(run)
    assert [(m.name, m.value) for m in run.metrics()] == [("loss", 0.25)]

    model = tmp_path / "doubler"
    model.mkdir()
    (model / "factor.txt").write_text("2\n")
    attacker.register_model("doubler", model)
    script = tmp_path / "double.py"
    script.write_text(
        "import json, os\n"
        "def init():\n"
        "    global FACTOR\n"
        "    FACTOR = int(open(os.path.join(os.environ['AZUREML_MODEL_DIR'], 'factor.txt')).read())\n"
        "def run(raw_data):\n"
        "    return [FACTOR * x for x in json.loads(raw_data)['data']]\n"
    )
    endpoint = attacker.deploy("doubler", models=["doubler:1"], entry_script=script, timeout=120)
    assert endpoint.score({"data": [1, 2, 3]}) == [2, 4, 6]


def test_a_job_reaches_the_network_only_when_it_asks(isolated: Isolated, attacker: Workspace) -> None:
    """Default (``api``): the server's API only; ``none``: nothing; ``host``: everything."""
    command = f"{PYTHON} -c {_shell_quote(NETWORK_PROBE)}"
    seen = {}
    for network in ("api", "none", "host"):
        chosen = None if network == "api" else network  # the default
        run = attacker.submit_job(command, "network", wait=True, network=chosen)
        assert run.status == "Completed", _job_log(run)
        attempts = _attempts(_job_log(run))
        _report(isolated, f"network {network}" + (" (the default)" if network == "api" else ""), attempts)
        seen[network] = {a["attempt"]: a["result"] for a in attempts}
    api, postgres = "the server's API (MLGRID_URL)", "PostgreSQL 127.0.0.1:5432"
    assert seen["api"][api] == "HTTP 200" and seen["api"][postgres].startswith("denied"), seen["api"]
    assert seen["none"][api].startswith("denied") and seen["none"][postgres].startswith("denied"), seen
    assert seen["host"] == {api: "HTTP 200", postgres: "CONNECTED"}, seen["host"]


def test_limits_end_a_job_with_a_reason(isolated: Isolated, attacker: Workspace) -> None:
    hungry = f"{PYTHON} -c 'x = bytearray(600 * 1024 * 1024); print(len(x))'"
    run = attacker.submit_job(hungry, "limits", wait=True, memory_mb=300)
    log = _job_log(run)
    assert run.status == "Failed", log
    assert "MemoryError" in log
    assert run.info.error is not None and "memory limit (300 MiB" in run.info.error, run.info.error

    modest = attacker.submit_job(
        f"{PYTHON} -c 'x = bytearray(50 * 1024 * 1024); print(len(x))'", "limits", wait=True, memory_mb=300
    )
    assert modest.status == "Completed", _job_log(modest)

    burner = attacker.submit_job(f"{PYTHON} -c 'while True: pass'", "limits", wait=True, cpu_seconds=2)
    assert burner.status == "Failed", _job_log(burner)
    assert burner.info.error is not None and "CPU time limit (2 s)" in burner.info.error, burner.info.error
    print(f"\n{isolated.mode} server: {run.info.error}\n{isolated.mode} server: {burner.info.error}")

    before = len(attacker.runs())
    with pytest.raises(Exception) as refused:
        attacker.submit_job("true", "limits", memory_mb=4096)  # above the server's 2048
    assert "resources.memoryMb" in str(refused.value)
    assert len(attacker.runs()) == before


DAEMON = '''
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(900)", sys.argv[1]])
    os._exit(0)
time.sleep(900)
'''


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_nothing_of_a_daemonised_job_survives_a_server_crash(isolated: Isolated, attacker: Workspace) -> None:
    """Last in the module: it kills the server (SIGKILL) and starts it again."""
    marker = f"mlgrid-daemon-{uuid.uuid4().hex}"
    run = attacker.submit_job(f"{PYTHON} -c {_shell_quote(DAEMON)} {marker}", "crash")
    try:
        # The job's process and its daemon both carry the marker in their arguments.
        wait_until(lambda: len(_processes_with(marker)) == 2, 30, "the job's daemon to start")
        job_process, daemon = sorted(_processes_with(marker))
        uid = _real_uid(daemon)
        pid_namespace = os.readlink(f"/proc/{daemon}/ns/pid")
        assert os.getsid(daemon) != os.getsid(job_process)  # it left the job's session and group
        isolated.server.kill()
        # Under bubblewrap the pid namespace dies with the server; as root the job's first
        # process dies with it (PR_SET_PDEATHSIG) and its watchdog then kills the job's uid.
        wait_until(lambda: not _processes_with(marker), 30, "the job to die with the server")
        print(f"\n{isolated.mode} server: every process of the job died with the server")
        isolated.server.start(timeout=60)
        if isolated.mode == "root":
            assert uid >= processes.UID_BASE
            assert processes.processes_of_uid(uid) == []  # nothing at all under the job's uid
        assert not [
            pid for pid in (int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit())
            if _pid_namespace(pid) == pid_namespace and pid_namespace != _pid_namespace(os.getpid())
        ]
        with httpx.Client(base_url=isolated.server.url, timeout=30) as http:
            answer = http.get(
                f"/workspaces/attacker-ws/runs/{run.id}",
                headers={"Authorization": "Bearer " + isolated.server.admin_token},
            )
        assert answer.json()["status"] == "Failed", answer.text
    finally:
        for pid in _processes_with(marker):  # only if the test failed: its own processes
            try:
                os.kill(pid, 9)
            except OSError:
                pass


def _real_uid(pid: int) -> int:
    """From ``status`` (``/proc/<pid>`` itself belongs to root once a process changed uid)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def _pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
