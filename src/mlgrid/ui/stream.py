"""Server-sent event streams of the web UI.

* ``live_events`` — the live event list at ``/``: the latest retained events of the topics
  the viewer may read (``READ_EVENTS``, as ``GET /topics/{t}/events``), then every new one as
  the shared :class:`~mlgrid.ui.feed.EventFeed` sees it, filtered by topic, type and subject.
  Each message carries the event's sequence number as its SSE id, so a reconnecting browser
  (``Last-Event-ID``) continues where it stopped instead of starting over.
* ``queue_viewer`` — the viewer of a ``Queue`` subscription: receives events through the pull
  API as the signed-in principal (``RECEIVE``), shows them, acknowledges them. This is the
  destination ``mlgrid demo`` subscribes the UI with.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from mlgrid.api.topics import scope_of
from mlgrid.auth.roles import Action, Principal
from mlgrid.broker.activity import ActivityService, FeedRow
from mlgrid.broker.topics import Topic
from mlgrid.events.timestamps import format_timestamp
from mlgrid.runtime import Runtime
from mlgrid.ui.api import ApiFailure, ApiSession, seg
from mlgrid.ui.feed import EventFeed

BACKLOG = 50
CATCH_UP_LIMIT = 500
KEEPALIVE_SECONDS = 10.0
VISIBILITY_SECONDS = 5.0
RECEIVE_WAIT_SECONDS = 10
RECEIVE_BATCH = 25
RECENT_PER_QUEUE = 100


def sse(data: Any, *, event: str | None = None, event_id: str | None = None) -> bytes:
    """One server-sent event; ``data`` is sent as one line of JSON."""
    head = ""
    if event:
        head += f"event: {event}\n"
    if event_id:
        head += f"id: {event_id}\n"
    return head.encode() + b"data: " + orjson.dumps(data) + b"\n\n"


KEEPALIVE = b": keep-alive\n\n"
RETRY = b"retry: 1000\n\n"


@dataclass(frozen=True)
class StreamFilter:
    """What the viewer asked for: one topic (by key), a type substring, a subject prefix."""

    topic_key: str | None = None
    type_contains: str | None = None
    subject_prefix: str | None = None

    @classmethod
    def from_query(cls, topic: str | None, event_type: str | None, subject: str | None) -> StreamFilter:
        return cls(
            (topic or "").strip().lower() or None,
            (event_type or "").strip() or None,
            (subject or "").strip() or None,
        )

    def matches(self, row: FeedRow) -> bool:
        if self.topic_key is not None and row.topic_key != self.topic_key:
            return False
        if self.type_contains and self.type_contains.lower() not in row.event_type.lower():
            return False
        return not (self.subject_prefix and not row.subject.lower().startswith(self.subject_prefix.lower()))


async def readable_topics(rt: Runtime, principal: Principal) -> dict[str, Topic]:
    """Custom and system topics whose events the principal may read, by topic key."""
    found: dict[str, Topic] = {}
    for kind in ("custom", "system"):
        for topic in await rt.topics.list(kind):
            if await rt.access.allowed(principal, scope_of(topic), Action.READ_EVENTS):
                found[topic.key] = topic
    return found


def event_summary(row: FeedRow, topic: Topic | None) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "topic": topic.name if topic is not None else row.topic_key,
        "topicKind": topic.kind if topic is not None else "",
        "id": row.event_id,
        "type": row.event_type,
        "subject": row.subject,
        "time": format_timestamp(row.published_at),
        "url": f"/ui/events/{row.seq}",
    }


async def live_events(
    rt: Runtime,
    feed: EventFeed,
    activity: ActivityService,
    principal: Principal,
    wanted: StreamFilter,
    last_seq: int | None,
) -> AsyncIterator[bytes]:
    topics = await readable_topics(rt, principal)
    checked_at = time.monotonic()
    viewer = await feed.join()
    try:
        yield RETRY
        keys = set(topics) if wanted.topic_key is None else set(topics) & {wanted.topic_key}
        if last_seq is None:
            rows = await activity.recent_events(
                keys, type_contains=wanted.type_contains, subject_prefix=wanted.subject_prefix, limit=BACKLOG,
            )
        else:
            rows = await activity.recent_events(
                keys, type_contains=wanted.type_contains, subject_prefix=wanted.subject_prefix,
                after_seq=last_seq, limit=CATCH_UP_LIMIT,
            )
        sent: deque[int] = deque(maxlen=4 * CATCH_UP_LIMIT)
        for row in rows:
            sent.append(row.seq)
            yield sse(event_summary(row, topics.get(row.topic_key)), event="event", event_id=str(row.seq))
        yield sse({"backlog": len(rows)}, event="ready")
        while True:
            update = await viewer.next(KEEPALIVE_SECONDS)
            if time.monotonic() - checked_at > VISIBILITY_SECONDS:
                topics = await readable_topics(rt, principal)
                checked_at = time.monotonic()
            if update is None:
                yield KEEPALIVE
                continue
            if update.skipped or viewer.overflowed:
                viewer.overflowed = False
                yield sse({"reason": "the stream skipped events to keep up"}, event="skipped")
            for row in update.rows:
                if row.topic_key not in topics or not wanted.matches(row) or row.seq in sent:
                    continue
                sent.append(row.seq)
                yield sse(event_summary(row, topics.get(row.topic_key)), event="event", event_id=str(row.seq))
    finally:
        feed.leave(viewer)


class QueueViewers:
    """The events each queue viewer showed recently, so reopening the page shows them again."""

    def __init__(self) -> None:
        self._recent: dict[str, deque[dict[str, Any]]] = {}

    def recent(self, key: str) -> list[dict[str, Any]]:
        return list(self._recent.get(key, ()))

    def remember(self, key: str, item: dict[str, Any]) -> None:
        self._recent.setdefault(key, deque(maxlen=RECENT_PER_QUEUE)).append(item)


def queue_key(kind: str, parent: str, name: str) -> str:
    return f"{kind}/{parent.lower()}/{name.lower()}"


def viewer_item(received: dict[str, Any]) -> dict[str, Any]:
    """What the viewer shows of one received event (Event Grid or CloudEvents schema)."""
    event = received.get("event") or {}
    broker = received.get("brokerProperties") or {}
    return {
        "id": event.get("id"),
        "type": event.get("eventType") or event.get("type"),
        "subject": event.get("subject"),
        "time": event.get("eventTime") or event.get("time"),
        "deliveryCount": broker.get("deliveryCount"),
        "event": event,
    }


async def queue_viewer(
    viewers: QueueViewers, api: ApiSession, kind: str, parent: str, name: str
) -> AsyncIterator[bytes]:
    """Receive, show and acknowledge the events of a Queue subscription, as the viewer."""
    path = f"/{kind}/{seg(parent)}/eventsubscriptions/{seg(name)}"
    key = queue_key(kind, parent, name)
    yield RETRY
    for item in viewers.recent(key):
        yield sse(item, event="event")
    yield sse({"recent": len(viewers.recent(key))}, event="ready")
    while True:
        try:
            body = await api.post(
                path + ":receive", params={"maxEvents": RECEIVE_BATCH, "maxWaitTime": RECEIVE_WAIT_SECONDS}
            )
        except ApiFailure as exc:
            yield sse({"status": exc.status, "code": exc.code, "message": exc.message}, event="failure")
            return
        received = (body or {}).get("value", [])
        if not received:
            yield KEEPALIVE
            continue
        # Acknowledged before they are shown: the stream's next chunk is only asked for when
        # the browser reads on, so an acknowledgement after the last event of a batch could
        # wait for as long as the page stays idle, with the events locked meanwhile.
        tokens = [
            token
            for entry in received
            if (token := (entry.get("brokerProperties") or {}).get("lockToken"))
        ]
        if tokens:
            await api.post(path + ":acknowledge", json={"lockTokens": tokens})
        for entry in received:
            item = viewer_item(entry)
            viewers.remember(key, item)
            yield sse(item, event="event")
