"""The router: which active subscriptions of a topic an event matches.

It wraps the filter index with the facts the index does not know: which subscriptions are
active (validated, not expired) and their names for metrics. Subscription changes call
``upsert``/``remove`` so routing follows them without a restart.

Expiry is checked here, at match time, rather than left to the sweeper that deletes expired
subscriptions: a subscription whose ``expirationTimeUtc`` has passed must stop matching at
once, not at the sweeper's next turn (SPEC §4).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from mlgrid.domain.event_filter import EventFilter
from mlgrid.filters.index import SubscriptionIndex


class Router:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._index = SubscriptionIndex()
        self._names: dict[str, str] = {}
        self._topics: dict[str, str] = {}
        # Epoch seconds after which a subscription no longer matches; only those that expire.
        self._expiry: dict[str, float] = {}
        # Subscriptions whose receivers fetch their events (pull queues): never claimed by a
        # node's dispatcher.
        self._pulled: set[str] = set()
        self._clock = clock

    def upsert(
        self,
        topic_key: str,
        subscription_id: str,
        name: str,
        event_filter: EventFilter,
        schema: str,
        *,
        expires_at: datetime | None = None,
        pushed: bool = True,
    ) -> None:
        previous_topic = self._topics.get(subscription_id)
        if previous_topic is not None and previous_topic != topic_key:
            self._index.remove(previous_topic, subscription_id)
        self._index.upsert(topic_key, subscription_id, event_filter, schema)
        self._names[subscription_id] = name
        self._topics[subscription_id] = topic_key
        if pushed:
            self._pulled.discard(subscription_id)
        else:
            self._pulled.add(subscription_id)
        if expires_at is None:
            self._expiry.pop(subscription_id, None)
        else:
            self._expiry[subscription_id] = expires_at.timestamp()

    def remove(self, subscription_id: str) -> None:
        topic_key = self._topics.pop(subscription_id, None)
        self._names.pop(subscription_id, None)
        self._expiry.pop(subscription_id, None)
        self._pulled.discard(subscription_id)
        if topic_key is not None:
            self._index.remove(topic_key, subscription_id)

    def remove_topic(self, topic_key: str) -> list[str]:
        """Forget every subscription of a deleted topic; returns their ids."""
        ids = [sid for sid, key in self._topics.items() if key == topic_key]
        for subscription_id in ids:
            self.remove(subscription_id)
        return ids

    def clear(self) -> None:
        for subscription_id in list(self._topics):
            self.remove(subscription_id)

    def match(self, topic_key: str, event: Mapping[str, Any], schema: str) -> list[str]:
        matched = self._index.match(topic_key, event, schema)
        if self._expiry and matched:
            now = self._clock()
            matched = [sid for sid in matched if self._expiry.get(sid, now + 1.0) > now]
        return matched

    def is_pushed(self, subscription_id: str) -> bool:
        """Whether the subscription's events are pushed by a dispatcher (not pulled)."""
        return subscription_id not in self._pulled

    def subscription_name(self, subscription_id: str) -> str:
        return self._names.get(subscription_id, subscription_id)

    def __contains__(self, subscription_id: object) -> bool:
        return subscription_id in self._topics

    def __len__(self) -> int:
        return len(self._topics)
