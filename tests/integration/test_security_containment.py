"""Code that users run cannot reach the server's secrets (docs/security.md).

From a job, from an inline entry script and from a pickled model's ``__reduce__``, the same
attack tries to read the admin token, the secret key, the database, another workspace's files,
the other sandboxes and ``/proc/<server pid>/environ``, and to call the admin API. Every
attempt must fail. The job's own run token writes its own run and nothing else.
"""

from __future__ import annotations

import json
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.ml_workspace import admin_client, principal_token
from tests.support.server import ServerProcess, code_is_contained

from mlgrid import Client
from mlgrid.client.endpoints import DeploymentFailed
from mlgrid.client.workspace import Workspace

pytestmark = pytest.mark.skipif(not code_is_contained(), reason="needs root or bubblewrap")

PYTHON = sys.executable
MARK = "ATTEMPT "

# The attack, as source: the three vectors exec it, then call attack(...). It prints one line
# per attempt: ATTEMPT {"attempt": ..., "result": ...}.
ATTACK = '''
import json, os, urllib.request, urllib.error
def attack(data_dir, server_pid, other_file, url, token):
    def read(name, path):
        try:
            with open(path, "rb") as handle:
                data = handle.read(64)
            result = "READ %d bytes" % len(data)
        except OSError as exc:
            result = "denied: %s" % type(exc).__name__
        print("ATTEMPT " + json.dumps({"attempt": name, "result": result}), flush=True)
    def listing(name, path):
        try:
            result = "LISTED %s" % sorted(os.listdir(path))[:3]
        except OSError as exc:
            result = "denied: %s" % type(exc).__name__
        print("ATTEMPT " + json.dumps({"attempt": name, "result": result}), flush=True)
    def call(name, method, path, credential, body=b"{}"):
        headers = {"Content-Type": "application/json"}
        if credential:
            headers["Authorization"] = "Bearer " + credential
        request = urllib.request.Request(url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                result = "HTTP %d" % answer.status
        except urllib.error.HTTPError as exc:
            result = "HTTP %d" % exc.code
        except OSError as exc:
            result = "error: %s" % exc
        print("ATTEMPT " + json.dumps({"attempt": name, "result": result}), flush=True)
    read("admin token", os.path.join(data_dir, "admin.token"))
    read("secret key", os.path.join(data_dir, "secret.key"))
    read("database", os.path.join(data_dir, "mlgrid.db"))
    read("other workspace's artifact", other_file)
    listing("data directory", data_dir)
    listing("other sandboxes", os.path.dirname(os.getcwd()))
    read("server environ", "/proc/%d/environ" % server_pid)
    read("environ of pid 1", "/proc/1/environ")
    call("admin API: create a principal (own credential)", "PUT", "/principals/intruder", token)
    call("admin API: create a principal (no credential)", "PUT", "/principals/intruder", None)
'''


def _attempts(text: str) -> list[dict[str, str]]:
    return [json.loads(line[line.index(MARK) + len(MARK):]) for line in text.splitlines() if MARK in line]


def _report(vector: str, attempts: list[dict[str, str]]) -> None:
    print(f"\n--- {vector} ---")
    for attempt in attempts:
        print(f"  {attempt['attempt']:<55} {attempt['result']}")


def _assert_all_failed(attempts: list[dict[str, str]]) -> None:
    names = {a["attempt"] for a in attempts}
    assert {"admin token", "secret key", "database", "other workspace's artifact", "server environ"} <= names
    for attempt in attempts:
        result = attempt["result"]
        if attempt["attempt"].startswith("admin API"):
            assert result in ("HTTP 401", "HTTP 403"), attempt
        else:
            assert result.startswith("denied"), attempt


class Context:
    def __init__(self, server: ServerProcess, client: Client, victim_file: Path) -> None:
        self.server = server
        self.client = client
        self.victim_file = victim_file

    def arguments(self, token_expression: str = "None") -> str:
        assert self.server.process is not None
        return (
            f"{str(self.server.data_dir.resolve())!r}, {self.server.process.pid}, "
            f"{str(self.victim_file)!r}, {self.server.url!r}, {token_expression}"
        )


@pytest.fixture(scope="module")
def context(sqlite_server: ServerProcess) -> Iterator[Context]:
    with admin_client(sqlite_server) as client:
        victim = client.workspaces.create("victim-ws")
        run = victim.start_run("private")
        run.upload_bytes("secret.txt", b"victim data")
        victim_file = (
            sqlite_server.data_dir.resolve() / "workspaces" / "victim-ws" / "runs" / run.id
            / "artifacts" / "secret.txt"
        )
        assert victim_file.read_bytes() == b"victim data"
        yield Context(sqlite_server, client, victim_file)


@pytest.fixture(scope="module")
def attacker(context: Context) -> Iterator[Workspace]:
    """A workspace where an ordinary principal is Contributor (may run code), as that principal."""
    token = principal_token(context.server, "mallory")
    ws = context.client.workspaces.create("attacker-ws")
    ws.assign_role("mallory", "Contributor")
    with Client(context.server.url, token=token) as mallory:
        yield mallory.workspace("attacker-ws")


def test_a_job_reaches_no_secret_and_its_token_writes_only_its_run(
    context: Context, attacker: Workspace, shared_tmp: Path
) -> None:
    other = attacker.start_run("other")
    script = shared_tmp / "attack.py"
    script.write_text(
        ATTACK
        + "\nattack(" + context.arguments("os.environ.get('MLGRID_TOKEN')") + ")\n"
        + "token = os.environ['MLGRID_TOKEN']\n"
        + _token_probe(context.server.url, other.id)
    )
    script.chmod(0o644)
    run = attacker.submit_job(
        f"{PYTHON} attack.py", experiment="attack", working_directory=shared_tmp, wait=True
    )
    log = run.download_artifact("logs/job.log").decode()
    assert run.status == "Completed", log
    attempts = _attempts(log)
    _report("job", attempts)
    results = {a["attempt"]: a["result"] for a in attempts}
    probes = {name: results.pop(name) for name in list(results) if name.startswith("run token")}
    _assert_all_failed([{"attempt": k, "result": v} for k, v in results.items()])
    assert probes == {
        "run token: log a metric to its own run": "HTTP 200",
        "run token: upload an artifact to its own run": "HTTP 201",
        "run token: log a metric to another run": "HTTP 403",
        "run token: read another run": "HTTP 403",
        "run token: read the workspace": "HTTP 403",
        "run token: submit a job": "HTTP 403",
        "run token: read the victim workspace": "HTTP 403",
    }, probes
    assert [m.name for m in run.metrics()] == ["loss"]


def _token_probe(url: str, other_run: str) -> str:
    """Source that calls the API with the job's run token, one ATTEMPT line per call."""
    return f'''
import json, os, urllib.request, urllib.error
def probe(name, method, path, body):
    request = urllib.request.Request({url!r} + path, data=body, method=method, headers={{
        "Authorization": "Bearer " + token, "Content-Type": "application/json"}})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            result = "HTTP %d" % answer.status
    except urllib.error.HTTPError as exc:
        result = "HTTP %d" % exc.code
    print("ATTEMPT " + json.dumps({{"attempt": name, "result": result}}), flush=True)
own = "/workspaces/attacker-ws/runs/" + os.environ["MLGRID_RUN_ID"]
metric = json.dumps({{"metrics": [{{"name": "loss", "value": 0.5}}]}}).encode()
probe("run token: log a metric to its own run", "POST", own + "/metrics", metric)
probe("run token: upload an artifact to its own run", "PUT", own + "/artifacts/out.txt", b"result")
other = "/workspaces/attacker-ws/runs/{other_run}"
probe("run token: log a metric to another run", "POST", other + "/metrics", metric)
probe("run token: read another run", "GET", other, None)
probe("run token: read the workspace", "GET", "/workspaces/attacker-ws", None)
job = b'{{"command": "true"}}'
probe("run token: submit a job", "POST", "/workspaces/attacker-ws/experiments/x/jobs", job)
probe("run token: read the victim workspace", "GET", "/workspaces/victim-ws/runs", None)
'''


def test_an_inline_entry_script_reaches_no_secret(
    context: Context, attacker: Workspace, tmp_path: Path
) -> None:
    model = tmp_path / "labels"
    model.mkdir()
    (model / "label.txt").write_text("x\n")
    attacker.register_model("entry-model", model)
    script = tmp_path / "score.py"
    script.write_text(
        ATTACK
        + "\nRESULTS = []\n"
        + "def init():\n"
        + f"    attack({context.arguments()})\n"
        + "def run(raw_data):\n    return 'ok'\n"
    )
    endpoint = attacker.deploy("entry-attack", models=["entry-model:1"], entry_script=script, timeout=120)
    attempts = _attempts(endpoint.logs())
    _report("inline entry script", attempts)
    _assert_all_failed(attempts)


class _Payload:
    """Unpickling this runs the attack, then yields a harmless object."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self) -> tuple[Any, tuple[str, dict[str, Any]]]:
        return (exec, (self.source, {}))


def test_a_pickled_models_reduce_reaches_no_secret(
    context: Context, attacker: Workspace, tmp_path: Path
) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(_Payload(ATTACK + f"\nattack({context.arguments()})\n")))
    attacker.register_model("pickled", path)
    try:
        endpoint = attacker.deploy("pickle-attack", models=["pickled:1"], timeout=120)
        log = endpoint.logs()
    except DeploymentFailed as failed:  # exec returns None: not a model; the log says what ran
        log = str(failed)
    attempts = _attempts(log)
    _report("pickled model __reduce__", attempts)
    assert attempts, log
    _assert_all_failed(attempts)


def test_the_server_still_reads_its_own_files(context: Context) -> None:
    """The attempts above failed for lack of permission, not because the files are absent."""
    data_dir = context.server.data_dir.resolve()
    for name in ("admin.token", "secret.key", "mlgrid.db"):
        assert (data_dir / name).stat().st_size > 0
    assert data_dir.stat().st_mode & 0o777 == 0o700
    with httpx.Client(base_url=context.server.url) as http:
        admin = {"Authorization": "Bearer " + context.server.admin_token}
        response = http.put("/principals/intruder", headers=admin)
    assert response.status_code in (200, 201)
