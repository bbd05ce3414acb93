"""How fast the filter index routes events as the number of subscriptions grows.

Workload (one topic, 50 event types): subscription ``i`` wants event type ``i % 50`` on the
subject prefix ``models/model-{i // 50}:`` (one model per subscription, as per-model
automation does) and carries two or three advanced filters (StringIn on a tag, a numeric
comparison on a numeric string, sometimes StringNotIn) drawn from a few dozen distinct
combinations, as subscriptions that apply one policy per model do. Events are drawn so that
each one belongs to some subscription's type and model; about a third pass its advanced
filters. Events are parsed from JSON text with ``parse_float=Decimal``, as the broker does.

For 10, 1,000 and 10,000 subscriptions it measures events/s through ``SubscriptionIndex.match``
and through a naive loop that calls every compiled filter, checks both give the same answers,
and prints the ratio time-per-event(10k) / time-per-event(10) for the index (target: <= 3x).
A second table repeats it with advanced filter values unique to each subscription, so that no
compiled predicate is shared. A third, smaller table shows the "broad" case where subscriptions
have no subject prefix, so every subscription of the event's type is a candidate: there the cost
follows the number of candidates, which is what the index cannot avoid.

Run: ``.venv/bin/python benchmarks/matching.py`` (bounded; well under a minute).
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from mlgrid.filters import SubscriptionIndex, compile_filter, parse_filter

SCHEMA = "EventGridSchema"
TOPIC = "bench"
EVENT_TYPES = [f"Microsoft.MachineLearningServices.Bench{i:02d}" for i in range(50)]
STAGES = ["dev", "staging", "prod", "archived"]
SIZES = (10, 1_000, 10_000)
EVENTS = 20_000
NAIVE_BUDGET_SECONDS = 1.5
BROAD_EVENTS = 1_000
REPEATS = 3


def subscription_filter(i: int, *, with_prefix: bool, distinct: bool = False) -> dict[str, Any]:
    """Subscription ``i``'s filter; ``distinct`` makes its advanced filter values unique to it."""
    stages = STAGES[i % 3 : i % 3 + 2]
    advanced: list[dict[str, Any]] = [
        {
            "operatorType": "StringIn",
            "key": "data.ModelTags.stage",
            "values": [*stages, f"only-{i}"] if distinct else stages,
        },
        {
            "operatorType": "NumberGreaterThanOrEquals",
            "key": "data.ModelVersion",
            "value": Decimal(i % 7) + Decimal(i) / 10**6 if distinct else i % 7,
        },
    ]
    if i % 2:
        advanced.append({"operatorType": "StringNotIn", "key": "data.ModelTags.owner", "values": ["bot"]})
    body: dict[str, Any] = {"includedEventTypes": [EVENT_TYPES[i % 50]], "advancedFilters": advanced}
    if with_prefix:
        body["subjectBeginsWith"] = f"models/model-{i // 50}:"
    return body


def make_events(count: int, subscriptions: int, rng: random.Random) -> list[dict[str, Any]]:
    events = []
    for n in range(count):
        owner = rng.randrange(subscriptions)
        version = rng.randrange(1, 12)
        raw = {
            "id": f"e{n}",
            "topic": "/subscriptions/0/resourceGroups/default/providers/Microsoft.EventGrid/topics/bench",
            "subject": f"models/model-{owner // 50}:{version}",
            "eventType": EVENT_TYPES[owner % 50],
            "eventTime": "2024-01-01T00:00:00Z",
            "data": {
                "ModelName": f"model-{owner // 50}",
                "ModelVersion": str(version),
                "ModelTags": {"stage": rng.choice(STAGES), "owner": rng.choice(["bot", "alice"])},
                "Score": rng.random(),
            },
            "dataVersion": "",
            "metadataVersion": "1",
        }
        events.append(json.loads(json.dumps(raw), parse_float=Decimal))
    return events


def best_of(repeats: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def measure(
    size: int, *, with_prefix: bool, events_count: int, repeats: int = REPEATS, distinct: bool = False
) -> dict[str, float]:
    rng = random.Random(size)
    index = SubscriptionIndex()
    naive: list[tuple[str, Callable[[Mapping[str, Any]], bool]]] = []
    for i in range(size):
        raw = subscription_filter(i, with_prefix=with_prefix, distinct=distinct)
        event_filter = parse_filter(raw, input_schema=SCHEMA)
        subscription_id = f"sub-{i:05d}"
        index.upsert(TOPIC, subscription_id, event_filter, SCHEMA)
        naive.append((subscription_id, compile_filter(event_filter, SCHEMA)))
    events = make_events(events_count, size, rng)

    def route_all() -> None:
        for event in events:
            index.match(TOPIC, event, SCHEMA)

    index_seconds = best_of(repeats, route_all)

    naive_done = 0
    started = time.process_time()
    for event in events:
        expected = [s for s, predicate in naive if predicate(event)]
        if index.match(TOPIC, event, SCHEMA) != expected:
            raise AssertionError(f"index and naive loop disagree on {event['id']}")
        naive_done += 1
        if time.process_time() - started > NAIVE_BUDGET_SECONDS:
            break
    naive_seconds = time.process_time() - started

    sample = events[:1000]
    candidates = sum(len(index.candidates(TOPIC, e, SCHEMA)) for e in sample) / len(sample)
    matches = sum(len(index.match(TOPIC, e, SCHEMA)) for e in sample) / len(sample)
    return {
        "index_eps": len(events) / index_seconds,
        "index_us": index_seconds / len(events) * 1e6,
        "naive_eps": naive_done / naive_seconds,
        "candidates": candidates,
        "matches": matches,
    }


def print_table(title: str, rows: dict[int, dict[str, float]]) -> None:
    print(title)
    print(
        f"{'subs':>7} | {'index ev/s':>11} | {'µs/event':>8} | {'naive ev/s':>11} | {'speed-up':>8} | "
        f"{'candidates':>10} | {'matches':>7}"
    )
    print("-" * 84)
    for size, r in rows.items():
        print(
            f"{size:>7,} | {r['index_eps']:>11,.0f} | {r['index_us']:>8.2f} | {r['naive_eps']:>11,.0f} | "
            f"{r['index_eps'] / r['naive_eps']:>7.1f}x | {r['candidates']:>10.2f} | {r['matches']:>7.2f}"
        )
    print()


def main() -> int:
    started, wall_started = time.process_time(), time.perf_counter()
    print(f"Python {sys.version.split()[0]}; CPU time of this process, so other load on the machine")
    print(f"does not count; {EVENTS:,} events per run, best of {REPEATS}\n")
    measure(SIZES[0], with_prefix=True, events_count=EVENTS)  # warm-up, discarded
    targeted = {size: measure(size, with_prefix=True, events_count=EVENTS) for size in SIZES}
    print_table("Per-model subscriptions (type + subject prefix + advanced filters)", targeted)
    ratio = targeted[SIZES[-1]]["index_us"] / targeted[SIZES[0]]["index_us"]
    print(f"index time per event, {SIZES[-1]:,} vs {SIZES[0]} subscriptions: {ratio:.2f}x (target <= 3x)\n")

    distinct = {size: measure(size, with_prefix=True, events_count=EVENTS, distinct=True) for size in SIZES}
    print_table("Same, but every subscription's advanced filter values are unique (nothing shared)", distinct)
    distinct_ratio = distinct[SIZES[-1]]["index_us"] / distinct[SIZES[0]]["index_us"]
    print(f"index time per event, {SIZES[-1]:,} vs {SIZES[0]} subscriptions: {distinct_ratio:.2f}x\n")

    broad = {size: measure(size, with_prefix=False, events_count=BROAD_EVENTS, repeats=1) for size in SIZES}
    print_table("Broad subscriptions (type + advanced filters, no subject prefix)", broad)
    print(f"total {time.perf_counter() - wall_started:.1f} s wall, {time.process_time() - started:.1f} s CPU")
    return 0 if ratio <= 3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
