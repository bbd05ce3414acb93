"""Output batching for push deliveries (SPEC §6.1).

Batching is best effort, as in Azure: the dispatcher groups the events that are due *now*
for one subscription; it never waits for more to fill a batch. A batch never holds more than
``maxEventsPerBatch`` events, and stays within ``preferredBatchSizeInKilobytes`` unless a
single event is larger than that, in which case the event goes alone. A batch then succeeds
or fails as a whole (the caller's concern).

Planning is a pure function over the events' serialised sizes so the invariants can be
property-tested; it returns indices, and the caller keeps the events.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["plan_batches"]


def plan_batches(sizes_in_bytes: Sequence[int], max_events: int, preferred_kb: int) -> list[list[int]]:
    """Split events (given by size, in order) into batches of indices.

    Greedy and order-preserving: each batch is filled with the next events until adding one
    more would exceed ``max_events`` or ``preferred_kb * 1024`` bytes (the sum of the events'
    sizes; the array's brackets and commas are noise next to the 64 KB default). An event
    larger than the preferred size always forms a batch of its own.
    """
    if max_events < 1:
        raise ValueError("max_events must be at least 1")
    if preferred_kb < 1:
        raise ValueError("preferred_kb must be at least 1")
    preferred_bytes = preferred_kb * 1024
    batches: list[list[int]] = []
    current: list[int] = []
    current_bytes = 0
    for index, size in enumerate(sizes_in_bytes):
        if size < 0:
            raise ValueError("sizes must not be negative")
        if size > preferred_bytes:
            if current:
                batches.append(current)
                current, current_bytes = [], 0
            batches.append([index])
            continue
        if current and (len(current) >= max_events or current_bytes + size > preferred_bytes):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(index)
        current_bytes += size
    if current:
        batches.append(current)
    return batches
