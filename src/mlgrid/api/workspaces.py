"""Workspace routes (SPEC §12, Workspace table): workspaces and their role assignments here;
runs, jobs, metrics and artifacts in ``workspace_runs``; models and datasets in
``workspace_assets``. ``router`` includes all three.

RBAC: creating a workspace is an administrative act (as creating a topic); everything inside a
workspace needs ``Reader`` to read and ``Contributor`` or ``Owner`` to change; role
assignments need ``Owner``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mlgrid.api import workspace_assets, workspace_runs
from mlgrid.api.deps import caller, if_match, json_body, runtime
from mlgrid.api.docs import CREATED_OR_REPLACED, body_schema
from mlgrid.api.principals import ROLE_BODY, delete_role, get_roles, put_role
from mlgrid.api.workspace_common import guard, iso, respond, workspace_service
from mlgrid.auth.roles import Action
from mlgrid.errors import NotFound
from mlgrid.workspace.service import Workspace, WorkspaceService
from mlgrid.workspace.validation import WorkspaceBody

router = APIRouter(tags=["workspaces"])

WORKSPACE_BODY = body_schema(WorkspaceBody, required=False)


def workspace_json(ws: Workspace) -> dict[str, Any]:
    row = ws.row
    return {
        "id": ws.resource_id,
        "name": row.name,
        "type": "Microsoft.MachineLearningServices/workspaces",
        "location": "local",
        "etag": row.etag,
        "properties": {
            "provisioningState": "Succeeded",
            "resourceGroup": row.resource_group,
            "runStatusChangedEvents": row.run_status_changed_events,
            "systemTopic": f"/systemTopics/{row.name}",
            "createdTime": iso(row.created_at),
            "updatedTime": iso(row.updated_at),
        },
    }


@router.put(
    "/workspaces/{workspace}",
    summary="Create a workspace (with its system topic) or change its settings",
    openapi_extra=WORKSPACE_BODY,
    status_code=201,
    responses={200: {"description": "updated"}, 201: {"description": "created"}},
)
async def put_workspace(workspace: str, request: Request) -> Response:
    rt = runtime(request)
    service = workspace_service(request)
    principal = await caller(request)
    existing = await service.find(workspace)
    if existing is None:
        # Creating a workspace is an administrative act, like creating a topic.
        await rt.access.require(principal, None, Action.WRITE)
    else:
        await rt.access.require(principal, WorkspaceService.scope(existing.name), Action.WRITE)
    body = await json_body(request, required=False)
    found, created = await service.put(workspace, body, if_match=if_match(request))
    return respond(workspace_json(found), 201 if created else 200, found.etag)


@router.get("/workspaces", summary="List the workspaces the caller may read")
async def list_workspaces(request: Request) -> Response:
    rt = runtime(request)
    principal = await caller(request)
    result = []
    for ws in await workspace_service(request).list_workspaces():
        if await rt.access.allowed(principal, WorkspaceService.scope(ws.name), Action.READ):
            result.append(workspace_json(ws))
    return respond({"value": result})


@router.get("/workspaces/{workspace}", summary="Read a workspace")
async def get_workspace(workspace: str, request: Request) -> Response:
    found, _ = await guard(request, workspace, Action.READ)
    return respond(workspace_json(found), etag=found.etag)


@router.delete(
    "/workspaces/{workspace}",
    summary="Delete a workspace with its runs, models, datasets, files, system topic and subscriptions",
    status_code=204,
    response_class=Response,
)
async def delete_workspace(workspace: str, request: Request) -> Response:
    found, _ = await guard(request, workspace, Action.DELETE)
    await workspace_service(request).delete(found.name, if_match=if_match(request))
    return Response(status_code=204)


# --- role assignments ----------------------------------------------------------------------


async def _scope(request: Request, workspace: str) -> Any:
    await caller(request)  # 401 before 404: unauthenticated callers learn nothing about workspaces
    found = await workspace_service(request).get(workspace)
    return WorkspaceService.scope(found.name)


@router.put(
    "/workspaces/{workspace}/roleAssignments/{principal}",
    summary="Assign a role on a workspace (Owner)",
    openapi_extra=ROLE_BODY,
    status_code=201,
    responses=CREATED_OR_REPLACED,
)
async def put_workspace_role(workspace: str, principal: str, request: Request) -> Response:
    return await put_role(request, await _scope(request, workspace), principal)


@router.get("/workspaces/{workspace}/roleAssignments", summary="List role assignments on a workspace")
async def list_workspace_roles(workspace: str, request: Request) -> dict[str, Any]:
    return await get_roles(request, await _scope(request, workspace))


@router.get(
    "/workspaces/{workspace}/roleAssignments/{principal}", summary="Read one principal's role on a workspace"
)
async def get_workspace_role(workspace: str, principal: str, request: Request) -> dict[str, Any]:
    scope = await _scope(request, workspace)
    roles = await get_roles(request, scope)
    for entry in roles["value"]:
        if str(entry["principal"]).lower() == principal.lower():
            return {
                "principal": entry["principal"],
                "role": entry["role"],
                "scope": f"/workspaces/{scope.name}",
            }
    raise NotFound(f"principal {principal!r} has no role on workspace {scope.name!r}")


@router.delete(
    "/workspaces/{workspace}/roleAssignments/{principal}", summary="Remove a role assignment (Owner)",
    status_code=204,
    response_class=Response,
)
async def delete_workspace_role(workspace: str, principal: str, request: Request) -> Response:
    return await delete_role(request, await _scope(request, workspace), principal)


router.include_router(workspace_runs.router)
router.include_router(workspace_assets.router)
