"""Find the subscriptions an event matches without evaluating every subscription of the topic.

SPEC §5 requires matching to stay fast with many subscriptions. Most subscriptions name one or
a few event types and often a subject prefix (``models/churn:``), so the index narrows by both
before any advanced filter runs:

    topic -> event type (lower-cased; plus one bucket for "all types")
          -> subject prefix table (case-insensitive and case-sensitive kept apart)
          -> {subscription id: (subject suffix, advanced-filter predicate)}

A prefix table maps each distinct ``subjectBeginsWith`` to its subscriptions and remembers
which prefix lengths occur; an event probes only those lengths of its own subject, so the cost
grows with the number of distinct prefix *lengths* (a handful), not with the number of
subscriptions. Only the candidates found that way check their subject suffix and evaluate their
advanced filters.

The index is plain in-memory state for one event loop: no locks, every update is visible to the
next ``match``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlgrid.domain.event_filter import EventFilter, canonical_schema
from mlgrid.domain.schemas import EventSchema
from mlgrid.filters.compile import CompiledFilter, EventPredicate, FilterCompiler

_TYPE_FIELDS: dict[str, str] = {
    EventSchema.EVENT_GRID: "eventType",
    EventSchema.CUSTOM_EVENT: "eventType",
    EventSchema.CLOUD_EVENTS: "type",
}


def _type_field(input_schema: str) -> str:
    """The envelope field holding the event type for events of ``input_schema``."""
    return "type" if canonical_schema(input_schema) == EventSchema.CLOUD_EVENTS else "eventType"


@dataclass(frozen=True, slots=True)
class _Entry:
    """One indexed subscription: what it was built from and where it sits in the index."""

    subscription_id: str
    filter: EventFilter
    input_schema: str
    compiled: CompiledFilter


_Check = tuple[str, EventPredicate | None]
"""What the index still has to verify for a candidate: subject suffix and advanced filters."""


class _PrefixTable:
    """Subscriptions keyed by subject prefix, probed with the prefixes of an event's subject."""

    __slots__ = ("_length_counts", "by_prefix", "lengths")

    def __init__(self) -> None:
        self.by_prefix: dict[str, dict[str, _Check]] = {}
        self.lengths: tuple[int, ...] = ()
        self._length_counts: dict[int, int] = {}

    def __bool__(self) -> bool:
        return bool(self.by_prefix)

    def add(self, prefix: str, subscription_id: str, check: _Check) -> None:
        entries = self.by_prefix.get(prefix)
        if entries is None:
            entries = self.by_prefix[prefix] = {}
            count = self._length_counts.get(len(prefix), 0)
            self._length_counts[len(prefix)] = count + 1
            if count == 0:
                self.lengths = tuple(sorted(self._length_counts))
        entries[subscription_id] = check

    def discard(self, prefix: str, subscription_id: str) -> None:
        entries = self.by_prefix.get(prefix)
        if entries is None:
            return
        entries.pop(subscription_id, None)
        if entries:
            return
        del self.by_prefix[prefix]
        remaining = self._length_counts[len(prefix)] - 1
        if remaining:
            self._length_counts[len(prefix)] = remaining
        else:
            del self._length_counts[len(prefix)]
            self.lengths = tuple(sorted(self._length_counts))

    def collect(self, event: Mapping[str, Any], subject: str, out: list[str], evaluate: bool) -> None:
        """Append the ids whose prefix starts ``subject`` (and, if ``evaluate``, that match)."""
        by_prefix = self.by_prefix
        size = len(subject)
        for length in self.lengths:
            if length > size:
                break
            entries = by_prefix.get(subject[:length])
            if entries is None:
                continue
            if not evaluate:
                out.extend(entries)
                continue
            for subscription_id, (suffix, advanced) in entries.items():
                if (not suffix or subject.endswith(suffix)) and (advanced is None or advanced(event)):
                    out.append(subscription_id)


class _TypeBucket:
    """The subscriptions interested in one event type (or in all of them)."""

    __slots__ = ("insensitive", "sensitive")

    def __init__(self) -> None:
        self.insensitive = _PrefixTable()
        self.sensitive = _PrefixTable()

    def __bool__(self) -> bool:
        return bool(self.insensitive) or bool(self.sensitive)

    def table(self, case_sensitive: bool) -> _PrefixTable:
        return self.sensitive if case_sensitive else self.insensitive

    def collect(
        self, event: Mapping[str, Any], subject: str, subject_lower: str, out: list[str], evaluate: bool
    ) -> None:
        if self.insensitive.lengths:
            self.insensitive.collect(event, subject_lower, out, evaluate)
        if self.sensitive.lengths:
            self.sensitive.collect(event, subject, out, evaluate)


class _TopicIndex:
    __slots__ = ("all_types", "by_type", "entries")

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}
        self.by_type: dict[str, _TypeBucket] = {}
        self.all_types = _TypeBucket()

    def buckets(self, compiled: CompiledFilter, create: bool) -> list[_TypeBucket]:
        """The buckets a subscription with ``compiled`` lives in."""
        if compiled.event_types is None:
            return [self.all_types]
        found: list[_TypeBucket] = []
        for event_type in sorted(compiled.event_types):
            bucket = self.by_type.get(event_type)
            if bucket is None and create:
                bucket = self.by_type[event_type] = _TypeBucket()
            if bucket is not None:
                found.append(bucket)
        return found

    def add(self, entry: _Entry) -> None:
        compiled = entry.compiled
        for bucket in self.buckets(compiled, create=True):
            bucket.table(compiled.case_sensitive).add(
                compiled.subject_prefix, entry.subscription_id, (compiled.subject_suffix, compiled.advanced)
            )
        self.entries[entry.subscription_id] = entry

    def remove(self, subscription_id: str) -> bool:
        entry = self.entries.pop(subscription_id, None)
        if entry is None:
            return False
        compiled = entry.compiled
        for event_type in compiled.event_types or ():
            bucket = self.by_type.get(event_type)
            if bucket is not None:
                bucket.table(compiled.case_sensitive).discard(compiled.subject_prefix, subscription_id)
                if not bucket:
                    del self.by_type[event_type]
        if compiled.event_types is None:
            self.all_types.table(compiled.case_sensitive).discard(compiled.subject_prefix, subscription_id)
        return True


class SubscriptionIndex:
    """Compiled subscriptions of every topic, looked up by event type and subject prefix.

    Topic names are case-insensitive (SPEC §1), so the index keys them lower-cased.
    """

    def __init__(self) -> None:
        self._topics: dict[str, _TopicIndex] = {}
        # Shared by every filter of the index: identical advanced filters compile once.
        self._compiler = FilterCompiler()

    def __len__(self) -> int:
        return sum(len(topic.entries) for topic in self._topics.values())

    def upsert(self, topic: str, subscription_id: str, f: EventFilter, input_schema: str) -> None:
        """Add a subscription or replace its filter; effective for the next ``match``.

        Compiles first, so a filter that cannot be compiled leaves the old one in place.
        """
        canonical_schema(input_schema)
        entry = _Entry(subscription_id, f, input_schema, self._compiler.parts(f))
        index = self._topics.get(topic.lower())
        if index is None:
            index = self._topics[topic.lower()] = _TopicIndex()
        index.remove(subscription_id)
        index.add(entry)

    def remove(self, topic: str, subscription_id: str) -> bool:
        """Forget a subscription; ``False`` if it was not indexed."""
        index = self._topics.get(topic.lower())
        if index is None or not index.remove(subscription_id):
            return False
        if not index.entries:
            del self._topics[topic.lower()]
        return True

    def remove_topic(self, topic: str) -> None:
        """Forget a topic and all its subscriptions (the topic was deleted)."""
        self._topics.pop(topic.lower(), None)

    def subscription_ids(self, topic: str) -> list[str]:
        """The indexed subscription ids of ``topic``, sorted."""
        index = self._topics.get(topic.lower())
        return sorted(index.entries) if index is not None else []

    def get_filter(self, topic: str, subscription_id: str) -> EventFilter | None:
        """The filter a subscription was indexed with, or ``None``."""
        index = self._topics.get(topic.lower())
        entry = index.entries.get(subscription_id) if index is not None else None
        return entry.filter if entry is not None else None

    def match(self, topic: str, event: Mapping[str, Any], input_schema: str) -> list[str]:
        """The ids of the subscriptions of ``topic`` that ``event`` matches, sorted.

        ``event`` is a plain dict in ``input_schema`` (custom-schema events normalised to the
        Event Grid schema first), numbers parsed as ``int``/``Decimal``.
        """
        return self._collect(topic, event, input_schema, evaluate=True)

    def candidates(self, topic: str, event: Mapping[str, Any], input_schema: str) -> list[str]:
        """The ids the index would evaluate for ``event`` (type and subject prefix fit), sorted.

        For tests and benchmarks: shows how much work the index saves.
        """
        return self._collect(topic, event, input_schema, evaluate=False)

    def _collect(
        self, topic: str, event: Mapping[str, Any], input_schema: str, *, evaluate: bool
    ) -> list[str]:
        index = self._topics.get(topic.lower())
        if index is None:
            return []
        type_field = _TYPE_FIELDS.get(input_schema) or _type_field(input_schema)
        subject = event.get("subject")
        if not isinstance(subject, str):
            subject = ""
        subject_lower = subject.lower()
        found: list[str] = []
        event_type = event.get(type_field)
        if isinstance(event_type, str) and index.by_type:
            bucket = index.by_type.get(event_type.lower())
            if bucket is not None:
                bucket.collect(event, subject, subject_lower, found, evaluate)
        index.all_types.collect(event, subject, subject_lower, found, evaluate)
        found.sort()
        return found
