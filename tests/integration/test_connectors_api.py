"""The connectors API on a real server: RBAC, 400s naming the field, secrets never echoed and
sealed at rest, PATCH/pause, DELETE, and the signed webhook doorbell.

MLflow is stood in for by a loopback HTTP server that answers ``experiments/search`` like MLflow
(these tests are about the API; the connector's work against a real MLflow is in
``test_mlflow_connector.py`` and ``test_connector_sync.py``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from tests.support.broker_db import database_url
from tests.support.cli_runner import Cli
from tests.support.ml_workspace import admin_client, principal_token
from tests.support.receiver import Receiver, Reply
from tests.support.server import ServerProcess

from mlgrid.auth.secretbox import is_sealed
from mlgrid.connectors.webhook_signature import sign
from mlgrid.store import connectors as connector_store
from mlgrid.store.database import Database

SEARCH = "/api/2.0/mlflow/experiments/search"


@pytest.fixture(scope="module")
def fake_mlflow() -> Iterator[Receiver]:
    with Receiver() as receiver:
        receiver.configure(SEARCH, default=Reply(200, {"experiments": []}))
        yield receiver


def put(http: httpx.Client, ws: str, name: str, **properties: object) -> httpx.Response:
    return http.put(f"/workspaces/{ws}/connectors/{name}", json={"properties": properties})


def test_crud_secrets_and_health(sqlite_server: ServerProcess, fake_mlflow: Receiver) -> None:
    ws = "w" + uuid.uuid4().hex[:8]
    with sqlite_server.client() as http:
        assert http.put(f"/workspaces/{ws}", json={"properties": {}}).status_code == 201
        created = put(
            http,
            ws,
            "mlflow",
            trackingUri=fake_mlflow.url,
            token="tok-123",
            webhookSecret="hook-456",
            pollIntervalSeconds=600,
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert "tok-123" not in created.text and "hook-456" not in created.text
        assert body["properties"]["hasToken"] and body["properties"]["hasWebhookSecret"]
        assert body["properties"]["deploymentAliases"] == ["champion"]
        assert created.headers["etag"] == f'"{body["etag"]}"'
        assert [c["name"] for c in http.get(f"/workspaces/{ws}/connectors").json()["value"]] == ["mlflow"]

        paused = http.patch(f"/workspaces/{ws}/connectors/mlflow", json={"properties": {"paused": True}})
        assert paused.status_code == 200, paused.text
        assert paused.json()["properties"]["health"]["state"] == "Paused"
        assert paused.json()["properties"]["hasToken"]  # a PATCH that leaves the token out keeps it
        stale = http.patch(
            f"/workspaces/{ws}/connectors/mlflow",
            json={"properties": {"paused": False}},
            headers={"If-Match": body["etag"]},
        )
        assert stale.status_code == 412
        resync = http.post(f"/workspaces/{ws}/connectors/mlflow:resync")
        assert resync.status_code == 202 and resync.json()["properties"]["health"]["resyncPending"]

    async def sealed() -> tuple[str | None, str | None]:
        db = Database.connect_unpooled(database_url(sqlite_server))
        try:
            async with db.read() as conn:
                row = await connector_store.get(conn, ws, "mlflow")
        finally:
            await db.close()
        assert row is not None
        return row.token_sealed, row.webhook_secret_sealed

    token, secret = asyncio.run(sealed())
    assert token and is_sealed(token) and "tok-123" not in token
    assert secret and is_sealed(secret) and "hook-456" not in secret

    with sqlite_server.client() as http:
        assert http.delete(f"/workspaces/{ws}/connectors/mlflow").status_code == 204
        assert http.get(f"/workspaces/{ws}/connectors/mlflow").status_code == 404


def test_bad_bodies_are_400_with_the_field(sqlite_server: ServerProcess, fake_mlflow: Receiver) -> None:
    ws = "w" + uuid.uuid4().hex[:8]
    with sqlite_server.client() as http:
        http.put(f"/workspaces/{ws}", json={"properties": {}})
        for properties, field in [
            ({"trackingUri": fake_mlflow.url, "pollIntervalSeconds": 0}, "properties.pollIntervalSeconds"),
            (
                {"trackingUri": fake_mlflow.url, "deploymentAliases": ["a b"]},
                "properties.deploymentAliases[0]",
            ),
            ({"trackingUri": fake_mlflow.url + "/not-mlflow"}, "properties.trackingUri"),
        ]:
            reply = put(http, ws, "badone", **properties)
            assert reply.status_code == 400, reply.text
            assert reply.json()["error"]["details"][0]["target"] == field
        fake_mlflow.configure("/auth" + SEARCH, default=Reply(401, "no"))
        refused = put(http, ws, "badone", trackingUri=fake_mlflow.url + "/auth", token="wrong")
        assert (
            refused.status_code == 400
            and refused.json()["error"]["details"][0]["target"] == "properties.token"
        )
        assert http.get(f"/workspaces/{ws}/connectors").json()["value"] == []


def test_values_the_http_client_cannot_send_are_400_not_500(
    sqlite_server: ServerProcess, fake_mlflow: Receiver
) -> None:
    """Issue 16: schemathesis got a 500 from PUT: a non-ASCII token cannot go in a header and
    a URL with a bad port, a control character or an invalid IDNA host cannot be requested;
    each is a 400 naming the field, and nothing is created."""
    ws = "w" + uuid.uuid4().hex[:8]
    with sqlite_server.client() as http:
        http.put(f"/workspaces/{ws}", json={"properties": {}})
        for properties, field, reason in [
            ({"trackingUri": fake_mlflow.url, "token": "t\u00f6ken"}, "properties.token", "printable ASCII"),
            ({"trackingUri": "http://mlflow:port"}, "properties.trackingUri", "not a valid URL"),
            ({"trackingUri": "http://mlflow/\u007f"}, "properties.trackingUri", "not a valid URL"),
            ({"trackingUri": "http://xn--a.example"}, "properties.trackingUri", "not a valid URL"),
        ]:
            reply = put(http, ws, "badone", **properties)
            assert reply.status_code == 400, reply.text
            error = reply.json()["error"]
            assert error["details"][0]["target"] == field and reason in error["message"], error
            assert "t\u00f6ken" not in reply.text  # a secret is never echoed
        created = put(http, ws, "goodone", trackingUri=fake_mlflow.url)
        assert created.status_code == 201, created.text
        patched = http.patch(f"/workspaces/{ws}/connectors/goodone", json={"properties": {"token": "\u00e9"}})
        assert patched.status_code == 400 and "properties.token" in patched.text, patched.text
        assert not http.get(f"/workspaces/{ws}/connectors/goodone").json()["properties"]["hasToken"]
        assert [c["name"] for c in http.get(f"/workspaces/{ws}/connectors").json()["value"]] == ["goodone"]


def test_roles(sqlite_server: ServerProcess, fake_mlflow: Receiver) -> None:
    ws = "w" + uuid.uuid4().hex[:8]
    reader = principal_token(sqlite_server, "reader" + ws)
    with sqlite_server.client() as http:
        http.put(f"/workspaces/{ws}", json={"properties": {}})
        assert put(http, ws, "mlflow", trackingUri=fake_mlflow.url).status_code == 201
        assert http.put(
            f"/workspaces/{ws}/roleAssignments/reader{ws}", json={"role": "Reader"}
        ).status_code in (200, 201)
    with sqlite_server.client(reader) as http:
        assert http.get(f"/workspaces/{ws}/connectors/mlflow").status_code == 200
        assert http.get(f"/workspaces/{ws}/connectors").status_code == 200
        assert put(http, ws, "mlflow2", trackingUri=fake_mlflow.url).status_code == 403
        assert http.post(f"/workspaces/{ws}/connectors/mlflow:resync").status_code == 403
        assert http.delete(f"/workspaces/{ws}/connectors/mlflow").status_code == 403
    assert httpx.get(f"{sqlite_server.url}/workspaces/{ws}/connectors/mlflow").status_code == 401


def test_webhook_signature_timestamp_and_dedupe(sqlite_server: ServerProcess, fake_mlflow: Receiver) -> None:
    ws = "w" + uuid.uuid4().hex[:8]
    with sqlite_server.client() as http:
        http.put(f"/workspaces/{ws}", json={"properties": {}})
        put(http, ws, "plain", trackingUri=fake_mlflow.url)
        put(http, ws, "mlflow", trackingUri=fake_mlflow.url, webhookSecret="hook-secret")
    url = f"{sqlite_server.url}/workspaces/{ws}/connectors/mlflow/webhook"
    body = b'{"entity": "model_version", "action": "created", "data": {"name": "m", "version": "1"}}'

    def send(delivery: str, timestamp: int, secret: str = "hook-secret", target: str = url) -> httpx.Response:
        headers = {
            "X-MLflow-Delivery-Id": delivery,
            "X-MLflow-Timestamp": str(timestamp),
            "X-MLflow-Signature": sign(secret, delivery, str(timestamp), body),
            "Content-Type": "application/json",
        }
        return httpx.post(target, content=body, headers=headers, timeout=30)

    now = int(time.time())
    first = send("d-1", now)
    assert first.status_code == 200 and first.json() == {"accepted": True, "duplicate": False}
    assert send("d-1", now).json()["duplicate"] is True  # MLflow's retry of the same delivery
    assert send("d-2", now, secret="wrong").status_code == 401
    assert send("d-3", now - 3600).status_code == 401  # replayed an hour later
    assert httpx.post(url, content=body, timeout=30).status_code == 400  # no headers at all
    assert (
        send("d-4", now, target=url.replace("/mlflow/", "/plain/")).status_code == 409
    )  # no secret configured


def test_cli_and_sdk(sqlite_server: ServerProcess, fake_mlflow: Receiver) -> None:
    ws = "w" + uuid.uuid4().hex[:8]
    cli = Cli(sqlite_server)
    with admin_client(sqlite_server) as sdk:
        workspace = sdk.workspaces.create(ws)
        created = cli.json(
            "ml",
            "connector",
            "create",
            "-w",
            ws,
            "--tracking-uri",
            fake_mlflow.url,
            "--poll-interval",
            "600",
            "--deployment-alias",
            "prod",
            "--experiment",
            "train",
            "--token",
            "cli-token",
        )
        assert created["properties"]["deploymentAliases"] == ["prod"]
        assert created["properties"]["experiments"] == ["train"] and created["properties"]["hasToken"]
        assert [c["name"] for c in cli.json("ml", "connector", "list", "-w", ws)] == ["mlflow"]
        assert "mlflow" in cli.run("ml", "connector", "list", "-w", ws, "-o", "table").stdout
        assert cli.json("ml", "connector", "resync", "-w", ws)["properties"]["health"]["resyncPending"]
        connector = workspace.connector("mlflow")
        assert connector.tracking_uri == fake_mlflow.url and connector.has_token
        assert connector.update(paused=True).state == "Paused"
        assert cli.json("ml", "connector", "show", "-w", ws)["properties"]["paused"] is True
        sdk_made = workspace.create_mlflow_connector("second", fake_mlflow.url, poll_interval_seconds=600)
        assert sdk_made.properties["pollIntervalSeconds"] == 600
        assert sorted(c.name for c in workspace.connectors()) == ["mlflow", "second"]
        cli.run("ml", "connector", "delete", "-w", ws)
        workspace.delete_connector("second")
        assert workspace.connectors() == []


def test_ui_shows_connector_health(sqlite_server: ServerProcess, fake_mlflow: Receiver) -> None:
    ws = "w" + uuid.uuid4().hex[:8]
    with sqlite_server.client() as http:
        http.put(f"/workspaces/{ws}", json={"properties": {}})
        assert put(http, ws, "mlflow", trackingUri=fake_mlflow.url, token="ui-token").status_code == 201
    with httpx.Client(base_url=sqlite_server.url, timeout=30) as browser:
        login = browser.post("/ui/login", data={"token": sqlite_server.admin_token, "next": "/"})
        assert login.status_code in (200, 303), login.text
        workspace_page = browser.get(f"/ui/workspaces/{ws}")
        assert (
            workspace_page.status_code == 200
            and f"/ui/workspaces/{ws}/connectors/mlflow" in workspace_page.text
        )
        page = browser.get(f"/ui/workspaces/{ws}/connectors/mlflow")
        assert page.status_code == 200
        assert fake_mlflow.url in page.text and "Objects tracked" in page.text
        assert "set (sealed)" in page.text and "ui-token" not in page.text
