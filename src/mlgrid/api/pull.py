"""Pull delivery routes (SPEC §7), shaped for ``azure-eventgrid``'s ``EventGridConsumerClient``.

``POST /topics/{t}/eventsubscriptions/{s}:receive?maxEvents=1..100&maxWaitTime=0..120`` and
``:acknowledge``, ``:release?releaseDelayInSeconds=0|10|60|600|3600``, ``:reject``,
``:renewLock`` with ``{"lockTokens": [...]}``. The same under ``/systemTopics/{ws}`` and
``/workspaces/{ws}``, with ``eventsubscriptions`` or ``eventSubscriptions``. The SDK's
``api-version`` query parameter is accepted and ignored.

Credentials are those of publishing (``api.publish.authenticate_data_plane``): a topic key
(``aeg-sas-key``, ``Authorization: SharedAccessKey``), a SAS token for the topic, or a bearer
token whose principal may receive (DataReceiver, or Reader and above).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mlgrid.api.deps import json_body, runtime
from mlgrid.api.docs import body_schema
from mlgrid.api.publish import authenticate_data_plane
from mlgrid.api.responses import ExactJSONResponse
from mlgrid.api.subscriptions import PARENT_KINDS
from mlgrid.auth.roles import Action
from mlgrid.broker.subscriptions import SubscriptionService
from mlgrid.delivery.pull import (
    MAX_EVENTS_PER_RECEIVE,
    MAX_WAIT_SECONDS,
    RELEASE_DELAYS,
    LockTokensBody,
    PullService,
    parse_lock_tokens,
)
from mlgrid.domain.subscription import Subscription
from mlgrid.errors import NotFound, invalid
from mlgrid.tracing import SpanKind

router = APIRouter(tags=["pull delivery"])

DEFAULT_MAX_WAIT_SECONDS: Final = 60
LOCK_TOKENS_BODY = body_schema(LockTokensBody)
Handler = Callable[..., Awaitable[Response]]


def _json(body: Any) -> Response:
    return ExactJSONResponse(body, status_code=200)


def _pull(request: Request) -> PullService:
    service: PullService = runtime(request).delivery.pull
    return service


async def _resolve(request: Request, kind: str, parent: str, name: str) -> Subscription:
    """Find the topic, check the caller's credential for receiving, find the subscription."""
    rt = runtime(request)
    topic_kind = "custom" if kind == "topics" else "system"
    try:
        topic, keys = await rt.topics.keys(parent, topic_kind)
    except NotFound:
        label = {"topics": "topic", "systemTopics": "system topic", "workspaces": "workspace"}[kind]
        raise NotFound(f"{label} {parent!r} does not exist") from None
    paths = (f"/topics/{topic.name}",) if topic.kind == "custom" else (
        f"/systemTopics/{topic.name}",
        f"/workspaces/{topic.name}",
    )
    await authenticate_data_plane(request, topic, keys, Action.RECEIVE, paths)
    service: SubscriptionService = rt.subscriptions
    return await service.find(topic, name)


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(name, f"{raw!r} is not an integer") from None
    if not low <= value <= high:
        raise invalid(name, f"must be from {low} to {high}")
    return value


def _receive(kind: str) -> Handler:
    async def receive(parent: str, subscription: str, request: Request) -> Response:
        max_events = _int_param(request, "maxEvents", 1, 1, MAX_EVENTS_PER_RECEIVE)
        max_wait = _int_param(request, "maxWaitTime", DEFAULT_MAX_WAIT_SECONDS, 0, MAX_WAIT_SECONDS)
        sub = await _resolve(request, kind, parent, subscription)
        tracing = runtime(request).tracing
        # One span per receive, linked to each received event's trace (the pull counterpart of
        # a push delivery attempt's span).
        with tracing.span(f"receive {sub.name}", kind=SpanKind.CONSUMER,
                          attributes={"mlgrid.subscription": sub.name, "mlgrid.topic": parent}) as span:
            received = await _pull(request).receive(sub, max_events, max_wait, gone=request.is_disconnected)
            span.set_attribute("messaging.batch.message_count", len(received))
            contexts = (tracing.extract(r.event) or tracing.parse(r.traceparent) for r in received)
            tracing.add_links(span, contexts)
        return _json({"value": [r.as_json() for r in received]})

    return receive


def _acknowledge(kind: str) -> Handler:
    async def acknowledge(parent: str, subscription: str, request: Request) -> Response:
        sub = await _resolve(request, kind, parent, subscription)
        tokens = parse_lock_tokens(await json_body(request))
        return _json((await _pull(request).acknowledge(sub, tokens)).as_json())

    return acknowledge


def _release(kind: str) -> Handler:
    async def release(parent: str, subscription: str, request: Request) -> Response:
        raw = request.query_params.get("releaseDelayInSeconds")
        delay = 0
        if raw not in (None, ""):
            try:
                delay = int(str(raw))
            except ValueError:
                delay = -1
            if delay not in RELEASE_DELAYS:
                raise invalid("releaseDelayInSeconds", "must be one of 0, 10, 60, 600 or 3600")
        sub = await _resolve(request, kind, parent, subscription)
        tokens = parse_lock_tokens(await json_body(request))
        return _json((await _pull(request).release(sub, tokens, delay)).as_json())

    return release


def _reject(kind: str) -> Handler:
    async def reject(parent: str, subscription: str, request: Request) -> Response:
        sub = await _resolve(request, kind, parent, subscription)
        tokens = parse_lock_tokens(await json_body(request))
        return _json((await _pull(request).reject(sub, tokens)).as_json())

    return reject


def _renew(kind: str) -> Handler:
    async def renew_lock(parent: str, subscription: str, request: Request) -> Response:
        sub = await _resolve(request, kind, parent, subscription)
        tokens = parse_lock_tokens(await json_body(request))
        return _json((await _pull(request).renew_locks(sub, tokens)).as_json())

    return renew_lock


_OPERATIONS: tuple[tuple[str, Callable[[str], Handler], str, bool], ...] = (
    ("receive", _receive, "Receive events under a lock (long poll up to maxWaitTime seconds)", False),
    ("acknowledge", _acknowledge, "Acknowledge received events: they are delivered", True),
    ("release", _release, "Release received events so they can be received again", True),
    ("reject", _reject, "Reject received events: they are dead-lettered (or dropped)", True),
    ("renewLock", _renew, "Renew the locks of received events", True),
)


def _register() -> None:
    for kind in PARENT_KINDS:
        for segment in ("eventsubscriptions", "eventSubscriptions"):
            for operation, factory, summary, has_body in _OPERATIONS:
                router.add_api_route(
                    f"/{kind}/{{parent}}/{segment}/{{subscription}}:{operation}",
                    factory(kind),
                    methods=["POST"],
                    summary=summary,
                    response_class=Response,
                    include_in_schema=segment == "eventsubscriptions",
                    openapi_extra=LOCK_TOKENS_BODY if has_body else None,
                )


_register()
