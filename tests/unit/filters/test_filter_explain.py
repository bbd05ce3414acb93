"""The filter tester's explanation: its verdict is routing's, and each condition's part in it
is right (property-tested with the strategies of the semantics tests), with readable reasons."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.filters.test_filter_properties import (
    event_filters,
    events_for,
    ref_advanced,
    ref_matches,
    schemas,
)

from mlgrid.filters import AdvancedFilter, EventFilter, parse_filter
from mlgrid.filters.explain import explain

EG = "EventGridSchema"


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_verdict_is_routings_and_every_condition_is_one_part_of_it(data: st.DataObject) -> None:
    schema = data.draw(schemas)
    f = data.draw(event_filters(schema))
    for event in data.draw(st.lists(events_for(schema, [f]), min_size=1, max_size=4)):
        verdict = explain(f, event, schema)
        assert verdict.matches == ref_matches(f, event, schema), (f, event)
        # The filter matches exactly when every condition passes.
        assert verdict.matches == all(c.matched for c in verdict.conditions), verdict
        advanced = [c for c in verdict.conditions if c.operator is not None]
        assert len(advanced) == len(f.advanced_filters)
        for condition, a in zip(advanced, f.advanced_filters, strict=True):
            assert condition.matched == ref_advanced(a, event, f.enable_advanced_filtering_on_arrays)


def _event(**data: Any) -> dict[str, Any]:
    return {"id": "1", "eventType": "Shop.OrderPlaced", "subject": "orders/eu/42", "data": data,
            "dataVersion": "1", "eventTime": "2026-01-01T00:00:00Z"}


def test_reasons_name_the_value_seen_and_the_condition_that_refused() -> None:
    f = parse_filter({
        "includedEventTypes": ["Shop.OrderPlaced"],
        "subjectBeginsWith": "orders/eu/",
        "advancedFilters": [
            {"operatorType": "NumberGreaterThan", "key": "data.total", "value": 10},
            {"operatorType": "StringIn", "key": "data.currency", "values": ["EUR", "GBP"]},
        ],
    }, input_schema=EG)
    good = explain(f, _event(total=Decimal("12.5"), currency="eur"), EG)
    assert good.matches
    assert [c.condition for c in good.conditions] == [
        "event type in [Shop.OrderPlaced]",
        "subject begins with 'orders/eu/'",
        "data.total NumberGreaterThan 10",
        "data.currency StringIn ['EUR', 'GBP']",
    ]
    bad = explain(f, _event(total=3), EG)
    assert not bad.matches
    total, currency = bad.conditions[2], bad.conditions[3]
    assert not total.matched and total.reason == "data.total is 3: fails" and total.actual == 3
    assert not currency.matched and currency.reason == "data.currency is missing (or null): fails"
    assert bad.as_json()["conditions"][2] == {
        "condition": "data.total NumberGreaterThan 10", "matched": False, "reason": "data.total is 3: fails",
        "key": "data.total", "operatorType": "NumberGreaterThan", "actual": 3,
    }


def test_arrays_and_objects_are_called_type_mismatches() -> None:
    f = EventFilter(advanced_filters=(AdvancedFilter("StringContains", "data.tags", values=("a",)),))
    reason = explain(f, _event(tags=["a"]), EG).conditions[-1].reason
    assert "an array, and filtering on arrays is off" in reason
    on = EventFilter(enable_advanced_filtering_on_arrays=True, advanced_filters=f.advanced_filters)
    assert explain(on, _event(tags=["a"]), EG).matches
