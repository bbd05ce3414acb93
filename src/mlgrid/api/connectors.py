"""Connectors of a workspace (``docs/mlflow.md``): CRUD, ``:resync`` and MLflow's webhook doorbell.

Thin: the rules live in ``connectors/``. Reading needs ``Reader`` on the workspace; creating,
changing, deleting and resyncing need ``Contributor`` or ``Owner``. The webhook route is called
by MLflow, which holds no mlgrid token: it is authenticated by the ``X-MLflow-Signature`` HMAC
under the connector's ``webhookSecret`` instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mlgrid.api.deps import if_match, json_body, read_limited, runtime
from mlgrid.api.docs import body_schema
from mlgrid.api.workspace_common import guard, iso, respond
from mlgrid.auth.roles import Action
from mlgrid.connectors import config as connector_config
from mlgrid.connectors.service import ConnectorService
from mlgrid.domain.records import ConnectorRow

router = APIRouter(tags=["connectors"])

RESOURCE_TYPE = "Microsoft.MachineLearningServices/workspaces/connectors"
MAX_WEBHOOK_BODY = 1024 * 1024

PUT_BODY = body_schema(connector_config.ConnectorPutBody)
PATCH_BODY = body_schema(connector_config.ConnectorPatchBody)
WEBHOOK_BODY: dict[str, Any] = {
    "parameters": [
        {"name": "X-MLflow-Delivery-Id", "in": "header", "required": True, "schema": {"type": "string"}},
        {
            "name": "X-MLflow-Timestamp",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "unix seconds; refused when more than 5 minutes away",
        },
        {
            "name": "X-MLflow-Signature",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "v1,<base64 HMAC-SHA256(webhookSecret, '{id}.{timestamp}.{body}')>",
        },
    ],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
}


def _service(request: Request) -> ConnectorService:
    service: ConnectorService = runtime(request).connectors.service
    return service


def connector_json(row: ConnectorRow, objects: int | None = None) -> dict[str, Any]:
    now = datetime.now(UTC)
    lag = None if row.last_poll_at is None else round((now - row.last_poll_at).total_seconds(), 3)
    health: dict[str, Any] = {
        "state": row.state,
        "lastError": row.last_error,
        "lastErrorTime": iso(row.last_error_at),
        "lastSuccessfulPoll": iso(row.last_poll_at),
        "lastFullSweep": iso(row.last_full_sweep_at),
        "lagSeconds": lag,
        "eventsEmitted": row.events_emitted,
        "resyncPending": row.resync_requested,
        "pollingNode": row.lease_holder if row.lease_until is not None and row.lease_until > now else None,
    }
    if objects is not None:
        health["objectsTracked"] = objects
    return {
        "id": row.id,
        "name": row.name,
        "type": RESOURCE_TYPE,
        "etag": row.etag,
        "properties": {
            "kind": row.kind,
            "trackingUri": row.tracking_uri,
            "hasToken": row.token_sealed is not None,
            "hasWebhookSecret": row.webhook_secret_sealed is not None,
            "intake": row.intake,
            "hasDatabaseUrl": row.database_url_sealed is not None,
            "pollIntervalSeconds": row.poll_interval,
            "fullSweepMinutes": row.full_sweep_minutes,
            "experiments": row.experiments,
            "deploymentAliases": row.deployment_aliases,
            "backfill": row.backfill,
            "paused": row.paused,
            "createdTime": iso(row.created_at),
            "updatedTime": iso(row.updated_at),
            "health": health,
        },
    }


@router.get("/workspaces/{workspace}/connectors", summary="List the connectors of a workspace")
async def list_connectors(workspace: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.READ)
    rows = await _service(request).list_connectors(ws.name)
    return respond({"value": [connector_json(r) for r in rows]})


@router.put(
    "/workspaces/{workspace}/connectors/{name}",
    summary="Create or replace a connector (an MLflow tracking server whose changes become events)",
    openapi_extra=PUT_BODY,
    status_code=201,
    responses={200: {"description": "replaced"}, 201: {"description": "created"}},
)
async def put_connector(workspace: str, name: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.WRITE)
    body = await json_body(request)
    row, created = await _service(request).put(ws.name, name, body, if_match=if_match(request))
    return respond(
        connector_json(row, await _service(request).objects_tracked(row)), 201 if created else 200, row.etag
    )


@router.patch(
    "/workspaces/{workspace}/connectors/{name}",
    summary="Change some properties of a connector (e.g. pause it)",
    openapi_extra=PATCH_BODY,
)
async def patch_connector(workspace: str, name: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.WRITE)
    body = await json_body(request)
    row = await _service(request).patch(ws.name, name, body, if_match=if_match(request))
    return respond(connector_json(row, await _service(request).objects_tracked(row)), etag=row.etag)


@router.get("/workspaces/{workspace}/connectors/{name}", summary="Read a connector and its health")
async def get_connector(workspace: str, name: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.READ)
    row = await _service(request).get(ws.name, name)
    return respond(connector_json(row, await _service(request).objects_tracked(row)), etag=row.etag)


@router.delete(
    "/workspaces/{workspace}/connectors/{name}",
    summary="Delete a connector and its remembered state (events already emitted stay)",
    status_code=204,
    response_class=Response,
)
async def delete_connector(workspace: str, name: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.WRITE)
    await _service(request).delete(ws.name, name, if_match=if_match(request))
    return Response(status_code=204)


@router.post(
    "/workspaces/{workspace}/connectors/{name}:resync",
    summary="Run a full sweep of MLflow now (finds changes polling cannot see, e.g. backdated runs)",
    status_code=202,
)
async def resync_connector(workspace: str, name: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.WRITE)
    row = await _service(request).resync(ws.name, name)
    return respond(connector_json(row), 202, row.etag)


@router.post(
    "/workspaces/{workspace}/connectors/{name}/webhook",
    summary="MLflow webhook doorbell: signed by the connector's webhookSecret; triggers a re-read of MLflow",
    openapi_extra=WEBHOOK_BODY,
)
async def connector_webhook(workspace: str, name: str, request: Request) -> Response:
    body = await read_limited(request, MAX_WEBHOOK_BODY, "webhook body")
    fresh = await _service(request).webhook(
        workspace,
        name,
        delivery_id=request.headers.get("x-mlflow-delivery-id"),
        timestamp=request.headers.get("x-mlflow-timestamp"),
        signature=request.headers.get("x-mlflow-signature"),
        body=body,
    )
    return respond({"accepted": True, "duplicate": not fresh})
