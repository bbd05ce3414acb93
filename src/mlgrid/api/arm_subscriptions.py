"""ARM-shaped event subscription routes, on the same ``SubscriptionService`` as the short paths.

Four scopes, as Azure addresses them (``api/arm_common.py`` has the shared ARM rules), each
under ``/subscriptions/{s}/resourceGroups/{rg}/providers/``, with ``EXT`` standing for
``/providers/Microsoft.EventGrid/eventSubscriptions``:

* a custom topic as an extension scope: ``Microsoft.EventGrid/topics/{t}EXT/{es}``;
* a custom topic's child: ``Microsoft.EventGrid/topics/{t}/eventSubscriptions/{es}``;
* a workspace as an extension scope: ``Microsoft.MachineLearningServices/workspaces/{ws}EXT/{es}``;
* a system topic's child: ``Microsoft.EventGrid/systemTopics/{ws}/eventSubscriptions/{es}``.

Ids and ARM types in answers follow the path used (``Microsoft.EventGrid/eventSubscriptions``,
``.../topics/eventSubscriptions``, ``.../systemTopics/eventSubscriptions``).

A workspace's subscriptions are its system topic's, whichever way they are addressed. PUT and
PATCH answer 201 (all ``azure-mgmt-eventgrid`` accepts), DELETE 200; PATCH takes ARM's flat
``EventSubscriptionUpdateParameters`` (no ``properties`` wrapper).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mlgrid.api.arm_common import (
    EXTENSION_SUBSCRIPTIONS,
    SYSTEM_TOPIC,
    TOPIC,
    WORKSPACE,
    arm_json,
    arm_route_extra,
    topic_in_group,
    workspace_topic,
)
from mlgrid.api.deps import caller, json_body, runtime
from mlgrid.api.docs import body_schema
from mlgrid.api.topics import scope_of
from mlgrid.auth.roles import Action
from mlgrid.broker.names import system_topic_arm_id
from mlgrid.broker.subscription_body import SubscriptionProperties, subscription_schema
from mlgrid.broker.topics import Topic

router = APIRouter(tags=["ARM: event subscriptions"])

EXTENSION_TYPE = "Microsoft.EventGrid/eventSubscriptions"
# ARM's update parameters are the subscription's properties, flat.
_UPDATE_BODY = body_schema(SubscriptionProperties)
_PUT_BODY = body_schema(subscription_schema(patch=False))


@dataclass(frozen=True)
class ArmScope:
    """How one kind of ARM path finds its topic and names its subscriptions."""

    label: str
    collection: str
    find_topic: Callable[[Request], Awaitable[Topic]]
    id_base: Callable[[Request, Topic], str]
    arm_type: str

    @property
    def item(self) -> str:
        return self.collection + "/{eventSubscriptionName}"


async def _custom_topic(request: Request) -> Topic:
    return await topic_in_group(request, request.path_params["topicName"], "custom")


async def _system_topic(request: Request) -> Topic:
    return await topic_in_group(request, request.path_params["systemTopicName"], "system")


def _resource_id(_request: Request, topic: Topic) -> str:
    return topic.resource_id


def _system_topic_id(request: Request, topic: Topic) -> str:
    rt = runtime(request)
    return system_topic_arm_id(rt.subscription_id, topic.row.resource_group, topic.name)


SCOPES = (
    ArmScope("a custom topic", TOPIC + EXTENSION_SUBSCRIPTIONS, _custom_topic,
             lambda r, t: _resource_id(r, t) + EXTENSION_SUBSCRIPTIONS, EXTENSION_TYPE),
    ArmScope("a custom topic (child path)", TOPIC + "/eventSubscriptions", _custom_topic,
             lambda r, t: _resource_id(r, t) + "/eventSubscriptions",
             "Microsoft.EventGrid/topics/eventSubscriptions"),
    ArmScope("a workspace", WORKSPACE + EXTENSION_SUBSCRIPTIONS, workspace_topic,
             lambda r, t: _resource_id(r, t) + EXTENSION_SUBSCRIPTIONS, EXTENSION_TYPE),
    ArmScope("a system topic", SYSTEM_TOPIC + "/eventSubscriptions", _system_topic,
             lambda r, t: _system_topic_id(r, t) + "/eventSubscriptions",
             "Microsoft.EventGrid/systemTopics/eventSubscriptions"),
)


def _arm_shape(request: Request, scope: ArmScope, topic: Topic, resource: dict[str, Any]) -> dict[str, Any]:
    shaped = dict(resource)
    shaped["id"] = f"{scope.id_base(request, topic)}/{resource['name']}"
    shaped["type"] = scope.arm_type
    return shaped


async def _topic_for(request: Request, scope: ArmScope, action: Action) -> Topic:
    principal = await caller(request)  # 401 before any 404
    topic = await scope.find_topic(request)
    await runtime(request).access.require(principal, scope_of(topic), action)
    return topic


Handler = Callable[[Request], Awaitable[Response]]


def _put(scope: ArmScope) -> Handler:
    async def arm_put_event_subscription(request: Request) -> Response:
        topic = await _topic_for(request, scope, Action.MANAGE_SUBSCRIPTIONS)
        body = await json_body(request)
        name = request.path_params["eventSubscriptionName"]
        resource, _ = await runtime(request).subscriptions.put(topic, name, body)
        return arm_json(_arm_shape(request, scope, topic, resource), 201)

    return arm_put_event_subscription


def _patch(scope: ArmScope) -> Handler:
    async def arm_update_event_subscription(request: Request) -> Response:
        topic = await _topic_for(request, scope, Action.MANAGE_SUBSCRIPTIONS)
        body = await json_body(request)
        name = request.path_params["eventSubscriptionName"]
        resource = await runtime(request).subscriptions.patch(topic, name, {"properties": body})
        return arm_json(_arm_shape(request, scope, topic, resource), 201)

    return arm_update_event_subscription


def _get(scope: ArmScope) -> Handler:
    async def arm_get_event_subscription(request: Request) -> Response:
        topic = await _topic_for(request, scope, Action.READ_SUBSCRIPTIONS)
        name = request.path_params["eventSubscriptionName"]
        resource = await runtime(request).subscriptions.get(topic, name)
        return arm_json(_arm_shape(request, scope, topic, resource))

    return arm_get_event_subscription


def _delete(scope: ArmScope) -> Handler:
    async def arm_delete_event_subscription(request: Request) -> Response:
        topic = await _topic_for(request, scope, Action.MANAGE_SUBSCRIPTIONS)
        await runtime(request).subscriptions.delete(topic, request.path_params["eventSubscriptionName"])
        return Response(status_code=200)

    return arm_delete_event_subscription


def _full_url(scope: ArmScope) -> Handler:
    async def arm_get_full_url(request: Request) -> Response:
        topic = await _topic_for(request, scope, Action.READ_SECRETS)
        name = request.path_params["eventSubscriptionName"]
        url = await runtime(request).subscriptions.full_url(topic, name)
        return arm_json({"endpointUrl": url})

    return arm_get_full_url


def _list(scope: ArmScope) -> Handler:
    async def arm_list_event_subscriptions(request: Request) -> Response:
        topic = await _topic_for(request, scope, Action.READ_SUBSCRIPTIONS)
        resources = await runtime(request).subscriptions.list(topic)
        return arm_json({"value": [_arm_shape(request, scope, topic, r) for r in resources]})

    return arm_list_event_subscriptions


def _register() -> None:
    for scope in SCOPES:
        item, label = scope.item, scope.label
        common: dict[str, Any] = {"response_class": Response}
        router.add_api_route(item, _put(scope), methods=["PUT"], status_code=201,
                             summary=f"ARM: create or replace an event subscription on {label}",
                             openapi_extra=arm_route_extra(item, _PUT_BODY), **common)
        router.add_api_route(item, _patch(scope), methods=["PATCH"], status_code=201,
                             summary=f"ARM: update an event subscription on {label}",
                             openapi_extra=arm_route_extra(item, _UPDATE_BODY), **common)
        router.add_api_route(item, _get(scope), methods=["GET"],
                             summary=f"ARM: read an event subscription on {label}",
                             openapi_extra=arm_route_extra(item), **common)
        router.add_api_route(item, _delete(scope), methods=["DELETE"],
                             summary=f"ARM: delete an event subscription on {label}",
                             openapi_extra=arm_route_extra(item), **common)
        router.add_api_route(item + "/getFullUrl", _full_url(scope), methods=["POST"],
                             summary=f"ARM: read the full destination URL of a subscription on {label}",
                             openapi_extra=arm_route_extra(item), **common)
        router.add_api_route(scope.collection, _list(scope), methods=["GET"],
                             summary=f"ARM: list the event subscriptions of {label}",
                             openapi_extra=arm_route_extra(scope.collection), **common)


_register()
