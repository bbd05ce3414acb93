"""The index looks advanced filters up by value, and that never changes an answer.

Subscriptions that differ only by advanced filters on data fields are filed under an anchor (a
positive ``StringIn``/``NumberIn``/``BoolEquals``, ``StringBeginsWith`` prefix or numeric
threshold); only those whose anchor the event's value satisfies are evaluated. The properties
check that the narrowed candidates always contain every true match and that the final answer
equals a brute-force evaluation of every subscription, through adds, removals and replacements.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.filters.test_filter_properties import (
    NUMBERS,
    STRINGS,
    event_filters,
    events_for,
    ref_matches,
    schemas,
)

from mlgrid.filters import AdvancedFilter, EventFilter, SubscriptionIndex, compile_filter, parse_filter

EG = "EventGridSchema"
ANCHORED = [
    "StringIn",
    "NumberIn",
    "BoolEquals",
    "StringBeginsWith",
    "NumberGreaterThan",
    "NumberGreaterThanOrEquals",
    "NumberLessThan",
    "NumberLessThanOrEquals",
    "NumberInRange",
]
# Few keys, so that many subscriptions share a key and its tables; two spellings of one key,
# which the getter reads differently when an event carries both.
KEYS = ["data.alpha", "data.beta", "data.Alpha", "data.alpha.beta", "subject"]


@st.composite
def anchored_filters(draw: st.DrawFn) -> AdvancedFilter:
    """An advanced filter of a kind the index looks up, on one of a few shared keys."""
    key = draw(st.sampled_from(KEYS))
    operator = draw(st.sampled_from(ANCHORED))
    if operator == "NumberIn":
        numbers = draw(st.lists(st.sampled_from(NUMBERS), max_size=3))
        return AdvancedFilter(operator, key, values=tuple(numbers))
    if operator == "NumberInRange":
        pairs = draw(st.lists(st.tuples(st.sampled_from(NUMBERS), st.sampled_from(NUMBERS)), max_size=3))
        return AdvancedFilter(operator, key, values=tuple((min(p), max(p)) for p in pairs))
    if operator.startswith("Number"):
        return AdvancedFilter(operator, key, value=draw(st.sampled_from(NUMBERS)))
    if operator == "BoolEquals":
        return AdvancedFilter(operator, key, value=draw(st.booleans()))
    return AdvancedFilter(operator, key, values=tuple(draw(st.lists(st.sampled_from(STRINGS), max_size=3))))


@st.composite
def broad_filters(draw: st.DrawFn) -> EventFilter:
    """No type or subject narrowing: only advanced filters tell these subscriptions apart."""
    anchored = draw(st.lists(anchored_filters(), min_size=1, max_size=3))
    return EventFilter(
        enable_advanced_filtering_on_arrays=draw(st.booleans()),
        advanced_filters=tuple(anchored),
    )


def assert_index_exact(index: SubscriptionIndex, filters: dict[str, EventFilter], event: dict[str, Any],
                       schema: str) -> None:
    """Candidates contain every match; the answer equals the reference and each compiled filter."""
    expected = sorted(s for s, f in filters.items() if ref_matches(f, event, schema))
    brute = sorted(s for s, f in filters.items() if compile_filter(f, schema)(event))
    assert brute == expected, (filters, event)
    candidates = index.candidates("topic", event, schema, advanced=True)
    assert set(expected) <= set(candidates), (filters, event, candidates)
    assert set(candidates) <= set(index.candidates("topic", event, schema)), (filters, event)
    assert len(candidates) == len(set(candidates)), candidates
    assert index.match("topic", event, schema) == expected, (filters, event)


def exercise(data: st.DataObject, schema: str, filters: dict[str, EventFilter],
             replacement: st.SearchStrategy[EventFilter]) -> None:
    probes = data.draw(st.lists(events_for(schema, list(filters.values())), min_size=1, max_size=5))
    index = SubscriptionIndex()
    for subscription_id, f in filters.items():
        index.upsert("topic", subscription_id, f, schema)

    def check() -> None:
        for event in probes:
            assert_index_exact(index, filters, event, schema)

    check()
    for subscription_id in data.draw(st.lists(st.sampled_from(sorted(filters)), unique=True)):
        assert index.remove("topic", subscription_id)
        del filters[subscription_id]
    check()
    for subscription_id in data.draw(st.lists(st.sampled_from(["s0", "s1", "s5", "s17"]), unique=True)):
        filters[subscription_id] = data.draw(replacement)
        index.upsert("topic", subscription_id, filters[subscription_id], schema)
    check()


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_broad_anchored_subscriptions_agree_with_brute_force(data: st.DataObject) -> None:
    count = data.draw(st.integers(1, 12))
    filters = {f"s{i}": data.draw(broad_filters()) for i in range(count)}
    exercise(data, EG, filters, broad_filters())


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_filters_agree_with_brute_force(data: st.DataObject) -> None:
    schema = data.draw(schemas)
    count = data.draw(st.integers(1, 8))
    filters = {f"s{i}": data.draw(event_filters(schema)) for i in range(count)}
    exercise(data, schema, filters, event_filters(schema))


# --- examples ------------------------------------------------------------------------------------


def flt(*advanced: dict[str, Any], arrays: bool = False) -> EventFilter:
    raw: dict[str, Any] = {"advancedFilters": list(advanced)}
    if arrays:
        raw["enableAdvancedFilteringOnArrays"] = True
    return parse_filter(raw, input_schema=EG)


def event(**data: Any) -> dict[str, Any]:
    return {"id": "e", "subject": "s", "eventType": "T", "data": data, "dataVersion": "",
            "metadataVersion": "1"}


def test_subscriptions_differing_only_by_advanced_filters_are_not_all_candidates() -> None:
    index = SubscriptionIndex()
    for i in range(500):
        kind = i % 4
        if kind == 0:
            f = flt({"operatorType": "StringIn", "key": "data.model", "values": [f"Model-{i}"]})
        elif kind == 1:
            f = flt({"operatorType": "StringBeginsWith", "key": "data.path", "values": [f"team-{i}/"]})
        elif kind == 2:
            f = flt({"operatorType": "NumberIn", "key": "data.run", "values": [i]})
        else:
            f = flt({"operatorType": "NumberGreaterThan", "key": "data.latency", "value": 1000 + i})
        index.upsert("topic", f"s{i:03d}", f, EG)
    probe = event(model="model-4", path="TEAM-5/x", run=Decimal("6.0"), latency=1006)
    assert index.candidates("topic", probe, EG, advanced=True) == ["s003", "s004", "s005", "s006"]
    assert index.match("topic", probe, EG) == ["s003", "s004", "s005", "s006"]
    assert len(index.candidates("topic", probe, EG)) == 500


def test_unanchored_filters_are_still_evaluated() -> None:
    index = SubscriptionIndex()
    index.upsert("topic", "not-in", flt({"operatorType": "StringNotIn", "key": "data.m", "values": ["a"]}),
                 EG)
    index.upsert("topic", "ends", flt({"operatorType": "StringEndsWith", "key": "data.m", "values": ["b"]}),
                 EG)
    index.upsert("topic", "absent", flt({"operatorType": "IsNullOrUndefined", "key": "data.x"}), EG)
    assert index.match("topic", event(m="ab"), EG) == ["absent", "ends", "not-in"]
    assert index.match("topic", event(m="a", x=1), EG) == []


def test_array_elements_each_look_up_the_anchor() -> None:
    index = SubscriptionIndex()
    index.upsert("topic", "arrays", flt({"operatorType": "StringIn", "key": "data.tags", "values": ["x"]},
                                        arrays=True), EG)
    index.upsert("topic", "scalar", flt({"operatorType": "StringIn", "key": "data.tags", "values": ["x"]}),
                 EG)
    assert index.match("topic", event(tags=[1, "y", "X"]), EG) == ["arrays"]
    assert index.match("topic", event(tags="x"), EG) == ["arrays", "scalar"]


def test_thresholds_and_ranges_by_bisection() -> None:
    index = SubscriptionIndex()
    for op, value in [("NumberGreaterThan", 5), ("NumberGreaterThanOrEquals", 5), ("NumberLessThan", 5),
                      ("NumberLessThanOrEquals", 5)]:
        index.upsert("topic", op, flt({"operatorType": op, "key": "data.n", "value": value}), EG)
    index.upsert("topic", "range", flt({"operatorType": "NumberInRange", "key": "data.n",
                                        "values": [[7, 9], [5.5, 6]]}), EG)
    assert index.match("topic", event(n=5), EG) == ["NumberGreaterThanOrEquals", "NumberLessThanOrEquals"]
    assert index.match("topic", event(n="5.75"), EG) == ["NumberGreaterThan", "NumberGreaterThanOrEquals",
                                                         "range"]
    assert index.match("topic", event(n=Decimal("4.9")), EG) == ["NumberLessThan", "NumberLessThanOrEquals"]
    assert "range" in index.candidates("topic", event(n=6.5), EG, advanced=True)  # inside the lower bound
    assert "range" not in index.match("topic", event(n=6.5), EG)
    assert index.match("topic", event(n=True), EG) == []


def test_removing_everything_leaves_nothing_behind() -> None:
    index = SubscriptionIndex()
    filters = {
        "prefix": flt({"operatorType": "StringBeginsWith", "key": "data.p", "values": ["ab", "abc", ""]}),
        "prefix2": flt({"operatorType": "StringBeginsWith", "key": "data.p", "values": ["abd"]}),
        "bool": flt({"operatorType": "BoolEquals", "key": "data.b", "value": True}),
        "gt": flt({"operatorType": "NumberGreaterThan", "key": "data.n", "value": 1}),
        "gt-same": flt({"operatorType": "NumberGreaterThan", "key": "data.n", "value": 1}),
    }
    for subscription_id, f in filters.items():
        index.upsert("topic", subscription_id, f, EG)
    assert index.match("topic", event(p="abdx", b=True, n=2), EG) == sorted(filters)
    assert index.match("topic", event(p="zz"), EG) == ["prefix"]
    index.remove("topic", "prefix")
    assert index.match("topic", event(p="abdx"), EG) == ["prefix2"]
    assert index.match("topic", event(p="abx"), EG) == []
    index.remove("topic", "gt")
    assert index.match("topic", event(n=2), EG) == ["gt-same"]
    for subscription_id in ("prefix2", "bool", "gt-same"):
        assert index.remove("topic", subscription_id)
    assert len(index) == 0
    assert index.match("topic", event(p="abdx", b=True, n=2), EG) == []
