"""The filter tester page: pick (or paste) an event and a subscription (or paste a filter being
written) and see whether it would be delivered, condition by condition.

The verdict is the API's ``POST .../eventSubscriptions/{s}:test`` called as the signed-in
principal, so the page shows exactly what the API and ``mlgrid eventgrid event-subscription
test`` answer, with the API's own permission checks. A plain GET form: it works without
script, and a verdict can be shared as a link.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from mlgrid.errors import MlgridError
from mlgrid.events.jsoncodec import dumps, loads_exact
from mlgrid.ui.api import ApiFailure, seg
from mlgrid.ui.common import page, session_of, ui_state
from mlgrid.ui.session import Session
from mlgrid.ui.stream import readable_topics

router = APIRouter(include_in_schema=False)

#: Recent events offered in the event picker.
RECENT_EVENTS = 40
#: Subscriptions listed per topic in the subscription picker.
SUBSCRIPTIONS_PER_TOPIC = 200


async def _subscription_choices(session: Session, topics: dict[str, Any]) -> list[dict[str, str]]:
    """``{"value": "kind/topic/name", "label": ...}`` for every subscription the principal may read."""
    choices: list[dict[str, str]] = []
    for topic in sorted(topics.values(), key=lambda t: (t.kind, t.name.lower())):
        kind = "topics" if topic.kind == "custom" else "systemTopics"
        try:
            items = await session.api.items(f"/{kind}/{seg(topic.name)}/eventSubscriptions",
                                            limit=SUBSCRIPTIONS_PER_TOPIC)
        except ApiFailure as exc:
            if exc.status == 403:
                continue
            raise
        for item in items:
            choices.append({"value": f"{kind}/{topic.name}/{item['name']}",
                            "label": f"{item['name']} (on {topic.name})"})
    return choices


def _json_object(text: str, what: str) -> tuple[dict[str, Any] | None, str | None]:
    """The pasted JSON object, or an error message naming what was pasted."""
    try:
        value = loads_exact(text)
    except MlgridError as exc:
        return None, f"The pasted {what} is not valid JSON: {exc.message}"
    if not isinstance(value, dict):
        return None, f"The pasted {what} must be a JSON object."
    return value, None


@router.get("/ui/filter-tester")
@page
async def filter_tester(
    request: Request,
    subscription: str = Query(""),
    event: str = Query(""),
    event_json: str = Query(""),
    filter_json: str = Query(""),
) -> Response:
    session = await session_of(request)
    state = ui_state(request)
    topics = await readable_topics(state.runtime, session.principal)
    recent = await state.activity.recent_events(set(topics), limit=RECENT_EVENTS)
    recent.reverse()  # newest first in the picker
    choices = await _subscription_choices(session, topics)
    verdict: dict[str, Any] | None = None
    problem: str | None = None
    tested_event: Any = None
    if subscription and (event or event_json.strip()):
        kind, _, rest = subscription.partition("/")
        topic_name, _, name = rest.rpartition("/")
        body: dict[str, Any] = {}
        if event_json.strip():
            tested_event, problem = _json_object(event_json, "event")
        elif event.isdigit():
            stored = await state.activity.event(int(event))
            if stored is None or stored.topic_key not in topics:
                problem = f"Event #{event} is not retained, or you may not read its topic."
            else:
                tested_event = loads_exact(stored.body)
        else:
            problem = "Pick an event or paste one."
        if problem is None and filter_json.strip():
            tried, problem = _json_object(filter_json, "filter")
            body["filter"] = tried
        if problem is None and kind in ("topics", "systemTopics") and topic_name and name:
            body["event"] = tested_event
            try:
                # Exact JSON (numbers digit for digit), as the API reads it.
                response = await session.api.call(
                    "POST", f"/{kind}/{seg(topic_name)}/eventSubscriptions/{seg(name)}:test",
                    content=dumps(body), content_type="application/json",
                )
                verdict = orjson.loads(response.content)
            except ApiFailure as exc:
                if exc.status == 401:
                    raise
                problem = f"{exc.code}: {exc.message}"
        elif problem is None:
            problem = "Pick a subscription."
    return state.render(
        "filter_tester.html", request=request, principal=session.principal, nav="filters",
        recent=recent, topics=topics, choices=choices, subscription=subscription, event=event,
        event_json=event_json, filter_json=filter_json, verdict=verdict, problem=problem,
        tested_event=dumps(tested_event).decode() if tested_event is not None else None,
    )
