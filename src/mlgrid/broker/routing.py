"""The router: which active subscriptions of a topic an event matches.

It wraps the filter index with the facts the index does not know: which subscriptions are
active (validated, not expired) and their names for metrics. Subscription changes call
``upsert``/``remove`` so routing follows them without a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlgrid.filters.index import SubscriptionIndex
from mlgrid.filters.model import EventFilter


class Router:
    def __init__(self) -> None:
        self._index = SubscriptionIndex()
        self._names: dict[str, str] = {}
        self._topics: dict[str, str] = {}

    def upsert(self, topic_key: str, subscription_id: str, name: str, event_filter: EventFilter, schema: str) -> None:
        self._index.upsert(topic_key, subscription_id, event_filter, schema)
        self._names[subscription_id] = name
        self._topics[subscription_id] = topic_key

    def remove(self, subscription_id: str) -> None:
        topic_key = self._topics.pop(subscription_id, None)
        self._names.pop(subscription_id, None)
        if topic_key is not None:
            self._index.remove(topic_key, subscription_id)

    def clear(self) -> None:
        for subscription_id in list(self._topics):
            self.remove(subscription_id)

    def match(self, topic_key: str, event: Mapping[str, Any], schema: str) -> list[str]:
        return self._index.match(topic_key, event, schema)

    def subscription_name(self, subscription_id: str) -> str:
        return self._names.get(subscription_id, subscription_id)

    def __contains__(self, subscription_id: object) -> bool:
        return subscription_id in self._topics
