"""Principals (admin only) and role assignments on topics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ConfigDict, WithJsonSchema

from mlgrid.api.deps import caller, json_body, runtime
from mlgrid.api.docs import CREATED_OR_REPLACED, body_schema
from mlgrid.api.responses import ExactJSONResponse
from mlgrid.auth.roles import Action, Role, parse_role
from mlgrid.body import Body, Invalid, checked, checker, echoed, parse
from mlgrid.broker.access import Scope

router = APIRouter(tags=["principals and roles"])


@router.put(
    "/principals/{name}",
    summary="Create a principal or rotate its token (admin only); the token is shown once",
    status_code=201,
    responses=CREATED_OR_REPLACED,
)
async def put_principal(name: str, request: Request) -> Response:
    rt = runtime(request)
    principal = await caller(request)
    await rt.access.require(principal, None, Action.MANAGE_PRINCIPALS)
    token, created = await rt.access.put_principal(name)
    return ExactJSONResponse({"name": name, "token": token}, status_code=201 if created else 200)


@router.get("/principals", summary="List principals (admin only)")
async def list_principals(request: Request) -> dict[str, Any]:
    rt = runtime(request)
    await rt.access.require(await caller(request), None, Action.MANAGE_PRINCIPALS)
    rows = await rt.access.list_principals()
    return {"value": [{"name": r.name, "isAdmin": r.is_admin, "createdAt": r.created_at.isoformat()}
                      for r in rows]}


@router.delete(
    "/principals/{name}",
    summary="Delete a principal and its role assignments (admin only)",
    status_code=204,
    response_class=Response,
)
async def delete_principal(name: str, request: Request) -> Response:
    rt = runtime(request)
    await rt.access.require(await caller(request), None, Action.MANAGE_PRINCIPALS)
    await rt.access.delete_principal(name)
    return Response(status_code=204)


_ROLE_SCHEMA: dict[str, Any] = {
    "type": "string",
    # What is listed is accepted; case and spaces are also ignored ("data sender").
    "enum": [role.value for role in Role] + ["EventGrid Data Sender", "EventGrid Data Receiver"],
    "description": "case and spaces are ignored; Azure's built-in names are accepted",
}


def _role(value: object) -> Role:
    return checked(lambda: parse_role(value, "role"))


_ARM_PROPERTIES_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "properties": {"role": _ROLE_SCHEMA},
    "additionalProperties": False,
    "description": "ARM's shape: its role is read when there is no top-level role",
}


class RoleBody(Body):
    """The body of a role assignment: ``{"role": "Reader"}``, or ARM's shape with the role under
    ``properties``. Closed like every other body (issue 16): an unknown member, at the top level
    or under ``properties``, is a 400 naming it; ``principal`` and ``scope``, which a read
    carries, may be echoed back and are ignored (the path names both)."""

    role: Annotated[Any, *checker(_role, _ROLE_SCHEMA)] = None
    properties: Annotated[Any, WithJsonSchema(_ARM_PROPERTIES_SCHEMA)] = None
    principal: Any = echoed()
    scope: Any = echoed()

    # A role is needed, at the top level or under properties.
    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["role"]},
        {"required": ["properties"], "properties": {"properties": {"type": "object", "required": ["role"]}}},
    ]})

    @classmethod
    def object_reason(cls) -> str:
        return "must be a JSON object with a role"

    @classmethod
    def canonical_members(cls, value: object) -> dict[str, Any]:
        """The one role the body gives, always under ``role``: the top-level member if
        present, else ``properties.role``. Unknown members are refused wherever they are, and
        a role under ``properties`` is checked (as ``properties.role``) even when the top-level
        one wins, so that a body the schema refuses is never accepted."""
        members = super().canonical_members(value)
        properties = members.get("properties")
        arm_role: object = None
        if properties is not None:
            if not isinstance(properties, Mapping):
                raise Invalid("must be a JSON object or null", at="properties")
            unknown = sorted(str(k) for k in properties if k != "role")
            if unknown:
                raise Invalid("unknown field; expected role", at=f"properties.{unknown[0]}")
            if "role" in properties:
                arm_role = properties["role"]
                checked(lambda: parse_role(arm_role, "properties.role"))
        return {"role": members.get("role", arm_role)}


async def put_role(request: Request, scope: Scope, principal_name: str) -> Response:
    """Shared by the topic and workspace role routes: Owner only."""
    rt = runtime(request)
    await rt.access.require(await caller(request), scope, Action.MANAGE_ROLES)
    body = parse(RoleBody, await json_body(request))
    role, created = await rt.access.assign(scope, principal_name, body.role)
    return ExactJSONResponse(
        {"principal": principal_name, "role": role.value, "scope": f"/{scope.kind}s/{scope.name}"},
        status_code=201 if created else 200,
    )


async def get_roles(request: Request, scope: Scope) -> dict[str, Any]:
    rt = runtime(request)
    await rt.access.require(await caller(request), scope, Action.READ_ROLES)
    rows = await rt.access.list_assignments(scope)
    return {"value": [{"principal": r.principal, "role": r.role} for r in rows]}


async def delete_role(request: Request, scope: Scope, principal_name: str) -> Response:
    rt = runtime(request)
    await rt.access.require(await caller(request), scope, Action.MANAGE_ROLES)
    await rt.access.unassign(scope, principal_name)
    return Response(status_code=204)


ROLE_BODY = body_schema(RoleBody)


async def _topic_scope(request: Request, topic: str) -> Scope:
    await caller(request)  # 401 before 404: unauthenticated callers learn nothing about topics
    found = await runtime(request).topics.get(topic)
    return Scope("topic", found.name)


@router.put("/topics/{topic}/roleAssignments/{principal}", summary="Assign a role on a topic (Owner)",
            openapi_extra=ROLE_BODY, status_code=201, responses=CREATED_OR_REPLACED)
async def put_topic_role(topic: str, principal: str, request: Request) -> Response:
    return await put_role(request, await _topic_scope(request, topic), principal)


@router.get("/topics/{topic}/roleAssignments", summary="List role assignments on a topic")
async def list_topic_roles(topic: str, request: Request) -> dict[str, Any]:
    return await get_roles(request, await _topic_scope(request, topic))


@router.delete(
    "/topics/{topic}/roleAssignments/{principal}",
    summary="Remove a role assignment (Owner)",
    status_code=204,
    response_class=Response,
)
async def delete_topic_role(topic: str, principal: str, request: Request) -> Response:
    return await delete_role(request, await _topic_scope(request, topic), principal)
