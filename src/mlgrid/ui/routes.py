"""The web UI's routes: sign-in, the live event stream at ``/`` and the event detail view.

The broker pages (topics, subscriptions, dead letters, queue viewer) are in ``pages_broker``,
the workspace pages (runs, models, endpoints, drift monitors) in ``pages_workspace``; this
router includes both. None of them is part of the OpenAPI document, and all of them answer
404 when the server runs with ``--no-ui`` (the ``ui_state`` dependency).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from mlgrid.api.topics import scope_of
from mlgrid.auth.roles import Action
from mlgrid.errors import NotFound
from mlgrid.events.ml import ML_EVENT_TYPES
from mlgrid.ui import pages_broker, pages_catalog, pages_filters, pages_workspace
from mlgrid.ui.common import page, session_of, ui_state
from mlgrid.ui.session import (
    CrossSiteRequest,
    LoginRequired,
    check_same_origin,
    clear_token_cookie,
    safe_next,
    set_token_cookie,
)
from mlgrid.ui.stream import StreamFilter, live_events, readable_topics

router = APIRouter(include_in_schema=False, dependencies=[Depends(ui_state)])

SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


@router.get("/ui/login")
async def login_form(request: Request, next: str = Query("/")) -> Response:
    return ui_state(request).render("login.html", request=request, next=safe_next(next), error=None)


@router.post("/ui/login")
async def login(request: Request, token: str = Form(""), next: str = Form("/")) -> Response:
    state = ui_state(request)
    target = safe_next(next)
    try:
        check_same_origin(request)
    except CrossSiteRequest:
        return Response("cross-site sign-in refused", status_code=403, media_type="text/plain")
    principal = await state.runtime.access.principal_for_token(token.strip()) if token.strip() else None
    if principal is None:
        return state.render(
            "login.html", request=request, next=target, status_code=401,
            error="That token is not valid. Use a principal's token, e.g. the admin token in "
            "<data-dir>/admin.token.",
        )
    response = RedirectResponse(target, status_code=303)
    set_token_cookie(response, request, token.strip())
    return response


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    clear_token_cookie(response)
    return response


@router.get("/")
@page
async def live_page(
    request: Request,
    topic: str = Query(""),
    type: str = Query(""),
    subject: str = Query(""),
) -> Response:
    session = await session_of(request)
    state = ui_state(request)
    topics = await readable_topics(state.runtime, session.principal)
    return state.render(
        "live.html", request=request, principal=session.principal, nav="live",
        topics=sorted(topics.values(), key=lambda t: (t.kind, t.name.lower())),
        topic=topic, type=type, subject=subject, known_types=ML_EVENT_TYPES,
    )


@router.get("/ui/stream")
async def stream(
    request: Request,
    topic: str = Query(""),
    type: str = Query(""),
    subject: str = Query(""),
    after: int | None = Query(None, ge=0),
) -> Response:
    state = ui_state(request)
    try:
        session = await session_of(request)
    except LoginRequired:
        return Response("sign in first", status_code=401, media_type="text/plain")
    last_event_id = request.headers.get("last-event-id", "")
    last_seq = int(last_event_id) if last_event_id.isdigit() else after
    events = live_events(
        state.runtime, state.feed, state.activity, session.principal,
        StreamFilter.from_query(topic, type, subject), last_seq,
    )
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


#: Events one request of the live page may ask delivery states for.
MAX_STATE_QUERY = 200


@router.get("/ui/delivery-states")
async def delivery_states(request: Request, seq: list[int] = Query(default_factory=list)) -> Response:
    """The live page's delivery-state column: per event, its deliveries counted by state.

    Answered only for events of topics whose subscriptions the principal may read (as the
    event page's list of deliveries); other events are left out of the answer.
    """
    state = ui_state(request)
    try:
        session = await session_of(request)
    except LoginRequired:
        return Response("sign in first", status_code=401, media_type="text/plain")
    rt = state.runtime
    found = await state.activity.delivery_states(seq[:MAX_STATE_QUERY])
    allowed: dict[str, bool] = {}
    answer: dict[str, dict[str, int]] = {}
    for event_seq, (topic_key, counts) in found.items():
        if topic_key not in allowed:
            topic = await rt.topics.find(topic_key)
            allowed[topic_key] = topic is not None and await rt.access.allowed(
                session.principal, scope_of(topic), Action.READ_SUBSCRIPTIONS
            )
        if allowed[topic_key]:
            answer[str(event_seq)] = counts
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})


@router.get("/ui/events/{seq}")
@page
async def event_page(request: Request, seq: int) -> Response:
    session = await session_of(request)
    state = ui_state(request)
    rt = state.runtime
    stored = await state.activity.event(seq)
    topic = None if stored is None else await rt.topics.find(stored.topic_key)
    if stored is None or topic is None:
        raise NotFound(f"event {seq} is not retained (any more)")
    await rt.access.require(session.principal, scope_of(topic), Action.READ_EVENTS)
    deliveries: list[dict[str, Any]] = []
    may_read = await rt.access.allowed(session.principal, scope_of(topic), Action.READ_SUBSCRIPTIONS)
    if may_read:
        rows = await state.activity.deliveries_of_event(seq)
        waiting = await state.activity.waiting_dead_letters([r.id for r in rows if r.state == "deadLettered"])
        histories = await state.activity.attempt_histories([r.id for r in rows])
        for row in rows:
            sub = await rt.subscriptions.get_by_id(row.subscription_id)
            response = orjson.loads(row.last_response) if row.last_response else None
            attempts = [
                {"record": a, "when": datetime.fromtimestamp(a.attempted_at, tz=UTC),
                 "response": orjson.loads(a.response) if a.response else None}
                for a in histories.get(row.id, [])
            ]
            deliveries.append({"row": row, "subscription": sub.name if sub is not None else None,
                               "response": response, "dead_letter_id": waiting.get(row.id),
                               "attempts": attempts})
    parent = "topics" if topic.kind == "custom" else "systemTopics"
    return state.render(
        "event.html", request=request, principal=session.principal, nav="live",
        stored=stored, topic=topic, parent=parent, deliveries=deliveries, may_read_subscriptions=may_read,
    )


router.include_router(pages_broker.router)
router.include_router(pages_filters.router)
router.include_router(pages_catalog.router)
router.include_router(pages_workspace.router)
