"""ARM-shaped topic routes (``/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.EventGrid/...``).

The same ``TopicService`` and access checks as ``/topics/{t}`` (``api/topics.py``); this module
only translates ARM's addressing, status codes and spelling (see ``api/arm_common.py``):

* PUT answers 201 on create and replace (the only status ``azure-mgmt-eventgrid`` accepts),
  the resource group of the path becomes the topic's, and a replace keeps the retention when
  the body (as Azure's bodies do) does not name it;
* PATCH takes ``TopicUpdateParameters``; its members are Azure settings mlgrid accepts and does
  not use (``tags``, network rules, ``disableLocalAuth``...), so it validates them and answers
  the unchanged topic;
* DELETE answers 204, listKeys/regenerateKey 200 with ``key1``/``key2``;
* ``inputSchemaMapping`` is written with ARM's ``inputSchemaMappingType`` discriminator.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mlgrid.api.arm_common import (
    EVENTGRID,
    SUBSCRIPTION,
    SYSTEM_TOPIC,
    TOPIC,
    arm_json,
    arm_route_extra,
    check_resource_group,
    check_subscription,
    topic_in_group,
)
from mlgrid.api.deps import caller, json_body, runtime
from mlgrid.api.docs import body_schema
from mlgrid.api.topics import REGENERATE_BODY, scope_of
from mlgrid.auth.roles import Action
from mlgrid.body import Body, echoed, parse
from mlgrid.broker.topics import ArmTopicBody, RegenerateKeyBody, Topic, parse_topic_body
from mlgrid.errors import invalid

router = APIRouter(tags=["ARM: topics"])

ARM_TOPIC_BODY = body_schema(ArmTopicBody, required=False)


class TopicUpdateProperties(Body):
    """Azure's updatable topic settings: accepted and not used (mlgrid has no network rules)."""

    public_network_access: Any = echoed()
    inbound_ip_rules: Any = echoed()
    minimum_tls_version_allowed: Any = echoed()
    disable_local_auth: Any = echoed()
    data_residency_boundary: Any = echoed()
    event_type_info: Any = echoed()

    @classmethod
    def unknown_reason(cls, known: list[str]) -> str:
        return "cannot be updated; replace the topic with PUT instead"


class TopicUpdateBody(Body):
    """``TopicUpdateParameters`` of ARM's topic ``PATCH``."""

    tags: Any = echoed()
    identity: Any = echoed()
    sku: Any = echoed()
    properties: TopicUpdateProperties | None = None

    @classmethod
    def object_reason(cls) -> str:
        return "must be a JSON object (TopicUpdateParameters)"

    @classmethod
    def unknown_reason(cls, known: list[str]) -> str:
        return f"unknown member; expected one of {', '.join(sorted(known))}"


TOPIC_UPDATE_BODY = body_schema(TopicUpdateBody, required=False)


def arm_topic(request: Request, topic: Topic) -> dict[str, Any]:
    """The topic as ARM writes it (mlgrid's own properties stay: clients ignore them)."""
    body = runtime(request).topics.as_json(topic)
    mapping = body["properties"].get("inputSchemaMapping")
    if isinstance(mapping, dict):
        mapping.pop("mappingType", None)
        body["properties"]["inputSchemaMapping"] = {"inputSchemaMappingType": "Json", **mapping}
    return body


@router.put(TOPIC, summary="ARM: create or replace a custom topic (201 when done)", status_code=201,
            openapi_extra=arm_route_extra(TOPIC, ARM_TOPIC_BODY), response_class=Response)
async def arm_put_topic(request: Request) -> Response:
    rt = runtime(request)
    principal = await caller(request)
    check_subscription(request)
    name, group = request.path_params["topicName"], request.path_params["resourceGroupName"]
    raw = await json_body(request, required=False)
    if raw is not None and not isinstance(raw, dict):
        parse(ArmTopicBody, raw)  # the 400 for a body that is not an object
    body: dict[str, Any] = dict(raw or {})
    props = body.get("properties")
    existing = await rt.topics.find(name, "custom")
    if isinstance(props, dict) or props is None:
        props = dict(props or {})
        given_group = props.setdefault("resourceGroup", group)
        if not isinstance(given_group, str) or given_group.lower() != group.lower():
            raise invalid("properties.resourceGroup", "must be the resource group of the path")
        if existing is not None:
            props.setdefault("retentionInDays", existing.row.retention_days)
        body["properties"] = props
    spec = parse_topic_body(body, ArmTopicBody)
    if existing is None:
        await rt.access.require(principal, None, Action.WRITE)
    else:
        await rt.access.require(principal, scope_of(existing), Action.WRITE)
    found, _ = await rt.topics.put(name, spec)
    return arm_json(arm_topic(request, found), 201)


@router.get(TOPIC, summary="ARM: read a custom topic", openapi_extra=arm_route_extra(TOPIC),
            response_class=Response)
async def arm_get_topic(request: Request) -> Response:
    principal = await caller(request)
    found = await topic_in_group(request, request.path_params["topicName"], "custom")
    await runtime(request).access.require(principal, scope_of(found), Action.READ)
    return arm_json(arm_topic(request, found))


@router.patch(TOPIC, summary="ARM: update a custom topic's Azure settings (accepted, not used)",
              openapi_extra=arm_route_extra(TOPIC, TOPIC_UPDATE_BODY), response_class=Response)
async def arm_update_topic(request: Request) -> Response:
    principal = await caller(request)
    found = await topic_in_group(request, request.path_params["topicName"], "custom")
    await runtime(request).access.require(principal, scope_of(found), Action.WRITE)
    raw = await json_body(request, required=False)
    parse(TopicUpdateBody, {} if raw is None else raw)
    return arm_json(arm_topic(request, found))


@router.delete(TOPIC, summary="ARM: delete a custom topic with its subscriptions and events",
               openapi_extra=arm_route_extra(TOPIC), response_class=Response, status_code=204)
async def arm_delete_topic(request: Request) -> Response:
    rt = runtime(request)
    principal = await caller(request)
    found = await topic_in_group(request, request.path_params["topicName"], "custom")
    await rt.access.require(principal, scope_of(found), Action.DELETE)
    await rt.topics.delete(found.name)
    rt.subscriptions.drop_topic(found.key)
    return Response(status_code=204)


async def _readable(request: Request, kind: str, group: str | None) -> list[dict[str, Any]]:
    rt = runtime(request)
    principal = await caller(request)
    found = []
    for topic in await rt.topics.list(kind):
        if group is not None and topic.row.resource_group.lower() != group.lower():
            continue
        if await rt.access.allowed(principal, scope_of(topic), Action.READ):
            found.append(arm_topic(request, topic))
    return found


@router.get(EVENTGRID + "/topics", summary="ARM: list the custom topics of a resource group",
            openapi_extra=arm_route_extra(EVENTGRID + "/topics"), response_class=Response)
async def arm_list_topics_by_group(request: Request) -> Response:
    await caller(request)
    group = await check_resource_group(request)
    return arm_json({"value": await _readable(request, "custom", group)})


@router.get(SUBSCRIPTION + "/providers/Microsoft.EventGrid/topics", summary="ARM: list all custom topics",
            openapi_extra=arm_route_extra(SUBSCRIPTION), response_class=Response)
async def arm_list_topics(request: Request) -> Response:
    await caller(request)
    check_subscription(request)
    return arm_json({"value": await _readable(request, "custom", None)})


@router.post(TOPIC + "/listKeys", summary="ARM: read a custom topic's access keys",
             openapi_extra=arm_route_extra(TOPIC), response_class=Response)
async def arm_list_keys(request: Request) -> Response:
    rt = runtime(request)
    principal = await caller(request)
    found = await topic_in_group(request, request.path_params["topicName"], "custom")
    await rt.access.require(principal, scope_of(found), Action.LIST_KEYS)
    _, keys = await rt.topics.keys(found.name)
    return arm_json({"key1": keys.key1, "key2": keys.key2})


@router.post(TOPIC + "/regenerateKey", summary="ARM: replace key1 or key2 of a custom topic",
             openapi_extra=arm_route_extra(TOPIC, REGENERATE_BODY), response_class=Response)
async def arm_regenerate_key(request: Request) -> Response:
    rt = runtime(request)
    principal = await caller(request)
    found = await topic_in_group(request, request.path_params["topicName"], "custom")
    await rt.access.require(principal, scope_of(found), Action.REGENERATE_KEY)
    body = parse(RegenerateKeyBody, await json_body(request))
    keys = await rt.topics.regenerate_key(found.name, body.key_name)
    return arm_json({"key1": keys.key1, "key2": keys.key2})


@router.get(SYSTEM_TOPIC, summary="ARM: read a workspace's system topic",
            openapi_extra=arm_route_extra(SYSTEM_TOPIC), response_class=Response)
async def arm_get_system_topic(request: Request) -> Response:
    principal = await caller(request)
    found = await topic_in_group(request, request.path_params["systemTopicName"], "system")
    await runtime(request).access.require(principal, scope_of(found), Action.READ)
    return arm_json(arm_topic(request, found))


@router.get(EVENTGRID + "/systemTopics", summary="ARM: list the system topics of a resource group",
            openapi_extra=arm_route_extra(EVENTGRID + "/systemTopics"), response_class=Response)
async def arm_list_system_topics(request: Request) -> Response:
    await caller(request)
    group = await check_resource_group(request)
    return arm_json({"value": await _readable(request, "system", group)})
