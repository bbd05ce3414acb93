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
subscriptions.

Within one prefix, subscriptions that differ only by advanced filters on data fields would all
be candidates, so each is filed under one *anchor* (``compile.Anchor``): its most selective
positive advanced filter that can be looked up by value, much as rule engines such as AWS
EventBridge's compile patterns into lookups on field values rather than evaluate each pattern:

    (key, arrays) -> value table for StringIn / NumberIn / BoolEquals (a hash lookup)
                  -> a character trie of StringBeginsWith prefixes (walk the value's characters)
                  -> sorted bounds for NumberGreaterThan/LessThan[OrEquals] and the lower bound
                     of NumberInRange (a bisection; everything on the passing side)

An event reads each anchored key once (``value_index.py``) and collects the subscriptions
whose anchor its value satisfies; only those, plus the subscriptions without an anchor (negated
operators, EndsWith, Contains, presence tests, no advanced filter), check their subject suffix
and evaluate all their advanced filters. An anchor is a necessary condition of its filter, so
the candidates are a superset of the matches and the full predicate keeps deciding: semantics
do not change.

The index is plain in-memory state for one event loop: no locks, every update is visible to the
next ``match``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlgrid.domain.event_filter import EventFilter, canonical_schema
from mlgrid.domain.schemas import EventSchema
from mlgrid.filters.compile import Anchor, CompiledFilter, EventPredicate, FilterCompiler
from mlgrid.filters.value_index import KeyIndex

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
    anchor: Anchor | None


_Check = tuple[str, EventPredicate | None]
"""What the index still has to verify for a candidate: subject suffix and advanced filters."""


class _Group:
    """The subscriptions sharing one subject prefix: those filed by an anchor and the rest.

    Subscriptions without an anchor (no advanced filter an index can look up) are evaluated for
    every event that reaches the group; the others only when the event's value satisfies their
    anchor, which is what keeps many subscriptions that differ only by advanced filters cheap.
    """

    __slots__ = ("anchors", "checks", "keys", "plain")

    def __init__(self) -> None:
        self.plain: dict[str, _Check] = {}
        self.checks: dict[str, _Check] = {}
        self.anchors: dict[str, Anchor] = {}
        self.keys: dict[tuple[str, bool], KeyIndex] = {}

    def __bool__(self) -> bool:
        return bool(self.plain) or bool(self.checks)

    def add(self, subscription_id: str, check: _Check, anchor: Anchor | None) -> None:
        self.discard(subscription_id)
        if anchor is None:
            self.plain[subscription_id] = check
            return
        self.checks[subscription_id] = check
        self.anchors[subscription_id] = anchor
        slot = (anchor.key, anchor.arrays)
        key_index = self.keys.get(slot)
        if key_index is None:
            key_index = self.keys[slot] = KeyIndex(anchor.get, anchor.arrays)
        key_index.add(anchor, subscription_id)

    def discard(self, subscription_id: str) -> None:
        self.plain.pop(subscription_id, None)
        anchor = self.anchors.pop(subscription_id, None)
        if anchor is None:
            return
        del self.checks[subscription_id]
        slot = (anchor.key, anchor.arrays)
        key_index = self.keys[slot]
        key_index.discard(anchor, subscription_id)
        if not key_index.size:
            del self.keys[slot]

    def collect(
        self, event: Mapping[str, Any], subject: str, out: list[str], evaluate: bool, narrow: bool
    ) -> None:
        if not evaluate:
            out.extend(self.plain)
            if narrow:
                hits: set[str] = set()
                for key_index in self.keys.values():
                    key_index.collect(event, hits)
                out.extend(hits)
            else:
                out.extend(self.checks)
            return
        for subscription_id, (suffix, advanced) in self.plain.items():
            if (not suffix or subject.endswith(suffix)) and (advanced is None or advanced(event)):
                out.append(subscription_id)
        if self.keys:
            hits = set()
            for key_index in self.keys.values():
                key_index.collect(event, hits)
            checks = self.checks
            for subscription_id in hits:
                suffix, advanced = checks[subscription_id]
                if (not suffix or subject.endswith(suffix)) and (advanced is None or advanced(event)):
                    out.append(subscription_id)


class _PrefixTable:
    """Subscriptions keyed by subject prefix, probed with the prefixes of an event's subject."""

    __slots__ = ("_length_counts", "by_prefix", "lengths")

    def __init__(self) -> None:
        self.by_prefix: dict[str, _Group] = {}
        self.lengths: tuple[int, ...] = ()
        self._length_counts: dict[int, int] = {}

    def __bool__(self) -> bool:
        return bool(self.by_prefix)

    def add(self, prefix: str, subscription_id: str, check: _Check, anchor: Anchor | None) -> None:
        group = self.by_prefix.get(prefix)
        if group is None:
            group = self.by_prefix[prefix] = _Group()
            count = self._length_counts.get(len(prefix), 0)
            self._length_counts[len(prefix)] = count + 1
            if count == 0:
                self.lengths = tuple(sorted(self._length_counts))
        group.add(subscription_id, check, anchor)

    def discard(self, prefix: str, subscription_id: str) -> None:
        group = self.by_prefix.get(prefix)
        if group is None:
            return
        group.discard(subscription_id)
        if group:
            return
        del self.by_prefix[prefix]
        remaining = self._length_counts[len(prefix)] - 1
        if remaining:
            self._length_counts[len(prefix)] = remaining
        else:
            del self._length_counts[len(prefix)]
            self.lengths = tuple(sorted(self._length_counts))

    def collect(
        self, event: Mapping[str, Any], subject: str, out: list[str], evaluate: bool, narrow: bool
    ) -> None:
        """Append the ids whose prefix starts ``subject`` (and, if ``evaluate``, that match;
        if ``narrow``, only those whose anchor the event satisfies)."""
        by_prefix = self.by_prefix
        size = len(subject)
        for length in self.lengths:
            if length > size:
                break
            group = by_prefix.get(subject[:length])
            if group is not None:
                group.collect(event, subject, out, evaluate, narrow)


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
        self,
        event: Mapping[str, Any],
        subject: str,
        subject_lower: str,
        out: list[str],
        evaluate: bool,
        narrow: bool,
    ) -> None:
        if self.insensitive.lengths:
            self.insensitive.collect(event, subject_lower, out, evaluate, narrow)
        if self.sensitive.lengths:
            self.sensitive.collect(event, subject, out, evaluate, narrow)


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
                compiled.subject_prefix,
                entry.subscription_id,
                (compiled.subject_suffix, compiled.advanced),
                entry.anchor,
            )
        self.entries[entry.subscription_id] = entry

    def remove(self, subscription_id: str) -> _Entry | None:
        """Take a subscription out; returns its entry (``None`` if it was not here)."""
        entry = self.entries.pop(subscription_id, None)
        if entry is None:
            return None
        compiled = entry.compiled
        for event_type in compiled.event_types or ():
            bucket = self.by_type.get(event_type)
            if bucket is not None:
                bucket.table(compiled.case_sensitive).discard(compiled.subject_prefix, subscription_id)
                if not bucket:
                    del self.by_type[event_type]
        if compiled.event_types is None:
            self.all_types.table(compiled.case_sensitive).discard(compiled.subject_prefix, subscription_id)
        return entry


class SubscriptionIndex:
    """Compiled subscriptions of every topic, looked up by event type and subject prefix.

    Topic names are case-insensitive (SPEC §1), so the index keys them lower-cased.
    """

    def __init__(self) -> None:
        self._topics: dict[str, _TopicIndex] = {}
        # Shared by every filter of the index: identical advanced filters compile once.
        self._compiler = FilterCompiler()
        # How many indexed subscriptions carry each lookup-able advanced filter.
        self._shared: dict[tuple[object, ...], int] = {}

    def __len__(self) -> int:
        return sum(len(topic.entries) for topic in self._topics.values())

    def upsert(self, topic: str, subscription_id: str, f: EventFilter, input_schema: str) -> None:
        """Add a subscription or replace its filter; effective for the next ``match``.

        Compiles first, so a filter that cannot be compiled leaves the old one in place.
        """
        canonical_schema(input_schema)
        compiled = self._compiler.parts(f)
        index = self._topics.get(topic.lower())
        if index is None:
            index = self._topics[topic.lower()] = _TopicIndex()
        self._forget(index.remove(subscription_id))
        entry = _Entry(subscription_id, f, input_schema, compiled, self._choose_anchor(compiled))
        for anchor in compiled.anchors:
            self._shared[anchor.identity] = self._shared.get(anchor.identity, 0) + 1
        index.add(entry)

    def _choose_anchor(self, compiled: CompiledFilter) -> Anchor | None:
        """The anchor fewest other subscriptions share, the most selective kind among equals.

        A filter many subscriptions carry alike (``stage in [prod, staging]`` on every
        subscription of a policy) would make every one of them a candidate for most events; an
        advanced filter nobody else has singles its subscription out. Counting happens as
        subscriptions arrive, so it is a heuristic; any choice gives the same answers.
        """
        if not compiled.anchors:
            return None
        shared = self._shared
        return min(compiled.anchors, key=lambda anchor: (shared.get(anchor.identity, 0), anchor.rank))

    def _forget(self, entry: _Entry | None) -> None:
        """Stop counting the anchors of a subscription that left the index."""
        if entry is None:
            return
        for anchor in entry.compiled.anchors:
            remaining = self._shared[anchor.identity] - 1
            if remaining:
                self._shared[anchor.identity] = remaining
            else:
                del self._shared[anchor.identity]

    def remove(self, topic: str, subscription_id: str) -> bool:
        """Forget a subscription; ``False`` if it was not indexed."""
        index = self._topics.get(topic.lower())
        entry = index.remove(subscription_id) if index is not None else None
        if index is None or entry is None:
            return False
        self._forget(entry)
        if not index.entries:
            del self._topics[topic.lower()]
        return True

    def remove_topic(self, topic: str) -> None:
        """Forget a topic and all its subscriptions (the topic was deleted)."""
        index = self._topics.pop(topic.lower(), None)
        for entry in index.entries.values() if index is not None else ():
            self._forget(entry)

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

    def candidates(
        self, topic: str, event: Mapping[str, Any], input_schema: str, *, advanced: bool = False
    ) -> list[str]:
        """The ids whose event type and subject prefix fit ``event``, sorted; with ``advanced``,
        only those the index then evaluates, because the event's value satisfies their anchor
        (or they have none).

        For tests and benchmarks: shows how much work the index saves.
        """
        return self._collect(topic, event, input_schema, evaluate=False, narrow=advanced)

    def _collect(
        self, topic: str, event: Mapping[str, Any], input_schema: str, *, evaluate: bool, narrow: bool = True
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
                bucket.collect(event, subject, subject_lower, found, evaluate, narrow)
        index.all_types.collect(event, subject, subject_lower, found, evaluate, narrow)
        found.sort()
        return found
