"""Broker pages: topics and their subscriptions with delivery health, one subscription,
dead letters with redelivery, and the viewer of a ``Queue`` subscription.

Lists and resources come from the REST API as the signed-in principal; delivery health
(counts, last failure, circuit) from ``ui.health`` after the API's permission check.
``kind`` in these paths is the API's first segment: ``topics`` or ``systemTopics``
(``workspaces`` is accepted as the alias it is in the API).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.datastructures import FormData

from mlgrid.broker.topics import Topic
from mlgrid.errors import NotFound
from mlgrid.runtime import Runtime
from mlgrid.ui.api import ApiFailure, seg
from mlgrid.ui.common import page, session_of, ui_state
from mlgrid.ui.health import DeliveryHealth, subscription_health, subscription_id
from mlgrid.ui.session import CrossSiteRequest, LoginRequired, Session, check_same_origin
from mlgrid.ui.stream import queue_viewer

router = APIRouter(include_in_schema=False)

KINDS = {"topics": "custom", "systemTopics": "system", "workspaces": "system"}
DEAD_LETTERS_SHOWN = 200


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise NotFound(f"unknown topic kind {kind!r}: use topics or systemTopics")
    return "systemTopics" if kind == "workspaces" else kind


async def _topic(rt: Runtime, kind: str, name: str) -> Topic:
    return await rt.topics.get(name, KINDS[kind])


def _base(kind: str, parent: str, name: str) -> str:
    return f"/{kind}/{seg(parent)}/eventSubscriptions/{seg(name)}"


def _ui_path(kind: str, parent: str, name: str) -> str:
    return f"/ui/subscriptions/{kind}/{seg(parent)}/{seg(name)}"


async def _subscriptions_of(session: Session, kind: str, name: str) -> list[dict[str, Any]] | None:
    """The topic's subscriptions, or ``None`` when the principal may not list them."""
    try:
        items: list[dict[str, Any]] = await session.api.items(f"/{kind}/{seg(name)}/eventSubscriptions")
    except ApiFailure as exc:
        if exc.status == 403:
            return None
        raise
    return items


async def _topic_listing(request: Request, session: Session) -> list[dict[str, Any]]:
    rt = ui_state(request).runtime
    listing: list[dict[str, Any]] = []
    for kind, path in (("systemTopics", "/systemTopics"), ("topics", "/topics")):
        for resource in await session.api.items(path):
            topic = await _topic(rt, kind, resource["name"])
            subs = await _subscriptions_of(session, kind, resource["name"])
            entries = []
            for sub in subs or []:
                health = await subscription_health(
                    rt, ui_state(request).activity, session.principal, topic, sub["name"]
                )
                entries.append({"resource": sub, "health": health})
            listing.append(
                {"kind": kind, "resource": resource, "subscriptions": entries, "denied": subs is None}
            )
    return listing


@router.get("/ui/topics")
@page
async def topics_page(request: Request) -> Response:
    session = await session_of(request)
    listing = await _topic_listing(request, session)
    return ui_state(request).render(
        "topics.html", request=request, principal=session.principal, nav="topics", listing=listing
    )


@router.get("/ui/subscriptions/{kind}/{parent}/{name}")
@page
async def subscription_page(request: Request, kind: str, parent: str, name: str) -> Response:
    session = await session_of(request)
    state = ui_state(request)
    kind = _kind(kind)
    resource = await session.api.get(_base(kind, parent, name))
    topic = await _topic(state.runtime, kind, parent)
    health: DeliveryHealth = await subscription_health(
        state.runtime, state.activity, session.principal, topic, name
    )
    internal_id = await subscription_id(state.runtime, topic, name)
    recent = await state.activity.recent_deliveries(internal_id, 25)
    path = _base(kind, parent, name) + "/deadLetters"
    dead_letters = await session.api.items(path, limit=DEAD_LETTERS_SHOWN)
    dead_letters.reverse()
    return state.render(
        "subscription.html", request=request, principal=session.principal, nav="topics",
        kind=kind, parent=topic.name, topic=topic, sub=resource, health=health, recent=recent,
        dead_letters=dead_letters, ui_path=_ui_path(kind, topic.name, resource["name"]),
    )


def _selected_ids(form: FormData) -> list[str]:
    return [str(v) for v in form.getlist("id") if str(v).strip()]


@router.post("/ui/subscriptions/{kind}/{parent}/{name}/redeliver")
@page
async def redeliver(request: Request, kind: str, parent: str, name: str) -> Response:
    session = await session_of(request)
    check_same_origin(request)
    kind = _kind(kind)
    form = await request.form()
    ids = _selected_ids(form)
    everything = form.get("all") == "1"
    if not ids and not everything:
        notice = "Choose the dead letters to redeliver."
    else:
        body = await session.api.post(
            _base(kind, parent, name) + "/deadLetters/redeliver", json=None if everything else {"ids": ids}
        )
        queued = len(body.get("value", []))
        gone = len(body.get("notRetained", []))
        notice = f"Queued {queued} dead letter(s) for delivery again."
        if gone:
            notice += f" {gone} could not be: their events are no longer retained."
    back = str(form.get("back") or "")
    target = back if back.startswith("/ui/") else _ui_path(kind, parent, name)
    separator = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{separator}notice={quote(notice)}", status_code=303)


@router.post("/ui/subscriptions/{kind}/{parent}/{name}/deadletter")
@page
async def dead_letter_now(request: Request, kind: str, parent: str, name: str) -> Response:
    """End one pending delivery now (the API's ``:deadLetter``), after the page's confirmation."""
    session = await session_of(request)
    check_same_origin(request)
    kind = _kind(kind)
    form = await request.form()
    delivery = str(form.get("delivery") or "").strip()
    if not delivery.isdigit():
        notice = "Choose the delivery to dead-letter."
    else:
        body = await session.api.post(_base(kind, parent, name) + f"/deliveries/{delivery}:deadLetter")
        notice = f"Delivery {delivery} ended {body.get('state')} ({body.get('reason')})."
    back = str(form.get("back") or "")
    target = back if back.startswith("/ui/") else _ui_path(kind, parent, name)
    separator = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{separator}notice={quote(notice)}", status_code=303)


@router.get("/ui/deadletters")
@page
async def dead_letters_page(request: Request) -> Response:
    session = await session_of(request)
    state = ui_state(request)
    groups = []
    for entry in await _topic_listing(request, session):
        for sub in entry["subscriptions"]:
            health: DeliveryHealth = sub["health"]
            if not health.dead_letters:
                continue
            name = sub["resource"]["name"]
            path = _base(entry["kind"], entry["resource"]["name"], name) + "/deadLetters"
            items = await session.api.items(path, limit=DEAD_LETTERS_SHOWN)
            items.reverse()
            groups.append({
                "kind": entry["kind"], "topic": entry["resource"]["name"], "name": name,
                "count": health.dead_letters, "items": items,
                "ui_path": _ui_path(entry["kind"], entry["resource"]["name"], name),
            })
    return state.render(
        "deadletters.html", request=request, principal=session.principal, nav="deadletters", groups=groups
    )


@router.get("/ui/viewer/{kind}/{parent}/{name}")
@page
async def viewer_page(request: Request, kind: str, parent: str, name: str) -> Response:
    session = await session_of(request)
    kind = _kind(kind)
    resource = await session.api.get(_base(kind, parent, name))
    endpoint_type = resource.get("properties", {}).get("destination", {}).get("endpointType")
    return ui_state(request).render(
        "viewer.html", request=request, principal=session.principal, nav="topics", kind=kind, parent=parent,
        sub=resource, endpoint_type=endpoint_type, ui_path=_ui_path(kind, parent, resource["name"]),
        stream=f"/ui/viewer/{kind}/{seg(parent)}/{seg(resource['name'])}/stream",
    )


@router.post("/ui/viewer/{kind}/{parent}/{name}/stream")
async def viewer_stream(request: Request, kind: str, parent: str, name: str) -> Response:
    """Receive and acknowledge (consume) the queue's events, streamed to the page as they come.

    A POST, started by the page's explicit "Receive and acknowledge" button and refused from
    another origin: consuming changes state, so a GET (a link, an image, a prefetch) never may."""
    state = ui_state(request)
    try:
        session = await session_of(request)
        check_same_origin(request)
    except LoginRequired:
        return Response("sign in first", status_code=401, media_type="text/plain")
    except CrossSiteRequest:
        return Response("cross-site request refused", status_code=403, media_type="text/plain")
    if kind not in KINDS:
        return Response("unknown topic kind", status_code=404, media_type="text/plain")
    events = queue_viewer(state.queues, session.api, _kind(kind), parent, name)
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-store"})
