"""Who may do what on a workspace (SPEC §1 roles): Reader reads, Contributor and Owner write
and manage event subscriptions, only Owner manages role assignments, nobody without a valid
token gets in."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from tests.support.ml_workspace import admin_client, principal_token, raw
from tests.support.receiver import Receiver
from tests.support.server import ServerProcess

from mlgrid import ApiError, Client
from mlgrid.client.workspace import Workspace


@dataclass
class Team:
    workspace: str
    reader: str
    contributor: str
    owner: str
    outsider: str


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture(scope="module")
def team(sqlite_server: ServerProcess) -> Team:
    with admin_client(sqlite_server) as admin:
        ws = admin.workspaces.create("rbac-ws")
        tokens = {
            name: principal_token(sqlite_server, f"rbac-{name}")
            for name in ("reader", "contributor", "owner", "outsider")
        }
        ws.assign_role("rbac-reader", "Reader")
        ws.assign_role("rbac-contributor", "Contributor")
        ws.assign_role("rbac-owner", "Owner")
    return Team(ws.name, tokens["reader"], tokens["contributor"], tokens["owner"], tokens["outsider"])


def _as(server: ServerProcess, token: str) -> Client:
    return Client(server.url, token, environ={})


def _status(call: object) -> int:
    try:
        assert callable(call)
        call()
    except ApiError as error:
        return error.status
    return 200


def test_reader_cannot_create_a_subscription_but_contributor_can(
    sqlite_server: ServerProcess, team: Team, receiver: Receiver
) -> None:
    endpoint = receiver.endpoint("/rbac")
    with _as(sqlite_server, team.reader) as reader:
        ws = reader.workspace(team.workspace)
        with pytest.raises(ApiError) as denied:
            ws.create_subscription("reader-sub", endpoint=endpoint)
        assert (denied.value.status, denied.value.code) == (403, "Forbidden")
    with raw(sqlite_server, team.reader) as http:
        plain = http.put(
            f"/workspaces/{team.workspace}/eventSubscriptions/reader-sub",
            json={
                "properties": {
                    "destination": {"endpointType": "WebHook", "properties": {"endpointUrl": endpoint}}
                }
            },
        )
        assert plain.status_code == 403
    with _as(sqlite_server, team.contributor) as contributor:
        created = contributor.workspace(team.workspace).create_subscription("contrib-sub", endpoint=endpoint)
        assert created.provisioning_state == "Succeeded"
    with _as(sqlite_server, team.reader) as reader:
        ws = reader.workspace(team.workspace)
        assert "contrib-sub" in [s.name for s in ws.subscriptions()]  # Reader reads subscriptions
        with pytest.raises(ApiError) as denied:
            ws.delete_subscription("contrib-sub")
        assert denied.value.status == 403
    with _as(sqlite_server, team.owner) as owner:
        owner.workspace(team.workspace).delete_subscription("contrib-sub")


def test_reader_reads_runs_models_and_datasets_but_cannot_write(
    sqlite_server: ServerProcess, team: Team, tmp_path: object
) -> None:
    with _as(sqlite_server, team.contributor) as contributor:
        run = contributor.workspace(team.workspace).start_run(experiment="shared")
        run.log_metric("loss", 1.5)
        run.upload_bytes("outputs/a.txt", b"a")
    with _as(sqlite_server, team.reader) as reader:
        ws = reader.workspace(team.workspace)
        assert run.id in [r.run_id for r in ws.runs()]
        mine = ws.run(run.id)
        assert [m.value for m in mine.metrics()] == [1.5]
        assert mine.download_artifact("outputs/a.txt") == b"a"
        assert isinstance(ws.models(), list) and isinstance(ws.datasets(), list)
        assert _status(lambda: ws.start_run(experiment="shared")) == 403
        assert _status(lambda: mine.complete()) == 403
        assert _status(lambda: mine.log_metric("loss", 2)) == 403
        assert _status(lambda: mine.upload_bytes("outputs/b.txt", b"b")) == 403
        assert _status(lambda: ws.submit_job("true", experiment="shared")) == 403
        assert (
            _status(lambda: ws.register_model("reader-model", run_id=run.id, artifact_path="outputs/a.txt"))
            == 403
        )
    assert run.refresh().status == "Running"


def test_contributor_writes_but_only_owner_manages_roles(sqlite_server: ServerProcess, team: Team) -> None:
    with _as(sqlite_server, team.contributor) as contributor:
        ws = contributor.workspace(team.workspace)
        with ws.start_run(experiment="contrib") as run:
            run.log_metric("x", 1)
        assert run.status == "Completed"
        assert _status(lambda: ws.assign_role("rbac-outsider", "Reader")) == 403
    with _as(sqlite_server, team.owner) as owner:
        ws_owner = owner.workspace(team.workspace)
        ws_owner.assign_role("rbac-outsider", "Reader")
        assert {"principal": "rbac-outsider", "role": "Reader"} in ws_owner.role_assignments()
        ws_owner.remove_role("rbac-outsider")


def test_outsiders_and_anonymous_callers_are_refused(sqlite_server: ServerProcess, team: Team) -> None:
    with _as(sqlite_server, team.outsider) as outsider:
        assert _status(lambda: outsider.workspace(team.workspace)) == 403
        assert team.workspace not in [w.name for w in outsider.workspaces.list()]
        assert _status(lambda: outsider.workspaces.create("outsider-ws")) == 403
    anonymous = httpx.get(f"{sqlite_server.url}/workspaces/{team.workspace}/runs")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "Unauthorized"
    bad = httpx.get(
        f"{sqlite_server.url}/workspaces/{team.workspace}", headers={"Authorization": "Bearer not-a-token"}
    )
    assert bad.status_code == 401
    no_token_sub = httpx.put(
        f"{sqlite_server.url}/workspaces/{team.workspace}/eventSubscriptions/anon", json={}
    )
    assert no_token_sub.status_code == 401


def test_roles_are_per_workspace(sqlite_server: ServerProcess, team: Team) -> None:
    with admin_client(sqlite_server) as admin:
        other: Workspace = admin.workspaces.create("rbac-other")
        assert other.name == "rbac-other"
    with _as(sqlite_server, team.owner) as owner:
        assert _status(lambda: owner.workspace("rbac-other")) == 403
        assert _status(lambda: owner.workspaces.delete("rbac-other")) == 403
