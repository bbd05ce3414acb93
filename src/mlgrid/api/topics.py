"""Topic management routes: ``/topics/{t}``, keys, retained events, and ``/systemTopics``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from mlgrid.api import paging
from mlgrid.api.deps import caller, if_match, json_body, runtime
from mlgrid.api.docs import body_schema
from mlgrid.api.responses import ExactJSONResponse
from mlgrid.auth.roles import Action
from mlgrid.body import parse
from mlgrid.broker.access import Scope
from mlgrid.broker.topics import RegenerateKeyBody, Topic, TopicBody, parse_topic_body
from mlgrid.errors import invalid
from mlgrid.events.jsoncodec import loads_exact
from mlgrid.events.timestamps import parse_timestamp

router = APIRouter(tags=["topics"])

TOPIC_BODY = body_schema(TopicBody, required=False)
REGENERATE_BODY = body_schema(RegenerateKeyBody)
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
    body = parse(RegenerateKeyBody, await json_body(request))
    keys = await rt.topics.regenerate_key(found.name, body.key_name)
    return {"key1": keys.key1, "key2": keys.key2}


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
        after=paging.time_and_int(skip_token), limit=top + 1,
    )
    body: dict[str, Any] = {"value": [loads_exact(r.body) for r in rows[:top]]}
    if len(rows) > top:
        last = rows[top - 1]
        body["nextLink"] = paging.next_link(request, paging.encode(last.published_at.timestamp(), last.seq))
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
