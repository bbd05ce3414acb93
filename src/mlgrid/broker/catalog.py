"""The event catalog: every event type this server emits or has seen, for the topics a caller
may read (the API passes them in, after its permission check).

* the five ML events, always (a sample is the newest retained one of a readable workspace,
  or else an example built by the code that emits them);
* the WebHook validation handshake, the one Event Grid system event mlgrid sends;
* each event type retained on a readable custom topic, with its newest event as the sample and
  a schema inferred from it.

"Subscriptions that receive it" are those whose ``includedEventTypes`` take the type (or all
types) on a topic that carries it; advanced filters and subject filters may still narrow what
each receives, which the filter tester (``:test``) shows event by event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlgrid.broker.subscriptions import SubscriptionService
from mlgrid.broker.topics import Topic
from mlgrid.events import catalog, ml
from mlgrid.events.jsoncodec import loads_exact
from mlgrid.store import events as event_store
from mlgrid.store.database import Database


def _takes(subscription: dict[str, Any], event_type: str) -> bool:
    types = (subscription.get("properties", {}).get("filter") or {}).get("includedEventTypes")
    return not types or any(t.lower() in ("all", event_type.lower()) for t in types)


def _receiver(topic: Topic, subscription: dict[str, Any]) -> dict[str, str]:
    destination = subscription.get("properties", {}).get("destination") or {}
    return {
        "topic": topic.name,
        "topicKind": topic.kind,
        "name": str(subscription.get("name")),
        "endpointType": str(destination.get("endpointType", "")),
    }


class EventCatalog:
    def __init__(self, db: Database, subscriptions: SubscriptionService) -> None:
        self._db = db
        self._subscriptions = subscriptions

    async def entries(self, topics: Sequence[Topic]) -> list[catalog.CatalogEntry]:
        """The catalog for these (readable) topics: ML events first, then the handshake, then
        custom topics' types by topic and type."""
        by_key = {t.key: t for t in topics}
        async with self._db.read() as conn:
            latest = await event_store.latest_by_type(conn, list(by_key))
            samples = await event_store.get_by_seq(conn, [seq for _, _, seq in latest])
        subscriptions = {t.key: await self._subscriptions.list(t) for t in topics}
        system = [t for t in topics if t.kind == "system"]
        examples = catalog.ml_examples()
        newest_ml: dict[str, int] = {}
        for topic_key, event_type, seq in latest:
            if by_key[topic_key].kind == "system" and event_type in examples:
                newest_ml[event_type] = max(seq, newest_ml.get(event_type, 0))
        entries: list[catalog.CatalogEntry] = []
        for event_type in ml.ML_EVENT_TYPES:
            newest = newest_ml.get(event_type)
            stored = samples.get(newest) if newest is not None else None
            entries.append(catalog.CatalogEntry(
                event_type=event_type,
                kind=catalog.ML,
                description=catalog.DESCRIPTIONS[event_type],
                schema=catalog.event_grid_schema(catalog.ML_DATA_SCHEMAS[event_type]),
                sample=loads_exact(stored.body) if stored is not None else examples[event_type],
                sample_source="retained" if stored is not None else "example",
                topics=[t.name for t in system],
                subscriptions=[
                    _receiver(t, s) for t in system for s in subscriptions[t.key] if _takes(s, event_type)
                ],
            ))
        entries.append(catalog.CatalogEntry(
            event_type=catalog.VALIDATION_EVENT,
            kind=catalog.SYSTEM,
            description=catalog.DESCRIPTIONS[catalog.VALIDATION_EVENT],
            schema=catalog.event_grid_schema({
                "type": "object",
                "required": ["validationCode"],
                "properties": {"validationCode": {"type": "string"}, "validationUrl": {"type": "string"}},
            }),
            sample={
                "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66", "topic": catalog.EXAMPLE_TOPIC, "subject": "",
                "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
                         "validationUrl": "http://127.0.0.1:8780/eventSubscriptions:validate?code=..."},
                "eventType": catalog.VALIDATION_EVENT, "eventTime": "2030-01-01T00:00:00Z",
                "metadataVersion": "1", "dataVersion": "1",
            },
            sample_source="example",
            topics=[],
            subscriptions=[
                _receiver(t, s) for t in topics for s in subscriptions[t.key]
                if (s.get("properties", {}).get("destination") or {}).get("endpointType") == "WebHook"
            ],
        ))
        custom = sorted(
            ((by_key[k], event_type, seq) for k, event_type, seq in latest if by_key[k].kind == "custom"),
            key=lambda item: (item[0].name.lower(), item[1].lower()),
        )
        for topic, event_type, seq in custom:
            stored = samples.get(seq)
            if stored is None:
                continue
            sample = loads_exact(stored.body)
            entries.append(catalog.CatalogEntry(
                event_type=event_type,
                kind=catalog.CUSTOM,
                description=f"Published to the custom topic {topic.name} ({topic.input_schema}).",
                schema={"$schema": catalog.JSON_SCHEMA, **catalog.infer_schema(sample)},
                sample=sample,
                sample_source="retained",
                topics=[topic.name],
                subscriptions=[
                    _receiver(topic, s) for s in subscriptions[topic.key] if _takes(s, event_type)
                ],
            ))
        return entries
