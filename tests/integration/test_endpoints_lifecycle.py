"""Endpoints across server restarts and crashes (SPEC §9), on SQLite and PostgreSQL: a
restarted server brings its endpoints back without new events, scoring processes die with
the server, and a deployment interrupted by a crash is finished (one event) after restart.

Entry-script deployments start in a fraction of a second, which keeps the kills and restarts
quick; the code paths are the same for scikit-learn models.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.deployments import ECHO_SCRIPT, deployed_events, pid_alive, register_directory, wait_for
from tests.support.ml_workspace import admin_client
from tests.support.server import ServerProcess

from mlgrid import ApiError, Client
from mlgrid.client.endpoints import Endpoint
from mlgrid.client.workspace import Workspace

SLOW_SCRIPT = ECHO_SCRIPT.replace("def init():\n", "def init():\n    import time\n    time.sleep(3)\n", 1)


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with admin_client(server) as sdk:
        yield sdk


def _workspace(client: Client, name: str, tmp_path: Path) -> Workspace:
    ws = client.workspaces.create(name)
    register_directory(ws, "labels", {"label.txt": "v1\n"}, tmp_path)
    return ws


def _answers(endpoint: Endpoint) -> bool:
    try:
        return bool(endpoint.score({"ping": 1})["label"] == "v1")
    except ApiError:
        return False


def test_a_restarted_server_brings_its_endpoints_back_without_events(
    server: ServerProcess, client: Client, unique_name: str, tmp_path: Path
) -> None:
    ws = _workspace(client, unique_name, tmp_path)
    endpoint = ws.deploy("survivor", models=["labels:1"], entry_script=ECHO_SCRIPT)
    first_pid = endpoint.pid
    assert first_pid is not None and _answers(endpoint)

    server.restart()  # a clean stop kills the scoring processes
    assert not pid_alive(first_pid)
    with admin_client(server) as after:
        again = after.workspace(unique_name).endpoint("survivor")
        # Scoring right after the start waits for the restored process instead of failing.
        assert again.score({"ping": 1})["label"] == "v1"
        restored = wait_for(lambda: (e := again.refresh()).pid not in (None, first_pid) and e, what="new pid")
        assert restored.state == "Healthy"
        assert len(deployed_events(after.workspace(unique_name))) == 1

        second_pid = restored.pid
        assert second_pid is not None
        server.kill()  # SIGKILL: the scoring process must not outlive the server
        wait_for(lambda: not pid_alive(second_pid), what="the scoring process to die with the server")
    server.start()
    with admin_client(server) as after:
        endpoint = after.workspace(unique_name).endpoint("survivor")
        # On PostgreSQL the killed process was a node of a cluster: its endpoint lease is freed
        # when another node declares it dead (--node-timeout, 10 s), then this node serves it.
        label = wait_for(lambda: _label_once_served(endpoint), timeout=60, what="the endpoint served again")
        assert label == "v1"
        assert len(deployed_events(after.workspace(unique_name))) == 1
        endpoint.delete()


def _label_once_served(endpoint: Endpoint) -> str | None:
    """The scored label, or None while no node serves the endpoint yet (EndpointNotReady)."""
    try:
        return str(endpoint.score({"ping": 1})["label"])
    except ApiError as exc:
        if "EndpointNotReady" in str(exc):
            return None
        raise


def test_a_deployment_interrupted_by_a_crash_is_finished_after_the_restart(
    server: ServerProcess, client: Client, unique_name: str, tmp_path: Path
) -> None:
    ws = _workspace(client, unique_name, tmp_path)
    started = ws.deploy("interrupted", models=["labels:1"], entry_script=SLOW_SCRIPT, wait=False)
    assert started.state == "Deploying"
    server.kill()
    assert deployed_events_after_restart(server, unique_name) == []
    with admin_client(server) as after:
        endpoint = after.workspace(unique_name).endpoint("interrupted").wait(120)
        assert endpoint.state == "Healthy"
        events = deployed_events(after.workspace(unique_name))
        assert [e["data"]["ETag"] for e in events] == [endpoint.etag]
        endpoint.delete()


def deployed_events_after_restart(server: ServerProcess, workspace: str) -> list[object]:
    """Start the server again and return the ModelDeployed events it holds right away."""
    server.start()
    with admin_client(server) as after:
        return list(deployed_events(after.workspace(workspace)))
