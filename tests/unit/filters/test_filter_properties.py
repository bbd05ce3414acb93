"""Compiled filters and the index agree with a deliberately simple reading of SPEC §5.

The reference below is written straight from the spec's sentences, favouring obviousness over
speed: it re-reads keys with a linear scan, converts every number to ``Decimal`` and evaluates
arrays by building lists. It shares no code with ``mlgrid.filters.compile``.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlgrid.filters import (
    AdvancedFilter,
    EventFilter,
    SubscriptionIndex,
    compile_filter,
    filter_to_json,
    parse_filter,
)

EG = "EventGridSchema"
CE = "CloudEventSchemaV1_0"

# --- the reference -------------------------------------------------------------------------------

ABSENT: Any = object()
PLAIN_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?\Z")
NOT_IN_STYLE = {"NumberNotIn", "StringNotIn", "NumberNotInRange"}
NEEDS_A_STRING = {"StringNotBeginsWith", "StringNotEndsWith", "StringNotContains"}
POSITIVE_OF = {
    "NumberNotIn": "NumberIn",
    "NumberNotInRange": "NumberInRange",
    "StringNotIn": "StringIn",
    "StringNotBeginsWith": "StringBeginsWith",
    "StringNotEndsWith": "StringEndsWith",
    "StringNotContains": "StringContains",
}


def ref_read(event: dict[str, Any], key: str) -> Any:
    """Walk ``key`` through objects, ignoring case; anything else on the way means absent."""
    current: Any = event
    for part in key.split("."):
        if not isinstance(current, dict):
            return ABSENT
        if part in current:
            current = current[part]
            continue
        same = [name for name in current if name.lower() == part.lower()]
        if not same:
            return ABSENT
        current = current[same[0]]
    return current


def ref_number(x: Any) -> Decimal | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return Decimal(x)
    if isinstance(x, Decimal):
        return x if x.is_finite() else None
    if isinstance(x, float):
        return Decimal(repr(x)) if math.isfinite(x) else None
    if isinstance(x, str) and PLAIN_DECIMAL.match(x):
        return Decimal(x)
    return None


def ref_positive(operator: str, a: AdvancedFilter, x: Any) -> bool | None:
    """Does ``x`` satisfy the positive form of ``operator``? ``None`` if ``x`` has the wrong type."""
    values = list(a.values or ())
    if operator.startswith("Number"):
        n = ref_number(x)
        if n is None:
            return None
        if operator == "NumberIn":
            return any(n == Decimal(v) for v in values)  # type: ignore[arg-type]
        if operator == "NumberInRange":
            return any(Decimal(lo) <= n <= Decimal(hi) for lo, hi in values)  # type: ignore[misc]
        bound = Decimal(a.value)  # type: ignore[arg-type]
        return {
            "NumberLessThan": n < bound,
            "NumberGreaterThan": n > bound,
            "NumberLessThanOrEquals": n <= bound,
            "NumberGreaterThanOrEquals": n >= bound,
        }[operator]
    if operator == "BoolEquals":
        return None if not isinstance(x, bool) else x == a.value
    if not isinstance(x, str):
        return None
    s = x.lower()
    wanted = [str(v).lower() for v in values]
    if operator == "StringIn":
        return s in wanted
    if operator == "StringBeginsWith":
        return any(s.startswith(w) for w in wanted)
    if operator == "StringEndsWith":
        return any(s.endswith(w) for w in wanted)
    assert operator == "StringContains"
    return any(w in s for w in wanted)


def ref_advanced(a: AdvancedFilter, event: dict[str, Any], arrays: bool) -> bool:
    x = ref_read(event, a.key)
    operator = a.operator_type
    absent = x is ABSENT or x is None
    if operator == "IsNullOrUndefined":
        return absent
    if operator == "IsNotNull":
        return not absent
    negated = operator in POSITIVE_OF
    positive_operator = POSITIVE_OF.get(operator, operator)
    if absent:
        return operator in NOT_IN_STYLE
    if isinstance(x, list):
        if not arrays:
            return operator in NOT_IN_STYLE
        outcomes = [ref_positive(positive_operator, a, element) for element in x]
        typed = [outcome for outcome in outcomes if outcome is not None]
        if not negated:
            return any(typed)
        if operator in NOT_IN_STYLE:
            return not any(typed)
        return len(typed) > 0 and not any(typed)
    outcome = ref_positive(positive_operator, a, x)
    if outcome is None:
        return operator in NOT_IN_STYLE
    return not outcome if negated else outcome


def ref_matches(f: EventFilter, event: dict[str, Any], schema: str) -> bool:
    types = f.included_event_types
    if types and "all" not in [t.lower() for t in types]:
        event_type = event.get("type" if schema == CE else "eventType")
        if not isinstance(event_type, str) or event_type.lower() not in [t.lower() for t in types]:
            return False
    subject = event.get("subject")
    subject = subject if isinstance(subject, str) else ""
    begins, ends = f.subject_begins_with, f.subject_ends_with
    if not f.is_subject_case_sensitive:
        subject, begins, ends = subject.lower(), begins.lower(), ends.lower()
    if not (subject.startswith(begins) and subject.endswith(ends)):
        return False
    return all(ref_advanced(a, event, f.enable_advanced_filtering_on_arrays) for a in f.advanced_filters)


# --- strategies ----------------------------------------------------------------------------------

TYPES = ["Microsoft.MachineLearningServices.ModelRegistered", "Org.Run.Done", "org.run.DONE", "x"]
FILTER_TYPES = [*TYPES, "MICROSOFT.machinelearningservices.modelregistered", "All", "all", "y"]
SUBJECTS = ["", "models/churn:3", "Models/Churn:3", "models/a:1", "runs/r1", "m", "MODELS/x"]
PREFIXES = ["", "m", "M", "models/", "Models/", "models/churn", "models/a:1", "runs/", "zzz"]
SUFFIXES = ["", "3", ":3", "1", "X", "/r1"]
NAMES = ["alpha", "beta", "Gamma"]
NUMBERS: list[Any] = [
    0,
    1,
    -1,
    5,
    9007199254740992,
    9007199254740993,
    Decimal("0.3"),
    Decimal("0.30000000000000001"),
    Decimal("1.50"),
    Decimal("-1.0"),
]
# "" comes last: hypothesis favours early entries, and "" as a filter value matches every string.
STRINGS = ["ab", "a", "A", "Ab", "abc", "b", "ba", "xyz", "5", "-1", "1.5", "0.3", "0.30000000000000001", ""]
ODD_STRINGS = [" 5", "+5", "1e2", ".5", "5.", "true", "9007199254740993"]
FLOATS = [0.3, 1.5, 5.0, -1.0, float("nan"), float("inf")]

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(NUMBERS),
    st.sampled_from(STRINGS + ODD_STRINGS),
    st.sampled_from(FLOATS),
)
json_values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(NAMES), children, max_size=3)
    ),
    max_leaves=12,
)
data_values = st.one_of(st.dictionaries(st.sampled_from(NAMES), json_values, max_size=3), json_values)


def case_variants(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from([name, name.lower(), name.upper(), name[:1].upper() + name[1:]])


@st.composite
def data_keys(draw: st.DrawFn) -> str:
    depth = draw(st.integers(min_value=0, max_value=2))
    parts = [draw(case_variants("data"))] + [
        draw(case_variants(draw(st.sampled_from(NAMES)))) for _ in range(depth)
    ]
    return ".".join(parts)


EG_ENVELOPE_KEYS = ["id", "topic", "subject", "eventType", "dataVersion"]
CE_ENVELOPE_KEYS = ["id", "source", "type", "subject", "specversion", "myext", "otherext"]


@st.composite
def advanced_filters(draw: st.DrawFn, schema: str) -> AdvancedFilter:
    envelope = EG_ENVELOPE_KEYS if schema == EG else CE_ENVELOPE_KEYS
    key = draw(st.one_of(data_keys(), st.sampled_from(envelope).flatmap(case_variants)))
    operator = draw(
        st.sampled_from(
            [
                "NumberIn",
                "NumberNotIn",
                "NumberLessThan",
                "NumberGreaterThan",
                "NumberLessThanOrEquals",
                "NumberGreaterThanOrEquals",
                "NumberInRange",
                "NumberNotInRange",
                "BoolEquals",
                "StringIn",
                "StringNotIn",
                "StringBeginsWith",
                "StringNotBeginsWith",
                "StringEndsWith",
                "StringNotEndsWith",
                "StringContains",
                "StringNotContains",
                "IsNullOrUndefined",
                "IsNotNull",
            ]
        )
    )
    if operator in ("NumberIn", "NumberNotIn"):
        numbers = draw(st.lists(st.sampled_from(NUMBERS), min_size=1, max_size=3))
        return AdvancedFilter(operator, key, values=tuple(numbers))
    if operator in ("NumberInRange", "NumberNotInRange"):
        pairs = draw(
            st.lists(st.tuples(st.sampled_from(NUMBERS), st.sampled_from(NUMBERS)), min_size=1, max_size=3)
        )
        return AdvancedFilter(operator, key, values=tuple((min(p), max(p)) for p in pairs))
    if operator.startswith("Number"):
        return AdvancedFilter(operator, key, value=draw(st.sampled_from(NUMBERS)))
    if operator == "BoolEquals":
        return AdvancedFilter(operator, key, value=draw(st.booleans()))
    if operator.startswith("String"):
        strings = draw(st.lists(st.sampled_from(STRINGS), min_size=1, max_size=3))
        return AdvancedFilter(operator, key, values=tuple(strings))
    return AdvancedFilter(operator, key)


@st.composite
def event_filters(draw: st.DrawFn, schema: str) -> EventFilter:
    types = draw(st.none() | st.just(()) | st.lists(st.sampled_from(FILTER_TYPES), max_size=3).map(tuple))
    return EventFilter(
        included_event_types=types,
        subject_begins_with=draw(st.just("") | st.sampled_from(PREFIXES)),
        subject_ends_with=draw(st.just("") | st.sampled_from(SUFFIXES)),
        is_subject_case_sensitive=draw(st.booleans()),
        enable_advanced_filtering_on_arrays=draw(st.booleans()),
        advanced_filters=tuple(draw(st.lists(advanced_filters(schema), max_size=3))),
    )


@st.composite
def events(draw: st.DrawFn, schema: str) -> dict[str, Any]:
    if schema == EG:
        return {
            "id": draw(st.sampled_from(["e1", "E1", "5"])),
            "topic": "/subscriptions/s/resourceGroups/g/providers/Microsoft.EventGrid/topics/t",
            "subject": draw(st.sampled_from(SUBJECTS)),
            "eventType": draw(st.sampled_from(TYPES)),
            "eventTime": "2024-01-01T00:00:00Z",
            "data": draw(data_values),
            "dataVersion": draw(st.sampled_from(["", "1", "1.0"])),
            "metadataVersion": "1",
        }
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": draw(st.sampled_from(["e1", "E1", "5"])),
        "source": "/topics/t",
        "type": draw(st.sampled_from(TYPES)),
        "time": "2024-01-01T00:00:00Z",
        "data": draw(data_values),
    }
    if draw(st.booleans()):
        event["subject"] = draw(st.sampled_from(SUBJECTS))
    if draw(st.booleans()):
        event["myext"] = draw(json_values)
    return event


element_lists = st.lists(leaves, max_size=4)


def related_values(a: AdvancedFilter) -> st.SearchStrategy[Any]:
    """Event values close to what ``a`` compares against: equal, re-cased, stringified, off by one."""
    raw = [v for item in (a.values or ()) for v in (item if isinstance(item, tuple) else (item,))]
    if a.value is not None:
        raw.append(a.value)
    close: list[Any] = [True, False, None, {"alpha": 1}]
    for v in raw:
        if isinstance(v, str):
            close += [v, v.upper(), v + "z", "z" + v]
        elif not isinstance(v, bool):
            close += [v, str(v), f"{v}.", f"+{v}", v + 1, v - 1, f" {v}"]
    return st.sampled_from(close + STRINGS + ODD_STRINGS)


@st.composite
def events_for(draw: st.DrawFn, schema: str, filters: list[EventFilter]) -> dict[str, Any]:
    """An event that, most of the time, has something at the keys the filters read.

    Random data alone rarely lands on a filter's key; planting values there (in whatever casing
    the filter spells the key, or another) is what makes the comparison bite.
    """
    event = draw(events(schema))
    for f in filters:
        for a in f.advanced_filters:
            if not draw(st.integers(0, 4)):
                continue
            near = related_values(a)
            shape = draw(st.integers(0, 9))
            if shape < 4:
                value = draw(near)
            elif shape < 7:
                value = draw(st.lists(near, min_size=1, max_size=4))
            else:
                value = draw((leaves, element_lists, json_values)[shape - 7])
            head, *path = a.key.split(".")
            if head.lower() != "data":
                if schema == CE and head.lower() not in ("id", "source", "type", "specversion"):
                    event[head.lower()] = value
                continue
            if not path:
                event["data"] = value
                continue
            if not isinstance(event["data"], dict):
                event["data"] = {}
            current = event["data"]
            for segment in path[:-1]:
                name = draw(st.sampled_from([segment, segment.lower()]))
                if not isinstance(current.get(name), dict):
                    current[name] = {}
                current = current[name]
            current[draw(st.sampled_from([path[-1], path[-1].lower(), path[-1].upper()]))] = value
    return event


schemas = st.sampled_from([EG, CE])
PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(st.data())
def test_compiled_filter_agrees_with_reference(data: st.DataObject) -> None:
    schema = data.draw(schemas)
    f = data.draw(event_filters(schema))
    predicate = compile_filter(f, schema)
    for event in data.draw(st.lists(events_for(schema, [f]), min_size=1, max_size=5)):
        assert predicate(event) == ref_matches(f, event, schema), (f, event)


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_each_advanced_filter_agrees_with_reference(data: st.DataObject) -> None:
    """One advanced filter at a time, so that no other condition hides a disagreement."""
    schema = data.draw(schemas)
    a = data.draw(advanced_filters(schema))
    arrays = data.draw(st.booleans())
    f = EventFilter(enable_advanced_filtering_on_arrays=arrays, advanced_filters=(a,))
    predicate = compile_filter(f, schema)
    for event in data.draw(st.lists(events_for(schema, [f]), min_size=1, max_size=8)):
        assert predicate(event) == ref_advanced(a, event, arrays), (a, arrays, event)


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_index_agrees_with_reference(data: st.DataObject) -> None:
    schema = data.draw(schemas)
    filters = {f"s{i}": data.draw(event_filters(schema)) for i in range(data.draw(st.integers(1, 8)))}
    probes = data.draw(st.lists(events_for(schema, list(filters.values())), min_size=1, max_size=4))
    index = SubscriptionIndex()
    for subscription_id, f in filters.items():
        index.upsert("topic", subscription_id, f, schema)
        index.upsert("elsewhere", subscription_id, EventFilter(), schema)

    def check() -> None:
        for event in probes:
            expected = sorted(s for s, f in filters.items() if ref_matches(f, event, schema))
            assert index.match("topic", event, schema) == expected, (filters, event)

    check()
    for subscription_id in data.draw(st.lists(st.sampled_from(sorted(filters)), unique=True)):
        assert index.remove("topic", subscription_id)
        del filters[subscription_id]
    check()
    for subscription_id in data.draw(st.lists(st.sampled_from(["s0", "s3", "s11"]), unique=True)):
        filters[subscription_id] = data.draw(event_filters(schema))
        index.upsert("topic", subscription_id, filters[subscription_id], schema)
    check()


@settings(max_examples=200, deadline=None, database=None)
@given(st.data())
def test_json_round_trip(data: st.DataObject) -> None:
    schema = data.draw(schemas)
    f = data.draw(event_filters(schema))
    assert parse_filter(filter_to_json(f), input_schema=schema) == f
