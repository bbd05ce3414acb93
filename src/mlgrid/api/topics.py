"""Topic management routes: ``/topics/{t}``, keys, retained events, and ``/systemTopics``."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from mlgrid.api.deps import caller, if_match, json_body, runtime
from mlgrid.api.docs import body_schema
from mlgrid.api.responses import ExactJSONResponse
from mlgrid.auth.roles import Action
from mlgrid.broker.access import Scope
from mlgrid.broker.topics import Topic, parse_topic_body
from mlgrid.domain.schemas import INPUT_SCHEMAS, EventSchema
from mlgrid.errors import invalid
from mlgrid.events.jsoncodec import loads_exact
from mlgrid.events.timestamps import parse_timestamp

router = APIRouter(tags=["topics"])

TOPIC_BODY = body_schema(
    {
        "type": "object",
        "properties": {
            "properties": {
                "type": "object",
                "properties": {
                    "inputSchema": {
                        "type": "string",
                        "enum": list(INPUT_SCHEMAS),
                        "default": EventSchema.EVENT_GRID,
                    },
                    "inputSchemaMapping": {"type": "object", "description": "required for CustomEventSchema"},
                    "resourceGroup": {"type": "string", "default": "default"},
                    "retentionInDays": {"type": "integer", "minimum": 1, "maximum": 30, "default": 1},
                },
            }
        },
    },
    required=False,
)
REGENERATE_BODY = body_schema(
    {
        "type": "object",
        "required": ["keyName"],
        "properties": {"keyName": {"type": "string", "enum": ["key1", "key2"]}},
    }
)
PAGE_SIZE_MAX = 1000


def scope_of(topic: Topic) -> Scope:
    """System topics are guarded by their workspace's role assignments."""
    return Scope("topic" if topic.kind == "custom" else "workspace", topic.name)


@router.put("/topics/{topic}", summary="Create or replace a custom topic", openapi_extra=TOPIC_BODY,
            status_code=201, responses={200: {"description": "replaced"}, 201: {"description": "created"}})
async def put_topic(topic: str, request: Request) -> Response:
    rt = runtime(request)
    principal = await caller(request)
    spec = parse_topic_body(await json_body(request, required=False))
    existing = await rt.topics.find(topic, "custom")
    if existing is None:
        # Creating a topic is an administrative act; the creator becomes its Owner.
        await rt.access.require(principal, None, Action.WRITE)
    else:
        await rt.access.require(principal, scope_of(existing), Action.WRITE)
    found, created = await rt.topics.put(topic, spec, if_match=if_match(request))
    return ExactJSONResponse(rt.topics.as_json(found), status_code=201 if created else 200)


@router.get("/topics", summary="List the custom topics the caller may read")
async def list_topics(request: Request) -> dict[str, Any]:
    rt = runtime(request)
    principal = await caller(request)
    result = []
    for t in await rt.topics.list("custom"):
        if await rt.access.allowed(principal, scope_of(t), Action.READ):
            result.append(rt.topics.as_json(t))
    return {"value": result}


@router.get("/topics/{topic}", summary="Read a custom topic")
async def get_topic(topic: str, request: Request) -> dict[str, Any]:
    rt = runtime(request)
    principal = await caller(request)
    found = await rt.topics.get(topic)
    await rt.access.require(principal, scope_of(found), Action.READ)
    return rt.topics.as_json(found)


@router.delete(
    "/topics/{topic}",
    summary="Delete a custom topic with its subscriptions and events",
    status_code=204,
    response_class=Response,
)
async def delete_topic(topic: str, request: Request) -> Response:
    rt = runtime(request)
    principal = await caller(request)
    found = await rt.topics.get(topic)
    await rt.access.require(principal, scope_of(found), Action.DELETE)
    await rt.topics.delete(topic)
    rt.subscriptions.drop_topic(found.key)
    return Response(status_code=204)


@router.post("/topics/{topic}/listKeys", summary="Read the topic's access keys")
async def list_keys(topic: str, request: Request) -> dict[str, str]:
    rt = runtime(request)
    principal = await caller(request)
    found = await rt.topics.get(topic)
    await rt.access.require(principal, scope_of(found), Action.LIST_KEYS)
    _, keys = await rt.topics.keys(found.name)
    return {"key1": keys.key1, "key2": keys.key2}


@router.post("/topics/{topic}/regenerateKey", summary="Replace key1 or key2 with a new random key",
             openapi_extra=REGENERATE_BODY)
async def regenerate_key(topic: str, request: Request) -> dict[str, str]:
    rt = runtime(request)
    principal = await caller(request)
    found = await rt.topics.get(topic)
    await rt.access.require(principal, scope_of(found), Action.REGENERATE_KEY)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object with keyName")
    keys = await rt.topics.regenerate_key(found.name, body.get("keyName"))
    return {"key1": keys.key1, "key2": keys.key2}


def _cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(str(seq).encode()).decode().rstrip("=")


def _parse_cursor(token: str | None) -> int:
    if not token:
        return 0
    try:
        padded = token + "=" * (-len(token) % 4)
        return int(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid("skipToken", "is not a paging token issued by this server") from exc


def _time_param(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    parsed = parse_timestamp(value)
    if parsed is None:
        raise invalid(name, f"{value!r} is not an ISO 8601 date-time")
    return parsed


async def list_events_page(request: Request, found: Topic, since: str | None, until: str | None,
                           event_type: str | None, top: int, skip_token: str | None) -> dict[str, Any]:
    rt = runtime(request)
    principal = await caller(request)
    await rt.access.require(principal, scope_of(found), Action.READ_EVENTS)
    start, end = _time_param(since, "since"), _time_param(until, "until")
    if start is not None and end is not None and end < start:
        raise invalid("until", "must not be before since")
    rows = await rt.topics.list_events(
        found, since=start, until=end, event_type=event_type,
        after_seq=_parse_cursor(skip_token), limit=top + 1,
    )
    body: dict[str, Any] = {"value": [loads_exact(r.body) for r in rows[:top]]}
    if len(rows) > top:
        params = dict(request.query_params)
        params["skipToken"] = _cursor(rows[top - 1].seq)
        body["nextLink"] = str(request.url.replace_query_params(**params))
    return body


@router.get("/topics/{topic}/events", summary="List retained events, oldest first, paged with nextLink")
async def list_topic_events(
    topic: str,
    request: Request,
    since: str | None = Query(None, description="ISO 8601; events published at or after"),
    until: str | None = Query(None, description="ISO 8601; events published before"),
    eventType: str | None = Query(None, description="only this event type (case-insensitive)"),
    top: int = Query(100, ge=1, le=PAGE_SIZE_MAX, description="page size"),
    skipToken: str | None = Query(None, description="paging token from nextLink"),
) -> Response:
    await caller(request)  # 401 before 404, as on every management route
    found = await runtime(request).topics.get(topic)
    page = await list_events_page(request, found, since, until, eventType, top, skipToken)
    return ExactJSONResponse(page)


@router.get("/systemTopics", summary="List the system topics of the workspaces the caller may read")
async def list_system_topics(request: Request) -> dict[str, Any]:
    rt = runtime(request)
    principal = await caller(request)
    result = []
    for t in await rt.topics.list("system"):
        if await rt.access.allowed(principal, scope_of(t), Action.READ):
            result.append(rt.topics.as_json(t))
    return {"value": result}


@router.get("/systemTopics/{workspace}", summary="Read a workspace's system topic")
async def get_system_topic(workspace: str, request: Request) -> dict[str, Any]:
    rt = runtime(request)
    principal = await caller(request)
    found = await rt.topics.get(workspace, "system")
    await rt.access.require(principal, scope_of(found), Action.READ)
    return rt.topics.as_json(found)


@router.get("/systemTopics/{workspace}/events", summary="List a system topic's retained events")
async def list_system_topic_events(
    workspace: str,
    request: Request,
    since: str | None = Query(None),
    until: str | None = Query(None),
    eventType: str | None = Query(None),
    top: int = Query(100, ge=1, le=PAGE_SIZE_MAX),
    skipToken: str | None = Query(None),
) -> Response:
    await caller(request)  # 401 before 404, as on every management route
    found = await runtime(request).topics.get(workspace, "system")
    page = await list_events_page(request, found, since, until, eventType, top, skipToken)
    return ExactJSONResponse(page)
