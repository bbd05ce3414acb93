"""Output batching plans (SPEC §6.1)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlgrid.delivery.batching import plan_batches

KB = 1024


def test_default_subscription_sends_one_event_per_request() -> None:
    assert plan_batches([100, 200, 300], max_events=1, preferred_kb=64) == [[0], [1], [2]]


def test_no_events_no_batches() -> None:
    assert plan_batches([], max_events=10, preferred_kb=64) == []


def test_fills_up_to_max_events() -> None:
    assert plan_batches([10] * 7, max_events=3, preferred_kb=64) == [[0, 1, 2], [3, 4, 5], [6]]


def test_respects_preferred_size() -> None:
    sizes = [400, 400, 400, 400]
    assert plan_batches(sizes, max_events=10, preferred_kb=1) == [[0, 1], [2, 3]]


def test_exactly_the_preferred_size_fits() -> None:
    assert plan_batches([512, 512, 1], max_events=10, preferred_kb=1) == [[0, 1], [2]]


def test_oversized_event_goes_alone_in_order() -> None:
    sizes = [100, 100, 5 * KB, 100]
    assert plan_batches(sizes, max_events=10, preferred_kb=1) == [[0, 1], [2], [3]]


def test_consecutive_oversized_events() -> None:
    assert plan_batches([2 * KB, 3 * KB], max_events=10, preferred_kb=1) == [[0], [1]]


@pytest.mark.parametrize(("max_events", "preferred_kb"), [(0, 64), (1, 0)])
def test_bad_arguments(max_events: int, preferred_kb: int) -> None:
    with pytest.raises(ValueError):
        plan_batches([1], max_events, preferred_kb)


def test_negative_size_is_a_bug() -> None:
    with pytest.raises(ValueError):
        plan_batches([-1], 1, 1)


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=8 * KB), max_size=200),
    max_events=st.integers(min_value=1, max_value=50),
    preferred_kb=st.integers(min_value=1, max_value=8),
)
def test_batching_invariants(sizes: list[int], max_events: int, preferred_kb: int) -> None:
    batches = plan_batches(sizes, max_events, preferred_kb)
    preferred = preferred_kb * KB
    # Every event exactly once, in order (concatenation is the identity).
    assert [i for batch in batches for i in batch] == list(range(len(sizes)))
    for batch in batches:
        assert batch, "no empty batches"
        assert len(batch) <= max_events
        total = sum(sizes[i] for i in batch)
        if len(batch) > 1:
            assert total <= preferred
            assert all(sizes[i] <= preferred for i in batch)
    # Greedy: a batch is only closed when the next event would not fit into it.
    for batch, following in itertools.pairwise(batches):
        nxt = following[0]
        total = sum(sizes[i] for i in batch)
        assert (
            len(batch) == max_events
            or sizes[nxt] > preferred
            or total + sizes[nxt] > preferred
            or any(sizes[i] > preferred for i in batch)
        )
