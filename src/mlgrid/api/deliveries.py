"""Delivery routes of one event subscription: deliveries, dead letters, redelivery, replay.

Under every parent of subscriptions (``/topics/{t}``, ``/systemTopics/{ws}``,
``/workspaces/{ws}``), with ``eventSubscriptions`` or ``eventsubscriptions``:

* ``GET .../deliveries?state=pending|delivered|deadLettered|dropped`` (Reader and up);
* ``GET .../deadLetters`` (Reader and up);
* ``POST .../deadLetters/redeliver`` ``{"ids": [...]}`` (omit for every dead letter not
  redelivered yet; Contributor and up);
* ``POST .../replay`` ``{"from": ISO, "to": ISO}`` (Contributor and up);
* ``GET .../deliveries/{id}``: one delivery with ``attemptHistory`` (Reader and up);
* ``POST .../deliveries/{id}:deadLetter``: end a pending delivery now (Contributor and up).

Lists are oldest first and paged with ``top`` and the ``nextLink`` of the previous page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import Field

from mlgrid.api import paging
from mlgrid.api.deps import json_body, runtime
from mlgrid.api.docs import body_schema
from mlgrid.api.responses import ExactJSONResponse
from mlgrid.api.subscriptions import PARENT_KINDS, resolve_subscription
from mlgrid.auth.roles import Action
from mlgrid.body import DATE_TIME_SCHEMA, Body, Invalid, Missing, checker, parse
from mlgrid.delivery.dead_letter_record import format_time
from mlgrid.delivery.manage import MAX_REDELIVER_IDS, DeliveryManager
from mlgrid.domain.deliveries import DELIVERY_STATES, DeliveryState
from mlgrid.domain.records import AttemptRecord, DeadLetterRow, DeliveryRow
from mlgrid.errors import invalid
from mlgrid.events.jsoncodec import loads_exact
from mlgrid.events.timestamps import parse_timestamp

router = APIRouter(tags=["deliveries"])

PAGE_SIZE_MAX: Final = 1000


def _ids(value: object) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise Invalid("must be an array of dead-letter ids")
    if len(value) > MAX_REDELIVER_IDS:
        raise Invalid(f"at most {MAX_REDELIVER_IDS} ids per request")
    return list(dict.fromkeys(value))


class RedeliverBody(Body):
    """The optional body of ``:redeliver``: which dead letters (all when omitted)."""

    ids: Annotated[Any, *checker(_ids, {
        "type": ["array", "null"], "items": {"type": "string"}, "maxItems": MAX_REDELIVER_IDS,
        "description": "omit for all",
    })] = None

    @classmethod
    def object_reason(cls) -> str:
        return 'must be a JSON object {"ids": [...]}'

    @classmethod
    def unknown_reason(cls, known: list[str]) -> str:
        return "unknown field"


_INSTANT_REQUIRED = "is required (an ISO 8601 date-time)"


def _instant(value: object) -> datetime | None:
    if value is None:
        return None
    parsed = parse_timestamp(value) if isinstance(value, str) else None
    if parsed is None:
        raise Invalid(f"{value!r} is not an ISO 8601 date-time")
    return parsed


def _start(value: object) -> datetime:
    start = _instant(value)
    if start is None:
        raise Invalid(_INSTANT_REQUIRED)
    return start


class ReplayBody(Body):
    """The body of ``:replay``: the window of published events to deliver again. That ``to``
    (default: now) is not before ``from`` is checked by the route, which knows the time."""

    start: Annotated[Any, Field(alias="from"), Missing(_INSTANT_REQUIRED), *checker(_start, DATE_TIME_SCHEMA)]
    to: Annotated[Any, *checker(_instant, {
        "anyOf": [DATE_TIME_SCHEMA, {"type": "null"}], "description": "default or null: now",
    })] = None

    @classmethod
    def object_reason(cls) -> str:
        return 'must be a JSON object {"from": "...", "to": "..."}'

    @classmethod
    def unknown_reason(cls, known: list[str]) -> str:
        return "unknown field"


REDELIVER_BODY = body_schema(RedeliverBody, required=False)
REPLAY_BODY = body_schema(ReplayBody)

Handler = Callable[..., Awaitable[Response]]


def _manager(request: Request) -> DeliveryManager:
    manager: DeliveryManager = runtime(request).delivery.deliveries
    return manager


def _json(body: Any, status: int = 200) -> Response:
    return ExactJSONResponse(body, status_code=status)


def _time(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)


def _state(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    for state in DELIVERY_STATES:
        if state.lower() == value.lower():
            return state
    raise invalid("state", f"must be one of {', '.join(DELIVERY_STATES)}")


def delivery_json(row: DeliveryRow, event_id: str, event_type: str) -> dict[str, Any]:
    pending = row.state == DeliveryState.PENDING
    return {
        "id": row.id,
        "eventId": event_id,
        "eventType": event_type,
        "state": row.state,
        "deliveryAttempts": row.attempts,
        "lastDeliveryOutcome": row.last_outcome,
        "lastHttpStatusCode": row.last_http_status,
        "lastError": row.last_error,
        "lastDeliveryAttemptTime": _time(row.last_attempt_at),
        "nextAttemptTime": _time(row.next_attempt_at) if pending else None,
        "lockedUntil": _time(row.lease_until) if pending and row.lock_token else None,
        "createdTime": _time(row.created_at),
        "finishedTime": _time(row.finished_at),
        "reason": row.final_reason,
    }


def dead_letter_json(row: DeadLetterRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "eventId": row.event_id,
        "deadLetterReason": row.reason,
        "deliveryId": row.delivery_id,
        "blobPath": row.blob_path,
        "deadLetteredTime": _time(row.created_at),
        "redeliveredTime": _time(row.redelivered_at),
        "record": loads_exact(row.record),
    }


def _list_deliveries(kind: str) -> Handler:
    async def list_deliveries(
        parent: str,
        subscription: str,
        request: Request,
        state: str | None = Query(None, description="pending, delivered, deadLettered or dropped"),
        top: int = Query(100, ge=1, le=PAGE_SIZE_MAX, description="page size"),
        skipToken: str | None = Query(None, description="paging token from nextLink"),
    ) -> Response:
        _, sub = await resolve_subscription(request, kind, parent, subscription, Action.READ_SUBSCRIPTIONS)
        wanted = _state(state)
        after = paging.integer(skipToken) or 0
        rows = await _manager(request).deliveries(sub, wanted, after, top + 1)
        body: dict[str, Any] = {"value": [delivery_json(*r) for r in rows[:top]]}
        if len(rows) > top:
            body["nextLink"] = paging.next_link(request, paging.encode(rows[top - 1][0].id))
        return _json(body)

    return list_deliveries


def attempt_json(record: AttemptRecord) -> dict[str, Any]:
    response = loads_exact(record.response) if record.response else None
    return {
        "attempt": record.attempt,
        "outcome": record.outcome,
        "httpStatusCode": record.http_status,
        "error": record.error,
        "time": _time(datetime.fromtimestamp(record.attempted_at, tz=UTC)),
        "durationMs": record.duration_ms,
        "response": response,
    }


def _delivery_id(value: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise invalid("deliveryId", "must be a delivery's number (the id in the deliveries list)")
    return int(value)


def _get_delivery(kind: str) -> Handler:
    async def get_delivery(parent: str, subscription: str, delivery: str, request: Request) -> Response:
        _, sub = await resolve_subscription(request, kind, parent, subscription, Action.READ_SUBSCRIPTIONS)
        row, event_id, event_type, history = await _manager(request).delivery(sub, _delivery_id(delivery))
        body = delivery_json(row, event_id, event_type)
        body["attemptHistory"] = [attempt_json(a) for a in history]
        return _json(body)

    return get_delivery


def _dead_letter_now(kind: str) -> Handler:
    async def dead_letter_delivery(
        parent: str, subscription: str, delivery: str, request: Request
    ) -> Response:
        _, sub = await resolve_subscription(request, kind, parent, subscription, Action.MANAGE_SUBSCRIPTIONS)
        manager = _manager(request)
        delivery_id = _delivery_id(delivery)
        await manager.dead_letter_now(sub, delivery_id)
        row, event_id, event_type, history = await manager.delivery(sub, delivery_id)
        body = delivery_json(row, event_id, event_type)
        body["attemptHistory"] = [attempt_json(a) for a in history]
        return _json(body)

    return dead_letter_delivery


def _list_dead_letters(kind: str) -> Handler:
    async def list_dead_letters(
        parent: str,
        subscription: str,
        request: Request,
        top: int = Query(100, ge=1, le=PAGE_SIZE_MAX, description="page size"),
        skipToken: str | None = Query(None, description="paging token from nextLink"),
    ) -> Response:
        _, sub = await resolve_subscription(request, kind, parent, subscription, Action.READ_SUBSCRIPTIONS)
        after = paging.time_and_text(skipToken)
        rows = await _manager(request).dead_letter_page(sub, after, top + 1)
        body: dict[str, Any] = {"value": [dead_letter_json(r) for r in rows[:top]]}
        if len(rows) > top:
            last = rows[top - 1]
            body["nextLink"] = paging.next_link(request, paging.encode(last.created_at.timestamp(), last.id))
        return _json(body)

    return list_dead_letters


def _redeliver(kind: str) -> Handler:
    async def redeliver_dead_letters(parent: str, subscription: str, request: Request) -> Response:
        _, sub = await resolve_subscription(request, kind, parent, subscription, Action.MANAGE_SUBSCRIPTIONS)
        body = await json_body(request, required=False)
        ids: list[str] | None = None if body is None else parse(RedeliverBody, body).ids
        result = await _manager(request).redeliver(sub, ids)
        return _json(
            {
                "value": [
                    {"id": dead_letter, "eventId": event_id, "deliveryId": delivery}
                    for dead_letter, event_id, delivery in result.redelivered
                ],
                "notRetained": result.not_retained,
                "unknownIds": result.unknown,
            }
        )

    return redeliver_dead_letters


def _replay(kind: str) -> Handler:
    async def replay_events(parent: str, subscription: str, request: Request) -> Response:
        _, sub = await resolve_subscription(request, kind, parent, subscription, Action.MANAGE_SUBSCRIPTIONS)
        body = parse(ReplayBody, await json_body(request))
        start: datetime = body.start
        end: datetime = body.to or datetime.now(UTC)
        if end < start:
            raise invalid("to", "must not be before from")
        result = await _manager(request).replay(sub, start, end)
        return _json(
            {
                "from": format_time(start),
                "to": format_time(end),
                "examinedEvents": result.examined,
                "replayedEvents": result.replayed,
            }
        )

    return replay_events


_LABELS = {"topics": "a custom topic", "systemTopics": "a system topic", "workspaces": "a workspace"}


def _register() -> None:
    for kind in PARENT_KINDS:
        label = _LABELS[kind]
        for segment in ("eventSubscriptions", "eventsubscriptions"):
            item = f"/{kind}/{{parent}}/{segment}/{{subscription}}"
            common: dict[str, Any] = {
                "include_in_schema": segment == "eventSubscriptions",
                "response_class": Response,
            }
            router.add_api_route(
                f"{item}/deliveries", _list_deliveries(kind), methods=["GET"],
                summary=f"List the deliveries of an event subscription on {label}, by state", **common,
            )
            router.add_api_route(
                f"{item}/deliveries/{{delivery}}", _get_delivery(kind), methods=["GET"],
                summary="Read one delivery with the history of its attempts (attemptHistory)", **common,
            )
            router.add_api_route(
                f"{item}/deliveries/{{delivery}}:deadLetter", _dead_letter_now(kind), methods=["POST"],
                summary="End a pending delivery now: dead-lettered (DeadLetteredByOperator), or dropped "
                "without a dead-letter destination",
                **common,
            )
            router.add_api_route(
                f"{item}/deadLetters", _list_dead_letters(kind), methods=["GET"],
                summary=f"List the dead letters of an event subscription on {label}", **common,
            )
            router.add_api_route(
                f"{item}/deadLetters/redeliver", _redeliver(kind), methods=["POST"],
                openapi_extra=REDELIVER_BODY,
                summary="Queue dead letters again as new deliveries (all not yet redelivered, or by id)",
                **common,
            )
            router.add_api_route(
                f"{item}/replay", _replay(kind), methods=["POST"], openapi_extra=REPLAY_BODY,
                summary="Deliver the retained events of a time window again to this subscription",
                **common,
            )


_register()
