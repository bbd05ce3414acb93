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
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ConfigDict, WithJsonSchema

from mlgrid.api.deps import json_body
from mlgrid.api.docs import body_schema
from mlgrid.api.subscriptions import PARENT_KINDS, resolve_subscription
from mlgrid.auth.roles import Action
from mlgrid.body import Body, Invalid, Missing, checker, openapi_schema, parse
from mlgrid.events.jsoncodec import dumps
from mlgrid.filters import filter_to_json, parse_filter
from mlgrid.filters.explain import explain
from mlgrid.filters.parse import FilterBody

router = APIRouter(tags=["event subscriptions"])

_EVENT_REASON = "must be an event object"


def _event(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(_EVENT_REASON)
    return value


class FilterTestBody(Body):
    """The body of ``:test``. The filter is parsed by the route, against the subscription's
    input schema; other members are ignored, as they always were."""

    model_config = ConfigDict(extra="ignore")

    event: Annotated[Any, Missing(_EVENT_REASON), *checker(_event, {
        "type": "object", "description": "the event, in the schema the topic stores",
    })]
    # Validated by ``parse_filter`` once the subscription's input schema is known.
    filter: Annotated[Any, WithJsonSchema({
        "anyOf": [openapi_schema(FilterBody), {"type": "null"}],
        "description": "a filter to try instead of the subscription's (null: the subscription's)",
    })] = None

    @classmethod
    def object_reason(cls) -> str:
        return "must be an object with an event"


TEST_BODY = body_schema(FilterTestBody)
Handler = Callable[..., Awaitable[Response]]


def _test(kind: str) -> Handler:
    async def test_event_subscription_filter(parent: str, subscription: str, request: Request) -> Response:
        _, sub = await resolve_subscription(request, kind, parent, subscription, Action.READ_SUBSCRIPTIONS)
        body = parse(FilterTestBody, await json_body(request))
        event_filter = sub.event_filter
        if body.filter is not None:
            event_filter = parse_filter(body.filter, input_schema=sub.input_schema, field_prefix="filter")
        verdict = explain(event_filter, body.event, sub.stored_schema)
        answer: dict[str, Any] = {
            "subscription": sub.name,
            "filter": filter_to_json(event_filter),
            "filterSource": "request" if body.filter is not None else "subscription",
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
