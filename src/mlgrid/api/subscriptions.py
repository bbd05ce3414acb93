"""Event subscription routes under custom topics, system topics and the workspace alias.

The same handlers serve three parents (SPEC §1, §12):

* ``/topics/{t}/eventSubscriptions/...`` — a custom topic, guarded by the topic's roles;
* ``/systemTopics/{ws}/eventSubscriptions/...`` — a workspace's system topic, guarded by the
  workspace's roles;
* ``/workspaces/{ws}/eventSubscriptions/...`` — an alias of the line above (404 when the
  workspace has no system topic, i.e. does not exist).

Each path also answers with a lower-case ``eventsubscriptions`` (as the pull API spells it);
those variants are left out of the OpenAPI document. ``GET /eventSubscriptions/validate`` is
the one unauthenticated route: the code in its query string is the credential.

``resolve_subscription`` is the shared first step of every route that addresses one
subscription, including those of the delivery layer (deliveries, dead letters, replay, pull).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from mlgrid.api.deps import caller, if_match, json_body, runtime
from mlgrid.api.docs import body_schema
from mlgrid.api.responses import ExactJSONResponse
from mlgrid.api.topics import scope_of
from mlgrid.auth.roles import Action, Principal
from mlgrid.broker.subscription_body import subscription_schema
from mlgrid.broker.subscriptions import SubscriptionService
from mlgrid.broker.topics import Topic
from mlgrid.domain.subscription import Subscription
from mlgrid.errors import NotFound

router = APIRouter(tags=["event subscriptions"])

PARENT_KINDS: Final = ("topics", "systemTopics", "workspaces")
"""The first path segment of each parent of event subscriptions."""

PUT_BODY = body_schema(subscription_schema(patch=False))
PATCH_BODY = body_schema(subscription_schema(patch=True))
_SUBSCRIPTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "the topic, workspace or subscription does not exist"}
}
_PUT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_SUBSCRIPTION_RESPONSES, 200: {"description": "replaced"}, 201: {"description": "created"},
}


def _service(request: Request) -> SubscriptionService:
    service: SubscriptionService = runtime(request).subscriptions
    return service


def _json(body: Any, status: int = 200, etag: str | None = None) -> Response:
    headers = {"ETag": f'"{etag}"'} if etag else None
    return ExactJSONResponse(body, status_code=status, headers=headers)


async def resolve_parent(
    request: Request, parent_kind: str, parent_name: str, action: Action
) -> tuple[Topic, Principal]:
    """Authenticate (401), find the parent topic (404), check ``action`` on its scope (403).

    ``parent_kind`` is the first path segment: ``topics``, ``systemTopics`` or ``workspaces``.
    """
    rt = runtime(request)
    principal = await caller(request)
    if parent_kind == "topics":
        topic = await rt.topics.get(parent_name, "custom")
    elif parent_kind in ("systemTopics", "workspaces"):
        found = await rt.topics.find(parent_name, "system")
        if found is None:
            label = "workspace" if parent_kind == "workspaces" else "system topic"
            raise NotFound(f"{label} {parent_name!r} does not exist")
        topic = found
    else:
        raise ValueError(f"unknown parent kind {parent_kind!r}; expected one of {', '.join(PARENT_KINDS)}")
    await rt.access.require(principal, scope_of(topic), action)
    return topic, principal


async def resolve_subscription(
    request: Request, parent_kind: str, parent_name: str, sub_name: str, action: Action
) -> tuple[Topic, Subscription]:
    """The topic and the subscription a route addresses, after authentication and ``action``.

    For the delivery layer's routes too (deliveries, dead letters, replay, pull): the returned
    ``Subscription`` comes from the service's cache and has its secrets opened.
    """
    topic, _ = await resolve_parent(request, parent_kind, parent_name, action)
    return topic, await _service(request).find(topic, sub_name)


# --- handlers, one factory per operation so that each parent kind gets its own route ---------

Handler = Callable[..., Awaitable[Response]]


def _put(kind: str) -> Handler:
    async def put_event_subscription(parent: str, subscription: str, request: Request) -> Response:
        topic, _ = await resolve_parent(request, kind, parent, Action.MANAGE_SUBSCRIPTIONS)
        body = await json_body(request)
        resource, created = await _service(request).put(topic, subscription, body, if_match=if_match(request))
        return _json(resource, 201 if created else 200, resource["etag"])

    return put_event_subscription


def _patch(kind: str) -> Handler:
    async def update_event_subscription(parent: str, subscription: str, request: Request) -> Response:
        topic, _ = await resolve_parent(request, kind, parent, Action.MANAGE_SUBSCRIPTIONS)
        body = await json_body(request)
        resource = await _service(request).patch(topic, subscription, body, if_match=if_match(request))
        return _json(resource, 200, resource["etag"])

    return update_event_subscription


def _get(kind: str) -> Handler:
    async def get_event_subscription(parent: str, subscription: str, request: Request) -> Response:
        topic, _ = await resolve_parent(request, kind, parent, Action.READ_SUBSCRIPTIONS)
        resource = await _service(request).get(topic, subscription)
        return _json(resource, 200, resource["etag"])

    return get_event_subscription


def _list(kind: str) -> Handler:
    async def list_event_subscriptions(parent: str, request: Request) -> Response:
        topic, _ = await resolve_parent(request, kind, parent, Action.READ_SUBSCRIPTIONS)
        return _json({"value": await _service(request).list(topic)})

    return list_event_subscriptions


def _delete(kind: str) -> Handler:
    async def delete_event_subscription(parent: str, subscription: str, request: Request) -> Response:
        topic, _ = await resolve_parent(request, kind, parent, Action.MANAGE_SUBSCRIPTIONS)
        await _service(request).delete(topic, subscription, if_match=if_match(request))
        return Response(status_code=204)

    return delete_event_subscription


def _full_url(kind: str) -> Handler:
    async def get_full_url(parent: str, subscription: str, request: Request) -> Response:
        topic, _ = await resolve_parent(request, kind, parent, Action.READ_SECRETS)
        return _json({"endpointUrl": await _service(request).full_url(topic, subscription)})

    return get_full_url


_PARENT_LABELS = {"topics": "a custom topic", "systemTopics": "a system topic",
                  "workspaces": "a workspace's system topic"}


def _register() -> None:
    for kind in PARENT_KINDS:
        label = _PARENT_LABELS[kind]
        for segment in ("eventSubscriptions", "eventsubscriptions"):
            documented = segment == "eventSubscriptions"
            collection = f"/{kind}/{{parent}}/{segment}"
            item = f"{collection}/{{subscription}}"
            common: dict[str, Any] = {"include_in_schema": documented, "responses": _SUBSCRIPTION_RESPONSES}
            router.add_api_route(
                item, _put(kind), methods=["PUT"], openapi_extra=PUT_BODY, status_code=201,
                summary=f"Create or replace an event subscription on {label}",
                response_class=Response, **{**common, "responses": _PUT_RESPONSES},
            )
            router.add_api_route(
                item, _patch(kind), methods=["PATCH"], openapi_extra=PATCH_BODY,
                summary=f"Update an event subscription on {label} (given properties replace stored ones)",
                response_class=Response, **common,
            )
            router.add_api_route(
                item, _get(kind), methods=["GET"], summary=f"Read an event subscription on {label}",
                response_class=Response, **common,
            )
            router.add_api_route(
                item, _delete(kind), methods=["DELETE"], summary=f"Delete an event subscription on {label}",
                response_class=Response, status_code=204, **common,
            )
            router.add_api_route(
                collection, _list(kind), methods=["GET"], summary=f"List the event subscriptions of {label}",
                response_class=Response, **common,
            )
            router.add_api_route(
                f"{item}/getFullUrl", _full_url(kind), methods=["POST"],
                summary="Read the full destination URL, query string included (Contributor or Owner)",
                response_class=Response, **common,
            )


_register()


@router.get(
    "/eventSubscriptions/validate",
    summary="Complete a manual webhook validation (the validationUrl of a SubscriptionValidationEvent)",
    response_class=Response,
    responses={
        400: {"description": "the 5-minute window has passed"},
        404: {"description": "unknown id or code"},
    },
)
async def validate_event_subscription(
    request: Request,
    id: str = Query(..., description="the subscription id from the validationUrl"),
    code: str = Query(..., description="the validation code from the validationUrl"),
) -> Response:
    result = await _service(request).confirm_manual_validation(id, code)
    result["message"] = "Webhook successfully validated as a part of the subscription validation handshake"
    return _json(result)
