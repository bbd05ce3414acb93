"""What every ARM-shaped route shares: paths, ``api-version``, Azure's 404s, the LRO answer.

The ARM routes (``api/arm_topics.py``, ``api/arm_subscriptions.py``) are a second address for
the same services the short paths use, so that ``azure-mgmt-eventgrid`` (and anything that
speaks Azure Resource Manager) manages mlgrid unchanged. This module holds the Azure rules
that the short paths do not have:

* ``api-version`` is required and must be one Azure's Event Grid provider has published
  (400 ``MissingApiVersionParameter`` / ``NoRegisteredProviderFound``, as ARM answers);
* the subscription id of the path must be this server's (404 ``SubscriptionNotFound``), the
  resource group must exist (404 ``ResourceGroupNotFound``) and hold the resource (404
  ``ResourceNotFound``) — the codes and sentences ARM uses, so clients raise
  ``ResourceNotFoundError`` as they do against Azure;
* long-running operations complete before the answer: a PUT answers 201 with
  ``provisioningState`` already terminal, which ARM's asynchronous-operation protocol allows
  and ``ARMPolling`` reads as done without polling (no ``Azure-AsyncOperation`` header is
  sent: there is never anything left to poll).

Resource groups are not resources of their own in mlgrid: one exists when it is ``default`` or
holds a topic or a workspace, and creating a topic in a new one creates it.
"""

from __future__ import annotations

import re
from typing import Any, Final

from fastapi import Request
from fastapi.responses import Response

from mlgrid.api.deps import runtime
from mlgrid.broker.topics import Topic
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import BadRequest, ErrorDetail, NotFound
from mlgrid.events.jsoncodec import dumps

SUBSCRIPTION: Final = "/subscriptions/{subscriptionId}"
RESOURCE_GROUP: Final = SUBSCRIPTION + "/resourceGroups/{resourceGroupName}"
EVENTGRID: Final = RESOURCE_GROUP + "/providers/Microsoft.EventGrid"
TOPIC: Final = EVENTGRID + "/topics/{topicName}"
SYSTEM_TOPIC: Final = EVENTGRID + "/systemTopics/{systemTopicName}"
WORKSPACE: Final = RESOURCE_GROUP + "/providers/Microsoft.MachineLearningServices/workspaces/{workspaceName}"
EXTENSION_SUBSCRIPTIONS: Final = "/providers/Microsoft.EventGrid/eventSubscriptions"

# Microsoft.EventGrid's management API versions since 2020 (az eventgrid still sends
# 2021-10-15-preview; azure-mgmt-eventgrid 10.4 sends 2025-02-15). The properties mlgrid serves
# have the same shape in all of them.
API_VERSIONS: Final = (
    "2020-01-01-preview", "2020-04-01-preview", "2020-06-01", "2020-10-15-preview",
    "2021-06-01-preview", "2021-10-15-preview", "2021-12-01", "2022-06-15", "2023-06-01-preview",
    "2023-12-15-preview", "2024-06-01-preview", "2024-12-15-preview", "2025-02-15",
    "2025-04-01-preview",
)
DEFAULT_RESOURCE_GROUP: Final = "default"

_PARAMETER_DESCRIPTIONS: Final = {
    "subscriptionId": "this server's subscription id (the UUID in every resource id)",
    "resourceGroupName": "the resource group of the topic or workspace",
    "topicName": "a custom topic",
    "systemTopicName": "a workspace's system topic (named after the workspace)",
    "workspaceName": "a workspace (its system topic is the scope)",
    "eventSubscriptionName": "an event subscription",
}


def arm_route_extra(template: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """``openapi_extra`` for an ARM route: its path parameters, ``api-version``, the body."""
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"},
         "description": _PARAMETER_DESCRIPTIONS[name]}
        for name in re.findall(r"\{([A-Za-z]+)\}", template)
    ]
    parameters.append({"name": "api-version", "in": "query", "required": True,
                       "schema": {"type": "string", "enum": list(API_VERSIONS)},
                       "description": "an API version of Microsoft.EventGrid"})
    extra: dict[str, Any] = {"parameters": parameters}
    if body is not None:
        extra.update(body)
    return extra


def arm_json(body: Any, status: int = 200) -> Response:
    return Response(dumps(body), status_code=status, media_type="application/json")


def check_api_version(request: Request) -> None:
    version = request.query_params.get("api-version")
    if not version:
        message = "The api-version query parameter (?api-version=) is required for all requests."
        code = ErrorCode.MISSING_API_VERSION_PARAMETER
        raise BadRequest(message, [ErrorDetail(code, message, "api-version")], code=code)
    if version not in API_VERSIONS:
        message = (f"No registered resource provider found for API version '{version}' of "
                   f"Microsoft.EventGrid. The supported api-versions are '{', '.join(API_VERSIONS)}'.")
        code = ErrorCode.NO_REGISTERED_PROVIDER_FOUND
        raise BadRequest(message, [ErrorDetail(code, message, "api-version")], code=code)


def check_subscription(request: Request) -> None:
    """The path's subscription id is this server's (and ``api-version`` is Event Grid's)."""
    check_api_version(request)
    check_subscription_id(request)


def check_subscription_id(request: Request) -> None:
    given = request.path_params["subscriptionId"]
    if given.lower() != runtime(request).subscription_id.lower():
        raise NotFound(
            f"The subscription '{given}' could not be found.", code=ErrorCode.SUBSCRIPTION_NOT_FOUND
        )


async def check_resource_group(request: Request) -> str:
    """The path's resource group, which must exist (after ``check_subscription``)."""
    check_subscription(request)
    group: str = request.path_params["resourceGroupName"]
    if group.lower() == DEFAULT_RESOURCE_GROUP:
        return group
    rt = runtime(request)
    for topic in [*await rt.topics.list("custom"), *await rt.topics.list("system")]:
        if topic.row.resource_group.lower() == group.lower():
            return group
    raise NotFound(f"Resource group '{group}' could not be found.", code=ErrorCode.RESOURCE_GROUP_NOT_FOUND)


def resource_not_found(kind: str, name: str, group: str) -> NotFound:
    return NotFound(
        f"The Resource 'Microsoft.{kind}/{name}' under resource group '{group}' was not found.",
        code=ErrorCode.RESOURCE_NOT_FOUND,
    )


async def topic_in_group(request: Request, name: str, kind: str) -> Topic:
    """The custom or system topic ``name`` of the path's resource group, else ARM's 404."""
    group = await check_resource_group(request)
    found = await runtime(request).topics.find(name, kind)
    if found is None or found.row.resource_group.lower() != group.lower():
        label = {"custom": "EventGrid/topics", "system": "EventGrid/systemTopics"}[kind]
        raise resource_not_found(label, name, group)
    return found


async def workspace_topic(request: Request) -> Topic:
    """The system topic of the path's workspace (the scope of workspace event subscriptions)."""
    group = await check_resource_group(request)
    name = request.path_params["workspaceName"]
    found = await runtime(request).topics.find(name, "system")
    if found is None or found.row.resource_group.lower() != group.lower():
        raise resource_not_found("MachineLearningServices/workspaces", name, group)
    return found
