"""``POST /{topics|systemTopics|workspaces}/{t}/eventSubscriptions/{s}:test`` — the filter tester.

Body: ``{"event": {...}}`` (an event as the topic stores it: Event Grid or CloudEvents
schema), optionally with ``"filter": {...}`` to try a filter being written instead of the
subscription's own. The answer says whether the subscription would receive the event and why,
condition by condition (``mlgrid.filters.explain``: the engine routing uses). Azure has no such
operation; EventBridge's "test event pattern" is the model. Nothing is published or changed.
Reading a subscription is enough (``Reader`` and above).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mlgrid.api.deps import json_body
from mlgrid.api.docs import body_schema
from mlgrid.api.subscriptions import PARENT_KINDS, resolve_subscription
from mlgrid.auth.roles import Action
from mlgrid.errors import invalid
from mlgrid.events.jsoncodec import dumps
from mlgrid.filters import filter_to_json, parse_filter
from mlgrid.filters.explain import explain

router = APIRouter(tags=["event subscriptions"])

TEST_BODY = body_schema({
    "type": "object",
    "required": ["event"],
    "properties": {
        "event": {"type": "object", "description": "the event, in the schema the topic stores"},
        "filter": {"type": ["object", "null"],
                   "description": "a filter to try instead of the subscription's (null: the subscription's)"},
    },
})
Handler = Callable[..., Awaitable[Response]]


def _test(kind: str) -> Handler:
    async def test_event_subscription_filter(parent: str, subscription: str, request: Request) -> Response:
        _, sub = await resolve_subscription(request, kind, parent, subscription, Action.READ_SUBSCRIPTIONS)
        body = await json_body(request)
        if not isinstance(body, dict):
            raise invalid("body", "must be an object with an event")
        event = body.get("event")
        if not isinstance(event, dict):
            raise invalid("event", "must be an event object")
        event_filter = sub.event_filter
        if body.get("filter") is not None:
            event_filter = parse_filter(body["filter"], input_schema=sub.input_schema, field_prefix="filter")
        verdict = explain(event_filter, event, sub.stored_schema)
        answer: dict[str, Any] = {
            "subscription": sub.name,
            "filter": filter_to_json(event_filter),
            "filterSource": "request" if body.get("filter") is not None else "subscription",
            **verdict.as_json(),
        }
        return Response(dumps(answer), media_type="application/json")

    return test_event_subscription_filter


def _register() -> None:
    for kind in PARENT_KINDS:
        for segment in ("eventSubscriptions", "eventsubscriptions"):
            router.add_api_route(
                f"/{kind}/{{parent}}/{segment}/{{subscription}}:test",
                _test(kind),
                methods=["POST"],
                summary="Test the subscription's filter (or a given one) on an event: the verdict and "
                "each condition's reason",
                response_class=Response,
                include_in_schema=segment == "eventSubscriptions",
                openapi_extra=TEST_BODY,
                responses={404: {"description": "the topic or subscription does not exist"}},
            )


_register()
