"""Azure CLI's ``--advanced-filter`` syntax becomes the ARM JSON that ``parse_filter`` accepts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from mlgrid.errors import InvalidField
from mlgrid.filters import AdvancedFilter, parse_cli_advanced_filter, parse_filter


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (
            ["data.ModelTags.key1", "StringIn", "value1", "value2"],
            {"operatorType": "StringIn", "key": "data.ModelTags.key1", "values": ["value1", "value2"]},
        ),
        (
            ["data.ModelTags.key1", "StringIn", "('value1')"],
            {"operatorType": "StringIn", "key": "data.ModelTags.key1", "values": ["value1"]},
        ),
        (
            ["data.ModelTags.key1", "StringIn", "('a',", "'b')"],
            {"operatorType": "StringIn", "key": "data.ModelTags.key1", "values": ["a", "b"]},
        ),
        (
            ["data.ModelTags.key1", "StringIn", "('a', 'b, c', \"d\")"],
            {"operatorType": "StringIn", "key": "data.ModelTags.key1", "values": ["a", "b, c", "d"]},
        ),
        (
            ["data.k", "StringNotIn", "(a, b)"],
            {"operatorType": "StringNotIn", "key": "data.k", "values": ["a", "b"]},
        ),
        (
            ["data.k", "StringContains", "('it''s')"],
            {"operatorType": "StringContains", "key": "data.k", "values": ["it's"]},
        ),
        (
            ["data.ModelTags.key1 StringIn ('value1')"],
            {"operatorType": "StringIn", "key": "data.ModelTags.key1", "values": ["value1"]},
        ),
        (
            ["data.x", "NumberInRange", "5,10", "20,30"],
            {"operatorType": "NumberInRange", "key": "data.x", "values": [[5, 10], [20, 30]]},
        ),
        (
            ["data.x", "NumberNotInRange", "-1.5,0.25"],
            {
                "operatorType": "NumberNotInRange",
                "key": "data.x",
                "values": [[Decimal("-1.5"), Decimal("0.25")]],
            },
        ),
        (["data.y", "IsNullOrUndefined"], {"operatorType": "IsNullOrUndefined", "key": "data.y"}),
        (["data.y", "IsNotNull"], {"operatorType": "IsNotNull", "key": "data.y"}),
        (
            ["data.z", "NumberGreaterThan", "5"],
            {"operatorType": "NumberGreaterThan", "key": "data.z", "value": 5},
        ),
        (
            ["data.z", "NumberLessThanOrEquals", "0.30000000000000001"],
            {
                "operatorType": "NumberLessThanOrEquals",
                "key": "data.z",
                "value": Decimal("0.30000000000000001"),
            },
        ),
        (
            ["data.z", "NumberIn", "1", "2.5", "-3", "1e2"],
            {"operatorType": "NumberIn", "key": "data.z", "values": [1, Decimal("2.5"), -3, Decimal("1e2")]},
        ),
        (
            ["data.z", "NumberIn", "(1, 2)"],
            {"operatorType": "NumberIn", "key": "data.z", "values": [1, 2]},
        ),
        (["data.b", "BoolEquals", "true"], {"operatorType": "BoolEquals", "key": "data.b", "value": True}),
        (["data.b", "BoolEquals", "False"], {"operatorType": "BoolEquals", "key": "data.b", "value": False}),
        (
            ["subject", "stringbeginswith", "models/"],
            {"operatorType": "StringBeginsWith", "key": "subject", "values": ["models/"]},
        ),
    ],
)
def test_cli_syntax(tokens: list[str], expected: dict[str, Any]) -> None:
    result = parse_cli_advanced_filter(tokens)
    assert result == expected
    numbers = [*result.get("values", []), result.get("value")]
    flat = [n for item in numbers for n in (item if isinstance(item, list) else [item])]
    assert not any(isinstance(n, float) for n in flat)


@pytest.mark.parametrize(
    "tokens",
    [
        [],
        ["data.x"],
        ["data.x", "StringLike", "a"],
        ["data..x", "StringIn", "a"],
        ["data.x", "StringIn"],
        ["data.x", "StringIn", "()"],
        ["data.x", "StringIn", "('a'"],
        ["data.x", "StringIn", "('a' 'b')"],
        ["data.x", "StringIn", "('a',)"],
        ["data.x", "StringIn", "(a,,b)"],
        ["data.x", "NumberIn", "one"],
        ["data.x", "NumberIn", "nan"],
        ["data.x", "NumberIn", "Infinity"],
        ["data.x", "NumberGreaterThan"],
        ["data.x", "NumberGreaterThan", "1", "2"],
        ["data.x", "NumberInRange", "5"],
        ["data.x", "NumberInRange", "5,10,20"],
        ["data.x", "NumberInRange", "10,5"],
        ["data.x", "NumberInRange", "a,b"],
        ["data.x", "NumberInRange", "(5,10)"],
        ["data.x", "BoolEquals", "yes"],
        ["data.x", "BoolEquals"],
        ["data.x", "IsNullOrUndefined", "x"],
    ],
)
def test_bad_cli_syntax(tokens: list[str]) -> None:
    with pytest.raises(InvalidField) as caught:
        parse_cli_advanced_filter(tokens)
    assert caught.value.field_name == "--advanced-filter"
    assert caught.value.status == 400
    assert "--advanced-filter" in str(caught.value)


def test_cli_output_is_accepted_by_the_server_parser() -> None:
    filters = [
        parse_cli_advanced_filter(["data.ModelTags.key1", "StringIn", "('value1')"]),
        parse_cli_advanced_filter(["data.x", "NumberInRange", "5,10", "20,30"]),
        parse_cli_advanced_filter(["data.y", "IsNullOrUndefined"]),
    ]
    parsed = parse_filter({"advancedFilters": filters}, input_schema="EventGridSchema")
    assert parsed.advanced_filters == (
        AdvancedFilter("StringIn", "data.ModelTags.key1", values=("value1",)),
        AdvancedFilter("NumberInRange", "data.x", values=((5, 10), (20, 30))),
        AdvancedFilter("IsNullOrUndefined", "data.y"),
    )
