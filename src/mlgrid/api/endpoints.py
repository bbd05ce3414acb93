"""Model deployment routes (SPEC §9, §12): Local endpoints and scoring through the server.

RBAC: reading needs ``Reader``; deploying and deleting ``Contributor``; scoring needs the
``SCORE`` action (``Contributor`` or ``Owner``, as in Azure ML where a Reader cannot call an
online endpoint).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from mlgrid.api.deps import caller, if_match, json_body, read_limited, runtime
from mlgrid.api.docs import body_schema
from mlgrid.api.workspace_common import guard, iso, respond
from mlgrid.auth.roles import Action
from mlgrid.domain.endpoints import DEPLOYMENT_STATES
from mlgrid.workspace.endpoint_spec import EndpointBody
from mlgrid.workspace.endpoint_supervisor import FORWARDED_HEADER
from mlgrid.workspace.endpoints import EndpointService, EndpointView
from mlgrid.workspace.service import Workspace, WorkspaceService

router = APIRouter(tags=["endpoints"])

MAX_SCORING_BODY = 16 * 1024 * 1024

ENDPOINT_BODY = body_schema(EndpointBody)
SCORE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "description": "passed to the model unchanged: a list of rows, or {'data': rows} "
                    "(also 'input_data', 'instances', 'inputs'); an entry script's run() gets it as a string"
                }
            }
        },
    }
}


def endpoint_service(request: Request) -> EndpointService:
    service: EndpointService = runtime(request).endpoints
    return service


def endpoint_json(ws: Workspace, view: EndpointView) -> dict[str, Any]:
    row = view.row
    return {
        "id": f"{ws.resource_id}/endpoints/{row.name}",
        "name": row.name,
        "type": "Microsoft.MachineLearningServices/workspaces/endpoints",
        "etag": row.etag,
        "properties": {
            "computeType": row.compute_type,
            "models": view.models,
            "entryScript": view.entry_script,
            "tags": view.tags,
            "properties": view.properties,
            "startupTimeoutSeconds": row.startup_timeout,
            "state": row.state,
            "scoringUri": row.scoring_uri if row.active_deployment_id is not None else None,
            "error": row.error,
            "deploymentId": row.deployment_id,
            "activeDeploymentId": row.active_deployment_id,
            "activeModels": view.active_models,
            "pid": row.pid if row.active_deployment_id is not None else None,
            "node": row.node,
            "createdTime": iso(row.created_at),
            "updatedTime": iso(row.updated_at),
            "lastDeployedTime": iso(row.deployed_at),
        },
    }


@router.put(
    "/workspaces/{workspace}/endpoints/{name}",
    summary="Deploy model versions to a Local endpoint (or redeploy it); the deployment runs in the "
    f"background: poll GET until properties.state is one of {', '.join(DEPLOYMENT_STATES[1:])}",
    openapi_extra=ENDPOINT_BODY,
    status_code=202,
)
async def put_endpoint(workspace: str, name: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.RUN_CODE)
    body = await json_body(request)
    view = await endpoint_service(request).deploy(ws.name, name, body, if_match=if_match(request))
    response = respond(endpoint_json(ws, view), 202, view.row.etag)
    response.headers["Location"] = str(request.url)
    return response


@router.get("/workspaces/{workspace}/endpoints", summary="List the endpoints of a workspace")
async def list_endpoints(workspace: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.READ)
    views = await endpoint_service(request).list_endpoints(ws.name)
    return respond({"value": [endpoint_json(ws, v) for v in views]})


@router.get(
    "/workspaces/{workspace}/endpoints/{name}",
    summary="Read an endpoint: properties.state, properties.scoringUri, properties.error",
)
async def get_endpoint(workspace: str, name: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.READ)
    view = await endpoint_service(request).get(ws.name, name)
    return respond(endpoint_json(ws, view), etag=view.row.etag)


@router.get(
    "/workspaces/{workspace}/endpoints/{name}/logs",
    summary="The scoring log of the deployment that serves the endpoint (text)",
    response_class=PlainTextResponse,
)
async def get_endpoint_logs(workspace: str, name: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.READ)
    text = await endpoint_service(request).logs(ws.name, name)
    return PlainTextResponse(text)


@router.delete(
    "/workspaces/{workspace}/endpoints/{name}",
    summary="Delete an endpoint and stop its process",
    status_code=204,
    response_class=Response,
)
async def delete_endpoint(workspace: str, name: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.DELETE)
    await endpoint_service(request).delete(ws.name, name, if_match=if_match(request))
    return Response(status_code=204)


@router.post(
    "/workspaces/{workspace}/endpoints/{name}/score",
    summary="Score: the body goes to the endpoint's scoring process and its answer comes back",
    openapi_extra=SCORE_BODY,
)
async def score_endpoint(workspace: str, name: str, request: Request) -> Response:
    service = endpoint_service(request)
    if service.serves(workspace, name):
        # Hot path: the endpoint serves here, so the workspace exists; only the role check
        # (cached) stands between the caller and the model.
        principal = await caller(request)
        await runtime(request).access.require(principal, WorkspaceService.scope(workspace), Action.SCORE)
        workspace_key = workspace.lower()
    else:
        ws, _ = await guard(request, workspace, Action.SCORE)
        workspace_key = ws.key
    body = await read_limited(request, MAX_SCORING_BODY, "scoring request")
    # Several nodes: a request this node cannot serve goes to the serving node with the
    # caller's credentials, marked so that node does not forward it again.
    forward = None if request.headers.get(FORWARDED_HEADER) else (
        request.url.path,
        {FORWARDED_HEADER: "1", "Authorization": request.headers.get("authorization", "")},
    )
    answer = await service.score(
        workspace_key, name, body, request.headers.get("content-type"), request.url.query, forward
    )
    return Response(answer.body, status_code=answer.status, media_type=answer.content_type)
