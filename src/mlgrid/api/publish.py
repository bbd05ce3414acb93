"""The publish endpoints: classic ``/api/events`` and namespace-style ``:publish``.

A 200 is sent only after the events are committed (``Ingestor.publish`` waits for the group
commit). Success bodies are what the ``azure-eventgrid`` SDK expects: empty for
``/api/events``, ``{}`` for ``:publish``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NoReturn

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mlgrid.api.deps import read_limited, runtime
from mlgrid.api.docs import body_schema
from mlgrid.auth.credentials import (
    BearerCredential,
    KeyCredential,
    NoCredential,
    SasCredential,
    key_matches,
    parse_publish_credentials,
)
from mlgrid.auth.roles import Action, Principal
from mlgrid.auth.sas import verify_sas
from mlgrid.broker.access import Scope
from mlgrid.broker.ingest import PublishBatch
from mlgrid.broker.topics import Topic, TopicKeys
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.domain.schemas import EventSchema, stored_schema
from mlgrid.errors import ErrorDetail, Forbidden, MlgridError, NotFound, PayloadTooLarge, Unauthorized
from mlgrid.events.namespace import cloudevent_to_eventgrid
from mlgrid.events.publish import MAX_REQUEST_BYTES, parse_publish_body, request_too_large
from mlgrid.tracing import SpanKind

router = APIRouter(tags=["publish"])

PUBLISH_BODY = body_schema(
    {"oneOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}]},
    content_types=("application/json", "application/cloudevents+json", "application/cloudevents-batch+json"),
)
# The topic is read from ``request.path_params`` rather than declared as an argument:
# FastAPI's parameter machinery cost a fifth of a publish request's CPU for one string. It is
# documented here instead, so the OpenAPI document still lists it.
_TOPIC_PARAMETER = {
    "parameters": [
        {"name": "topic", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "the topic's name"}
    ]
}


async def authenticate_data_plane(
    request: Request, topic: Topic, keys: TopicKeys, action: Action, resource_paths: tuple[str, ...]
) -> Principal | None:
    """Accept a topic key, a SAS token for the topic, or a bearer token with the right role."""
    rt = runtime(request)
    credential = parse_publish_credentials(request.headers, request.query_params)
    if isinstance(credential, KeyCredential):
        if not key_matches(credential.key, keys.key1, keys.key2):
            raise key_not_authorized(topic, f"the key in the {credential.source} is not a key of this topic")
        return None
    if isinstance(credential, SasCredential):
        verify_sas(credential.token, keys.key1, keys.key2, resource_paths, datetime.now(UTC))
        return None
    if isinstance(credential, BearerCredential):
        principal = await rt.access.principal_for_token(credential.token)
        if principal is None:
            raise Unauthorized("invalid or revoked bearer token")
        scope = Scope("topic" if topic.kind == "custom" else "workspace", topic.name)
        await rt.access.require(principal, scope, action)
        return principal
    assert isinstance(credential, NoCredential)
    raise Unauthorized(credential.reason)


def key_not_authorized(topic: Topic, reason: str) -> Unauthorized:
    """Azure's wording for a wrong key (the SDK's own tests match its first words), with
    mlgrid's precise reason after it and in ``details``."""
    message = (
        f"The request authorization key is not authorized for {topic.resource_id}. "
        f"This is due to the reason: {reason}."
    )
    return Unauthorized(message, [ErrorDetail(ErrorCode.UNAUTHORIZED, reason, "credentials")])


async def _read_body(request: Request) -> bytes:
    """The body, refused with a 413 naming the limit as soon as it is known to be too large
    (from ``Content-Length``, or while streaming a chunked body), before any of it is parsed."""
    try:
        return await read_limited(request, MAX_REQUEST_BYTES, "the request body")
    except PayloadTooLarge as exc:
        declared = request.headers.get("content-length", "")
        measured = (f"the request body is {int(declared):,} bytes" if declared.isdigit()
                    else f"the request body is over {MAX_REQUEST_BYTES:,} bytes")
        raise request_too_large(measured) from exc


async def _publish(request: Request, topic_name: str, namespace_style: bool) -> Response:
    rt = runtime(request)
    try:
        topic, keys = await rt.topics.keys(topic_name, "custom")
    except MlgridError:
        if await rt.topics.find(topic_name, "system") is not None:
            await _require_credentials(request)
            raise _system_topic_refusal(topic_name) from None
        raise
    try:
        await authenticate_data_plane(request, topic, keys, Action.PUBLISH, (f"/topics/{topic.name}",))
        body = await _read_body(request)
        now = datetime.now(UTC)
        content_type = request.headers.get("content-type")
        if namespace_style and topic.input_schema == EventSchema.EVENT_GRID:
            # Namespace topics speak CloudEvents; an Event Grid schema topic stores them converted.
            parsed = parse_publish_body(body, content_type, request.headers,
                                        input_schema=EventSchema.CLOUD_EVENTS, mapping=None,
                                        topic_id=topic.resource_id, now=now)
            events = [cloudevent_to_eventgrid(ev, topic.resource_id, now) for ev in parsed]
        else:
            events = parse_publish_body(body, content_type, request.headers, input_schema=topic.input_schema,
                                        mapping=topic.mapping, topic_id=topic.resource_id, now=now)
        schema = stored_schema(topic.input_schema)
        tracing = rt.tracing
        # The publisher's context: the request's traceparent, else the first CloudEvent's
        # (the CloudEvents distributed-tracing extension).
        parent = tracing.extract(request.headers) or (tracing.extract(events[0]) if events else None)
        attributes = {"messaging.system": "mlgrid", "messaging.destination.name": topic.name,
                      "messaging.batch.message_count": len(events)}
        # "route": matching against the subscriptions, then the commit of events and deliveries.
        with (
            tracing.span(f"publish {topic.name}", kind=SpanKind.SERVER, parent=parent, attributes=attributes),
            tracing.span(f"route {topic.name}", attributes=attributes),
        ):
            await rt.ingestor.publish(PublishBatch(topic.key, schema, events))
    except MlgridError as exc:
        rt.metrics.publish_failures.labels(topic.key, exc.code).inc()
        raise
    if namespace_style:
        return Response(b"{}", status_code=200, media_type="application/json")
    return Response(status_code=200)


@router.post("/topics/{topic}/api/events", summary="Publish events (classic Event Grid endpoint)",
             openapi_extra=PUBLISH_BODY | _TOPIC_PARAMETER, response_class=Response,
             responses={200: {"description": "events committed; empty body"}})
async def publish_classic(request: Request) -> Response:
    return await _publish(request, request.path_params["topic"], namespace_style=False)


@router.post("/topics/{topic}:publish", summary="Publish CloudEvents (namespace-style endpoint)",
             openapi_extra=PUBLISH_BODY | _TOPIC_PARAMETER, response_class=Response,
             responses={200: {"description": "events committed; body {}"}})
async def publish_namespace(request: Request) -> Response:
    return await _publish(request, request.path_params["topic"], namespace_style=True)


# A system topic's events come from its workspace only. Publishing to it is refused with the
# reason (403) instead of the 405 its read route would give, so a publisher pointed at the
# wrong URL learns why; a caller without credentials gets the 401 every route gives.
_SYSTEM_TOPIC_PARAMETER = {
    "parameters": [
        {"name": "workspace", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "the workspace whose system topic it is"}
    ]
}
_SYSTEM_TOPIC_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no credentials"},
    403: {"description": "always: only the workspace publishes to its system topic"},
    404: {"description": "no such workspace"},
}


async def _require_credentials(request: Request) -> None:
    """401 when the request carries no credential, or a bearer token nobody holds, as on
    every route. Keys and SAS tokens go on to the 403: a system topic has no keys, and its
    reason says more than "wrong key"."""
    credential = parse_publish_credentials(request.headers, request.query_params)
    if isinstance(credential, NoCredential):
        raise Unauthorized(credential.reason)
    known = runtime(request).access.principal_for_token
    if isinstance(credential, BearerCredential) and await known(credential.token) is None:
        raise Unauthorized("invalid or revoked bearer token")


def _system_topic_refusal(workspace: str) -> Forbidden:
    return Forbidden(
        f"only the workspace publishes to its system topic /systemTopics/{workspace}; "
        "publish your own events to a custom topic (/topics/{topic}/api/events)"
    )


async def _refuse_system_topic(request: Request) -> NoReturn:
    await _require_credentials(request)
    workspace = request.path_params["workspace"]
    if await runtime(request).topics.find(workspace, "system") is None:
        raise NotFound(f"workspace {workspace!r} has no system topic")
    raise _system_topic_refusal(workspace)


@router.post("/systemTopics/{workspace}/api/events", summary="Refused: system topics take no publishes",
             openapi_extra=PUBLISH_BODY | _SYSTEM_TOPIC_PARAMETER, response_class=Response,
             responses=_SYSTEM_TOPIC_RESPONSES)
async def publish_system_classic(request: Request) -> Response:
    return await _refuse_system_topic(request)


@router.post("/systemTopics/{workspace}:publish", summary="Refused: system topics take no publishes",
             openapi_extra=PUBLISH_BODY | _SYSTEM_TOPIC_PARAMETER, response_class=Response,
             responses=_SYSTEM_TOPIC_RESPONSES)
async def publish_system_namespace(request: Request) -> Response:
    return await _refuse_system_topic(request)
