"""The SDK's advanced-filter objects produce Azure's JSON (SPEC §5) and parse on the server."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mlgrid.client import filters as f
from mlgrid.filters.parse import parse_filter


def test_each_operator_has_azures_shape() -> None:
    cases = [
        (
            f.StringIn("data.ModelTags.key1", ["value1"]),
            {"operatorType": "StringIn", "key": "data.ModelTags.key1", "values": ["value1"]},
        ),
        (
            f.NumberGreaterThan("data.x", 5),
            {"operatorType": "NumberGreaterThan", "key": "data.x", "value": 5},
        ),
        (
            f.NumberInRange("data.x", [(0, 1), [5, 10]]),
            {"operatorType": "NumberInRange", "key": "data.x", "values": [[0, 1], [5, 10]]},
        ),
        (f.BoolEquals("data.ok", True), {"operatorType": "BoolEquals", "key": "data.ok", "value": True}),
        (f.IsNullOrUndefined("data.y"), {"operatorType": "IsNullOrUndefined", "key": "data.y"}),
        (f.IsNotNull("data.y"), {"operatorType": "IsNotNull", "key": "data.y"}),
        (
            f.NumberIn("data.n", [Decimal("0.1")]),
            {"operatorType": "NumberIn", "key": "data.n", "values": [Decimal("0.1")]},
        ),
    ]
    for item, expected in cases:
        assert item.to_json() == expected
        assert f.filter_json(item) == expected


def test_every_class_is_accepted_by_the_server_parser() -> None:
    objects = [
        f.NumberIn("data.a", [1]),
        f.NumberNotIn("data.a", [1]),
        f.NumberLessThan("data.a", 1),
        f.NumberGreaterThan("data.a", 1),
        f.NumberLessThanOrEquals("data.a", 1),
        f.NumberGreaterThanOrEquals("data.a", 1),
        f.NumberInRange("data.a", [(1, 2)]),
        f.NumberNotInRange("data.a", [(1, 2)]),
        f.BoolEquals("data.a", False),
        f.StringIn("data.a", ["x"]),
        f.StringNotIn("data.a", ["x"]),
        f.StringBeginsWith("data.a", ["x"]),
        f.StringNotBeginsWith("data.a", ["x"]),
        f.StringEndsWith("data.a", ["x"]),
        f.StringNotEndsWith("data.a", ["x"]),
        f.StringContains("data.a", ["x"]),
        f.StringNotContains("data.a", ["x"]),
        f.IsNullOrUndefined("data.a"),
    ]
    parsed = parse_filter({"advancedFilters": [o.to_json() for o in objects]}, input_schema="EventGridSchema")
    assert len(parsed.advanced_filters) == len(objects)
    assert [a.operator_type for a in parsed.advanced_filters] == [o.operator_type for o in objects]


def test_filters_are_values() -> None:
    assert f.StringIn("k", ["a"]) == f.StringIn("k", ("a",))
    assert f.StringIn("k", ["a"]) != f.StringNotIn("k", ["a"])
    with pytest.raises(TypeError):
        f.StringIn("k", "abc")
    with pytest.raises(ValueError):
        f.NumberInRange("k", [(1, 2, 3)])
    assert f.filter_json({"operatorType": "IsNotNull", "key": "data.x"}) == {
        "operatorType": "IsNotNull",
        "key": "data.x",
    }
