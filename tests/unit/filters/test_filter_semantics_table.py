"""SPEC §5, case by case: one row per (operator, filter value, event value, array flag).

The expected outcomes were written from the text of SPEC §5, not by running the code:

* missing key / null / wrong type: only NumberNotIn, StringNotIn, NumberNotInRange and
  IsNullOrUndefined match; StringNot{BeginsWith,EndsWith,Contains} do not;
* numbers: int/Decimal compared exactly, numeric strings ``-?[0-9]+(\\.[0-9]+)?`` count,
  booleans never; strings compared case-insensitively;
* arrays: a type mismatch without enableAdvancedFilteringOnArrays; with it, wrong-type elements
  are ignored, positive operators need one matching element, NotIn-style operators need none,
  StringNot* need at least one string element and no matching one;
* IsNullOrUndefined / IsNotNull look at presence only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from mlgrid.filters import compile_filter, parse_filter

MISSING: Any = object()
D = Decimal

VALUE_OPERATORS = {
    "NumberLessThan",
    "NumberGreaterThan",
    "NumberLessThanOrEquals",
    "NumberGreaterThanOrEquals",
    "BoolEquals",
}
PRESENCE = {"IsNullOrUndefined", "IsNotNull"}

EG_TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/default/providers/"
    "Microsoft.MachineLearningServices/workspaces/ws1"
)


@dataclass(frozen=True)
class Case:
    operator: str
    argument: Any
    event_value: Any
    expected: bool
    arrays: bool = False
    key: str = "data.v"

    def label(self) -> str:
        value = "MISSING" if self.event_value is MISSING else repr(self.event_value)
        flag = " arrays" if self.arrays else ""
        return f"{self.operator}({self.argument!r}) {self.key}={value}{flag} -> {self.expected}"


def c(operator: str, argument: Any, event_value: Any, expected: bool, arrays: bool = False) -> Case:
    return Case(operator, argument, event_value, expected, arrays)


CASES: list[Case] = [
    # --- NumberIn -----------------------------------------------------------------------------
    c("NumberIn", [5, 10], MISSING, False),
    c("NumberIn", [5, 10], None, False),
    c("NumberIn", [5, 10], 5, True),
    c("NumberIn", [5, 10], 7, False),
    c("NumberIn", [5, 10], D("5.0"), True),
    c("NumberIn", [5, 10], D("10.00"), True),
    c("NumberIn", [5, 10], 5.0, True),
    c("NumberIn", [5, 10], "5", True),
    c("NumberIn", [5, 10], "5.0", True),
    c("NumberIn", [5, 10], "-5", False),
    c("NumberIn", [5, 10], " 5", False),
    c("NumberIn", [5, 10], "5 ", False),
    c("NumberIn", [5, 10], "+5", False),
    c("NumberIn", [5, 10], "5e0", False),
    c("NumberIn", [5, 10], "5.", False),
    c("NumberIn", [5, 10], "abc", False),
    c("NumberIn", [D("0.5")], ".5", False),
    c("NumberIn", [D("0.5")], "0.5", True),
    c("NumberIn", [1], True, False),
    c("NumberIn", [0], False, False),
    c("NumberIn", [1], 1, True),
    c("NumberIn", [5, 10], {"v": 5}, False),
    c("NumberIn", [5, 10], [5], False),
    c("NumberIn", [5, 10], [5], True, arrays=True),
    c("NumberIn", [5, 10], [1, 2], False, arrays=True),
    c("NumberIn", [5, 10], ["5"], True, arrays=True),
    c("NumberIn", [5, 10], [True, 10], True, arrays=True),
    c("NumberIn", [1], [True], False, arrays=True),
    c("NumberIn", [5, 10], [{"v": 5}], False, arrays=True),
    c("NumberIn", [5, 10], [[5]], False, arrays=True),
    c("NumberIn", [5, 10], [], False, arrays=True),
    # --- NumberNotIn ----------------------------------------------------------------------------
    c("NumberNotIn", [5, 10], MISSING, True),
    c("NumberNotIn", [5, 10], None, True),
    c("NumberNotIn", [5, 10], 5, False),
    c("NumberNotIn", [5, 10], 7, True),
    c("NumberNotIn", [5, 10], "10", False),
    c("NumberNotIn", [5, 10], D("5.00"), False),
    c("NumberNotIn", [5, 10], "x", True),
    c("NumberNotIn", [1], True, True),
    c("NumberNotIn", [5, 10], {"v": 5}, True),
    c("NumberNotIn", [5, 10], [5], True),
    c("NumberNotIn", [5, 10], [], True),
    c("NumberNotIn", [5, 10], [7], True, arrays=True),
    c("NumberNotIn", [5, 10], [7, 5], False, arrays=True),
    c("NumberNotIn", [5, 10], [7, "10"], False, arrays=True),
    c("NumberNotIn", [5, 10], [], True, arrays=True),
    c("NumberNotIn", [5, 10], ["x", True, None, {"v": 5}], True, arrays=True),
    # --- NumberLessThan -------------------------------------------------------------------------
    c("NumberLessThan", 5, MISSING, False),
    c("NumberLessThan", 5, None, False),
    c("NumberLessThan", 5, 4, True),
    c("NumberLessThan", 5, 5, False),
    c("NumberLessThan", 5, 6, False),
    c("NumberLessThan", 5, D("4.999"), True),
    c("NumberLessThan", 5, "4", True),
    c("NumberLessThan", 5, "-10", True),
    c("NumberLessThan", 5, "4.5", True),
    c("NumberLessThan", 5, "-4.5e1", False),
    c("NumberLessThan", 5, "abc", False),
    c("NumberLessThan", 5, True, False),
    c("NumberLessThan", 5, False, False),
    c("NumberLessThan", 5, {"a": 1}, False),
    c("NumberLessThan", 5, [1], False),
    c("NumberLessThan", 5, [1], True, arrays=True),
    c("NumberLessThan", 5, [6, 7], False, arrays=True),
    c("NumberLessThan", 5, [6, 1], True, arrays=True),
    c("NumberLessThan", 5, ["1"], True, arrays=True),
    c("NumberLessThan", 5, [False, "x"], False, arrays=True),
    # --- NumberGreaterThan, exact decimals ------------------------------------------------------
    c("NumberGreaterThan", D("0.3"), D("0.30000000000000001"), True),
    c("NumberGreaterThan", D("0.3"), D("0.3"), False),
    c("NumberGreaterThan", D("0.3"), D("0.300"), False),
    c("NumberGreaterThan", D("0.3"), "0.30000000000000001", True),
    c("NumberGreaterThan", D("0.3"), 0, False),
    c("NumberGreaterThan", D("0.3"), 1, True),
    c("NumberGreaterThan", D("0.3"), 0.30000000000000004, True),
    c("NumberGreaterThan", D("0.3"), 0.3, False),
    c("NumberGreaterThan", 9007199254740992, 9007199254740993, True),
    c("NumberGreaterThan", 9007199254740992, 9007199254740992, False),
    c("NumberGreaterThan", 9007199254740992, "9007199254740993", True),
    c("NumberGreaterThan", 0, MISSING, False),
    c("NumberGreaterThan", 0, True, False),
    c("NumberGreaterThan", 0, "1", True),
    c("NumberGreaterThan", 0, [-1, "2"], True, arrays=True),
    # --- NumberLessThanOrEquals / NumberGreaterThanOrEquals --------------------------------------
    c("NumberLessThanOrEquals", 5, 5, True),
    c("NumberLessThanOrEquals", 5, D("5.0000000000000000001"), False),
    c("NumberLessThanOrEquals", 5, "5", True),
    c("NumberLessThanOrEquals", 5, 6, False),
    c("NumberLessThanOrEquals", 5, MISSING, False),
    c("NumberLessThanOrEquals", 5, None, False),
    c("NumberLessThanOrEquals", 5, [9, 5], True, arrays=True),
    c("NumberGreaterThanOrEquals", -1, -1, True),
    c("NumberGreaterThanOrEquals", -1, "-1", True),
    c("NumberGreaterThanOrEquals", -1, "-1.5", False),
    c("NumberGreaterThanOrEquals", -1, "-0", True),
    c("NumberGreaterThanOrEquals", -1, None, False),
    c("NumberGreaterThanOrEquals", -1, [-2, -1], True, arrays=True),
    c("NumberGreaterThanOrEquals", -1, [-2, -1], False),
    # --- NumberInRange --------------------------------------------------------------------------
    c("NumberInRange", [[1, 5], [10, 20]], 1, True),
    c("NumberInRange", [[1, 5], [10, 20]], 5, True),
    c("NumberInRange", [[1, 5], [10, 20]], D("5.5"), False),
    c("NumberInRange", [[1, 5], [10, 20]], 10, True),
    c("NumberInRange", [[1, 5], [10, 20]], 20, True),
    c("NumberInRange", [[1, 5], [10, 20]], 21, False),
    c("NumberInRange", [[1, 5], [10, 20]], 0, False),
    c("NumberInRange", [[1, 5], [10, 20]], "7", False),
    c("NumberInRange", [[1, 5], [10, 20]], "15", True),
    c("NumberInRange", [[1, 5], [10, 20]], MISSING, False),
    c("NumberInRange", [[1, 5], [10, 20]], None, False),
    c("NumberInRange", [[1, 5], [10, 20]], "x", False),
    c("NumberInRange", [[0, 1]], True, False),
    c("NumberInRange", [[1, 5], [10, 20]], {"v": 3}, False),
    c("NumberInRange", [[1, 5], [10, 20]], [0, 15], True, arrays=True),
    c("NumberInRange", [[1, 5], [10, 20]], [0, 15], False),
    c("NumberInRange", [[1, 5], [10, 20]], [0, 7], False, arrays=True),
    c("NumberInRange", [[D("0.1"), D("0.2")]], D("0.2000000000000000001"), False),
    c("NumberInRange", [[D("0.1"), D("0.2")]], D("0.1999999999999999999"), True),
    # --- NumberNotInRange -----------------------------------------------------------------------
    c("NumberNotInRange", [[1, 5]], MISSING, True),
    c("NumberNotInRange", [[1, 5]], None, True),
    c("NumberNotInRange", [[1, 5]], 3, False),
    c("NumberNotInRange", [[1, 5]], 6, True),
    c("NumberNotInRange", [[1, 5]], "3", False),
    c("NumberNotInRange", [[1, 5]], "abc", True),
    c("NumberNotInRange", [[0, 5]], True, True),
    c("NumberNotInRange", [[1, 5]], {"v": 3}, True),
    c("NumberNotInRange", [[1, 5]], D("5.0000001"), True),
    c("NumberNotInRange", [[1, 5]], [3], True),
    c("NumberNotInRange", [[1, 5]], [6, 7], True, arrays=True),
    c("NumberNotInRange", [[1, 5]], [6, 3], False, arrays=True),
    c("NumberNotInRange", [[1, 5]], [], True, arrays=True),
    c("NumberNotInRange", [[1, 5]], ["x", {"v": 3}], True, arrays=True),
    # --- BoolEquals -----------------------------------------------------------------------------
    c("BoolEquals", True, True, True),
    c("BoolEquals", True, False, False),
    c("BoolEquals", True, "true", False),
    c("BoolEquals", True, 1, False),
    c("BoolEquals", True, MISSING, False),
    c("BoolEquals", True, None, False),
    c("BoolEquals", True, {"v": True}, False),
    c("BoolEquals", True, [True], False),
    c("BoolEquals", True, [True], True, arrays=True),
    c("BoolEquals", True, [False], False, arrays=True),
    c("BoolEquals", True, [False, True], True, arrays=True),
    c("BoolEquals", True, ["true", 1], False, arrays=True),
    c("BoolEquals", False, False, True),
    c("BoolEquals", False, True, False),
    c("BoolEquals", False, 0, False),
    c("BoolEquals", False, MISSING, False),
    c("BoolEquals", False, "", False),
    # --- StringIn -------------------------------------------------------------------------------
    c("StringIn", ["Value1", "other"], "value1", True),
    c("StringIn", ["Value1", "other"], "VALUE1", True),
    c("StringIn", ["Value1", "other"], "value2", False),
    c("StringIn", ["Value1", "other"], "value", False),
    c("StringIn", ["Value1", "other"], "", False),
    c("StringIn", ["Value1", "other"], MISSING, False),
    c("StringIn", ["Value1", "other"], None, False),
    c("StringIn", ["5"], 5, False),
    c("StringIn", ["5"], "5", True),
    c("StringIn", ["true"], True, False),
    c("StringIn", ["Value1", "other"], {"v": "value1"}, False),
    c("StringIn", ["Value1", "other"], ["value1"], False),
    c("StringIn", ["Value1", "other"], ["x", "VALUE1"], True, arrays=True),
    c("StringIn", ["Value1", "other"], ["x"], False, arrays=True),
    c("StringIn", ["Value1", "other"], [1, "Other"], True, arrays=True),
    c("StringIn", ["Value1", "other"], [], False, arrays=True),
    # --- StringNotIn ----------------------------------------------------------------------------
    c("StringNotIn", ["a", "b"], MISSING, True),
    c("StringNotIn", ["a", "b"], None, True),
    c("StringNotIn", ["a", "b"], "A", False),
    c("StringNotIn", ["a", "b"], "c", True),
    c("StringNotIn", ["a", "b"], 5, True),
    c("StringNotIn", ["a", "b"], True, True),
    c("StringNotIn", ["a", "b"], {"v": "a"}, True),
    c("StringNotIn", ["a", "b"], ["a"], True),
    c("StringNotIn", ["a", "b"], ["c", "d"], True, arrays=True),
    c("StringNotIn", ["a", "b"], ["c", "B"], False, arrays=True),
    c("StringNotIn", ["a", "b"], [], True, arrays=True),
    c("StringNotIn", ["a", "b"], [1, 2], True, arrays=True),
    # --- StringBeginsWith -----------------------------------------------------------------------
    c("StringBeginsWith", ["ab"], "abc", True),
    c("StringBeginsWith", ["ab"], "ABc", True),
    c("StringBeginsWith", ["ab"], "ab", True),
    c("StringBeginsWith", ["ab"], "cab", False),
    c("StringBeginsWith", ["ab"], "", False),
    c("StringBeginsWith", ["ab", "x"], "xyz", True),
    c("StringBeginsWith", ["ab"], MISSING, False),
    c("StringBeginsWith", ["1"], 12, False),
    c("StringBeginsWith", ["ab"], ["abz"], False),
    c("StringBeginsWith", ["ab"], ["x", "Abz"], True, arrays=True),
    c("StringBeginsWith", ["ab"], [{"v": "abz"}], False, arrays=True),
    # --- StringNotBeginsWith --------------------------------------------------------------------
    c("StringNotBeginsWith", ["ab"], MISSING, False),
    c("StringNotBeginsWith", ["ab"], None, False),
    c("StringNotBeginsWith", ["ab"], "abc", False),
    c("StringNotBeginsWith", ["ab"], "ABC", False),
    c("StringNotBeginsWith", ["ab"], "xyz", True),
    c("StringNotBeginsWith", ["ab"], "", True),
    c("StringNotBeginsWith", ["ab"], 5, False),
    c("StringNotBeginsWith", ["ab"], True, False),
    c("StringNotBeginsWith", ["ab"], {"v": "x"}, False),
    c("StringNotBeginsWith", ["ab"], ["x"], False),
    c("StringNotBeginsWith", ["ab"], ["x", "y"], True, arrays=True),
    c("StringNotBeginsWith", ["ab"], ["x", "ABy"], False, arrays=True),
    c("StringNotBeginsWith", ["ab"], [], False, arrays=True),
    c("StringNotBeginsWith", ["ab"], [1, 2], False, arrays=True),
    c("StringNotBeginsWith", ["ab"], [1, "x"], True, arrays=True),
    # --- StringEndsWith / StringNotEndsWith -----------------------------------------------------
    c("StringEndsWith", ["_v2", ".csv"], "data.CSV", True),
    c("StringEndsWith", ["_v2", ".csv"], "model_V2", True),
    c("StringEndsWith", ["_v2", ".csv"], "model_v3", False),
    c("StringEndsWith", ["_v2", ".csv"], MISSING, False),
    c("StringEndsWith", ["2"], 2, False),
    c("StringEndsWith", ["_v2", ".csv"], ["a.txt", "b.csv"], True, arrays=True),
    c("StringEndsWith", ["_v2", ".csv"], ["b.csv"], False),
    c("StringNotEndsWith", [".csv"], "a.csv", False),
    c("StringNotEndsWith", [".csv"], "A.CSV", False),
    c("StringNotEndsWith", [".csv"], "a.txt", True),
    c("StringNotEndsWith", [".csv"], MISSING, False),
    c("StringNotEndsWith", [".csv"], None, False),
    c("StringNotEndsWith", [".csv"], 1, False),
    c("StringNotEndsWith", [".csv"], ["a.txt"], False),
    c("StringNotEndsWith", [".csv"], ["a.txt"], True, arrays=True),
    c("StringNotEndsWith", [".csv"], ["a.txt", "B.CSV"], False, arrays=True),
    c("StringNotEndsWith", [".csv"], [], False, arrays=True),
    c("StringNotEndsWith", [".csv"], [{"name": "a.txt"}], False, arrays=True),
    # --- StringContains / StringNotContains -----------------------------------------------------
    c("StringContains", ["ell"], "Hello", True),
    c("StringContains", ["ell"], "HELLO", True),
    c("StringContains", ["ell"], "help", False),
    c("StringContains", ["ell", "orl"], "world", True),
    c("StringContains", ["ell"], MISSING, False),
    c("StringContains", ["11"], 1100, False),
    c("StringContains", ["ell"], ["yellow"], False),
    c("StringContains", ["ell"], ["x", "yELLow"], True, arrays=True),
    c("StringNotContains", ["ell"], MISSING, False),
    c("StringNotContains", ["ell"], None, False),
    c("StringNotContains", ["ell"], "hello", False),
    c("StringNotContains", ["ell"], "world", True),
    c("StringNotContains", ["ell"], 5, False),
    c("StringNotContains", ["ell"], {"v": "world"}, False),
    c("StringNotContains", ["ell"], ["world"], False),
    c("StringNotContains", ["ell"], ["world"], True, arrays=True),
    c("StringNotContains", ["ell"], ["world", "bell"], False, arrays=True),
    c("StringNotContains", ["ell"], [], False, arrays=True),
    c("StringNotContains", ["ell"], [None, 3], False, arrays=True),
    # --- IsNullOrUndefined / IsNotNull ----------------------------------------------------------
    c("IsNullOrUndefined", None, MISSING, True),
    c("IsNullOrUndefined", None, None, True),
    c("IsNullOrUndefined", None, 0, False),
    c("IsNullOrUndefined", None, "", False),
    c("IsNullOrUndefined", None, False, False),
    c("IsNullOrUndefined", None, {}, False),
    c("IsNullOrUndefined", None, [], False),
    c("IsNullOrUndefined", None, [], False, arrays=True),
    c("IsNullOrUndefined", None, [None], False, arrays=True),
    c("IsNotNull", None, MISSING, False),
    c("IsNotNull", None, None, False),
    c("IsNotNull", None, 0, True),
    c("IsNotNull", None, "", True),
    c("IsNotNull", None, False, True),
    c("IsNotNull", None, {}, True),
    c("IsNotNull", None, [], True),
    c("IsNotNull", None, [None], True, arrays=True),
]


def advanced_filter_json(operator: str, argument: Any, key: str) -> dict[str, Any]:
    body: dict[str, Any] = {"operatorType": operator, "key": key}
    if operator in PRESENCE:
        return body
    body["value" if operator in VALUE_OPERATORS else "values"] = argument
    return body


def eg_event(data: Any) -> dict[str, Any]:
    return {
        "id": "e-1",
        "topic": EG_TOPIC,
        "subject": "models/churn:3",
        "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
        "eventTime": "2024-01-01T00:00:00Z",
        "data": data,
        "dataVersion": "",
        "metadataVersion": "1",
    }


def evaluate(case: Case) -> bool:
    raw = {
        "enableAdvancedFilteringOnArrays": case.arrays,
        "advancedFilters": [advanced_filter_json(case.operator, case.argument, case.key)],
    }
    event_filter = parse_filter(raw, input_schema="EventGridSchema")
    data = {"other": 1} if case.event_value is MISSING else {"other": 1, "v": case.event_value}
    return compile_filter(event_filter, "EventGridSchema")(eg_event(data))


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 150


@pytest.mark.parametrize("case", CASES, ids=[case.label() for case in CASES])
def test_operator_table(case: Case) -> None:
    assert evaluate(case) is case.expected


# --- numbers straight from JSON text, as the broker parses them ------------------------------------


@pytest.mark.parametrize(
    ("filter_json", "event_json", "expected"),
    [
        (
            '{"operatorType": "NumberGreaterThan", "key": "data.x", "value": 0.3}',
            '{"x": 0.30000000000000001}',
            True,
        ),
        (
            '{"operatorType": "NumberIn", "key": "data.x", "values": [0.3]}',
            '{"x": 0.30000000000000001}',
            False,
        ),
        ('{"operatorType": "NumberIn", "key": "data.x", "values": [0.3]}', '{"x": 0.30}', True),
        (
            '{"operatorType": "NumberIn", "key": "data.x", "values": [9007199254740992]}',
            '{"x": 9007199254740993}',
            False,
        ),
        (
            '{"operatorType": "NumberNotIn", "key": "data.x", "values": [9007199254740992]}',
            '{"x": 9007199254740993}',
            True,
        ),
        (
            '{"operatorType": "NumberLessThan", "key": "data.x", "value": 1e2}',
            '{"x": 99.99999999999999999}',
            True,
        ),
        ('{"operatorType": "NumberInRange", "key": "data.x", "values": [[0.1, 0.3]]}', '{"x": 0.1}', True),
    ],
)
def test_numbers_parsed_from_json_text(filter_json: str, event_json: str, expected: bool) -> None:
    raw = {"advancedFilters": [json.loads(filter_json, parse_float=Decimal)]}
    event = eg_event(json.loads(event_json, parse_float=Decimal))
    predicate = compile_filter(parse_filter(raw, input_schema="EventGridSchema"), "EventGridSchema")
    assert predicate(event) is expected


# --- keys: nesting, casing, paths through non-objects -------------------------------------------------

MODEL_DATA = {"ModelName": "churn", "ModelVersion": "3", "ModelTags": {"key1": "value1", "Stage": "prod"}}


@dataclass(frozen=True)
class KeyCase:
    key: str
    operator: str
    argument: Any
    data: Any
    expected: bool


KEY_CASES = [
    KeyCase("data.ModelTags.key1", "StringIn", ["value1"], MODEL_DATA, True),
    KeyCase("DATA.modeltags.KEY1", "StringIn", ["VALUE1"], MODEL_DATA, True),
    KeyCase("data.ModelTags.key1", "StringIn", ["value1"], {"modeltags": {"KEY1": "Value1"}}, True),
    KeyCase("data.ModelTags.stage", "StringNotIn", ["dev"], MODEL_DATA, True),
    KeyCase("data.ModelTags.key2", "StringNotIn", ["dev"], MODEL_DATA, True),
    KeyCase("data.ModelTags.key2", "StringIn", ["dev"], MODEL_DATA, False),
    KeyCase("data.ModelTags.key2", "IsNullOrUndefined", None, MODEL_DATA, True),
    KeyCase("data.ModelVersion", "NumberGreaterThan", 2, MODEL_DATA, True),
    KeyCase("data.modelversion", "NumberIn", [3], MODEL_DATA, True),
    KeyCase("data.ModelTags.key1.deeper", "StringIn", ["value1"], MODEL_DATA, False),
    KeyCase("data.ModelTags.key1.deeper", "StringNotIn", ["value1"], MODEL_DATA, True),
    KeyCase("data.ModelTags.key1.deeper", "StringNotContains", ["x"], MODEL_DATA, False),
    KeyCase("data.ModelTags.key1.deeper", "IsNullOrUndefined", None, MODEL_DATA, True),
    KeyCase("data.ModelTags.key1.deeper", "IsNotNull", None, MODEL_DATA, False),
    KeyCase("data.items.name", "StringIn", ["a"], {"items": [{"name": "a"}]}, False),
    KeyCase("data.items.name", "IsNullOrUndefined", None, {"items": [{"name": "a"}]}, True),
    KeyCase("data.a.b.c", "NumberIn", [3], {"a": {"b": {"c": 3}}}, True),
    KeyCase("data.a.b.c", "NumberNotIn", [3], {"a": {"b": None}}, True),
    KeyCase("data.a.b", "IsNotNull", None, {"a": {"b": {"c": 3}}}, True),
    KeyCase("data.a.b", "StringIn", ["x"], {"a": {"b": {"c": "x"}}}, False),
    KeyCase("data.a.b", "StringNotIn", ["x"], {"a": {"b": {"c": "x"}}}, True),
    KeyCase("data.key", "StringIn", ["y"], {"Key": "x", "key": "y"}, True),
    KeyCase("data", "StringIn", ["HELLO"], "hello", True),
    KeyCase("data.x", "IsNullOrUndefined", None, "hello", True),
    KeyCase("data", "IsNotNull", None, {}, True),
    KeyCase("data.ModelTags", "StringContains", ["value1"], MODEL_DATA, False),
]


@pytest.mark.parametrize("case", KEY_CASES, ids=[f"{k.operator}:{k.key}" for k in KEY_CASES])
def test_keys(case: KeyCase) -> None:
    raw = {"advancedFilters": [advanced_filter_json(case.operator, case.argument, case.key)]}
    predicate = compile_filter(parse_filter(raw, input_schema="EventGridSchema"), "EventGridSchema")
    assert predicate(eg_event(case.data)) is case.expected


# --- envelope keys of both schemas ---------------------------------------------------------------

CE_EVENT = {
    "specversion": "1.0",
    "id": "ce-1",
    "source": "/topics/models",
    "type": "Org.Example.ModelPromoted",
    "time": "2024-01-01T00:00:00Z",
    "datacontenttype": "application/json",
    "dataschema": "#1",
    "data": {"Stage": "prod", "Score": 0.91},
    "myext": "abc",
}


@pytest.mark.parametrize(
    ("key", "operator", "argument", "expected"),
    [
        ("subject", "StringBeginsWith", ["MODELS/"], True),
        ("Subject", "StringEndsWith", [":3"], True),
        ("eventType", "StringIn", ["microsoft.machinelearningservices.modelregistered"], True),
        ("EVENTTYPE", "StringContains", ["ModelRegistered"], True),
        ("id", "StringIn", ["E-1"], True),
        ("topic", "StringContains", ["/workspaces/ws1"], True),
        ("dataVersion", "StringIn", [""], True),
        ("dataVersion", "IsNotNull", None, True),
        ("data", "IsNotNull", None, True),
        ("id", "StringNotIn", ["e-1"], False),
        ("topic", "StringBeginsWith", ["/topics/"], False),
    ],
)
def test_event_grid_envelope_keys(key: str, operator: str, argument: Any, expected: bool) -> None:
    raw = {"advancedFilters": [advanced_filter_json(operator, argument, key)]}
    predicate = compile_filter(parse_filter(raw, input_schema="EventGridSchema"), "EventGridSchema")
    assert predicate(eg_event(MODEL_DATA)) is expected


@pytest.mark.parametrize(
    ("key", "operator", "argument", "expected"),
    [
        ("type", "StringIn", ["org.example.modelpromoted"], True),
        ("Type", "StringEndsWith", ["Promoted"], True),
        ("source", "StringBeginsWith", ["/topics/"], True),
        ("id", "StringIn", ["CE-1"], True),
        ("specversion", "StringIn", ["1.0"], True),
        ("specversion", "NumberIn", [1], True),
        ("time", "StringBeginsWith", ["2024-"], True),
        ("dataschema", "StringIn", ["#1"], True),
        ("datacontenttype", "StringContains", ["json"], True),
        ("myext", "StringIn", ["ABC"], True),
        ("MyExt", "StringIn", ["abc"], True),
        ("otherext", "NumberNotIn", [1], True),
        ("otherext", "StringIn", ["abc"], False),
        ("otherext", "IsNullOrUndefined", None, True),
        ("subject", "StringIn", [""], False),
        ("subject", "StringNotIn", ["x"], True),
        ("subject", "StringNotBeginsWith", ["x"], False),
        ("subject", "IsNullOrUndefined", None, True),
        ("data.stage", "StringIn", ["PROD"], True),
        ("data.Score", "NumberGreaterThan", D("0.9"), True),
        ("data.Score", "NumberLessThan", D("0.91"), False),
        ("eventType", "IsNullOrUndefined", None, True),
    ],
)
def test_cloud_event_keys(key: str, operator: str, argument: Any, expected: bool) -> None:
    raw = {"advancedFilters": [advanced_filter_json(operator, argument, key)]}
    predicate = compile_filter(parse_filter(raw, input_schema="CloudEventSchemaV1_0"), "CloudEventSchemaV1_0")
    event = json.loads(json.dumps(CE_EVENT), parse_float=Decimal)
    assert predicate(event) is expected


# --- event types and subjects ---------------------------------------------------------------------

REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"


@pytest.mark.parametrize(
    ("included", "expected"),
    [
        (None, True),
        ([], True),
        (["All"], True),
        (["all"], True),
        (["ALL"], True),
        ([REGISTERED], True),
        ([REGISTERED.lower()], True),
        ([REGISTERED.upper()], True),
        (["Microsoft.MachineLearningServices.ModelDeployed"], False),
        (["Microsoft.MachineLearningServices.ModelDeployed", REGISTERED], True),
        (["Microsoft.MachineLearningServices.Model"], False),
    ],
)
def test_included_event_types(included: list[str] | None, expected: bool) -> None:
    event_filter = parse_filter({"includedEventTypes": included}, input_schema="EventGridSchema")
    assert compile_filter(event_filter, "EventGridSchema")(eg_event({})) is expected


@pytest.mark.parametrize(
    ("begins", "ends", "case_sensitive", "expected"),
    [
        ("", "", False, True),
        ("models/", "", False, True),
        ("MODELS/", "", False, True),
        ("MODELS/", "", True, False),
        ("models/churn", ":3", True, True),
        ("models/Churn", "", True, False),
        ("", ":3", False, True),
        ("", ":4", False, False),
        ("models/*", "", False, False),
        ("models/churn:3", "models/churn:3", False, True),
        ("models/churn:3/", "", False, False),
        ("experiments/", "", False, False),
    ],
)
def test_subject_filters(begins: str, ends: str, case_sensitive: bool, expected: bool) -> None:
    raw = {"subjectBeginsWith": begins, "subjectEndsWith": ends, "isSubjectCaseSensitive": case_sensitive}
    event_filter = parse_filter(raw, input_schema="EventGridSchema")
    assert compile_filter(event_filter, "EventGridSchema")(eg_event({})) is expected


def test_cloud_event_type_and_missing_subject() -> None:
    event = dict(CE_EVENT)
    by_type = parse_filter(
        {"includedEventTypes": ["org.example.MODELPROMOTED"]}, input_schema="CloudEventSchemaV1_0"
    )
    assert compile_filter(by_type, "CloudEventSchemaV1_0")(event)
    assert not compile_filter(by_type, "EventGridSchema")(event)  # Event Grid reads eventType
    no_prefix = parse_filter({"subjectBeginsWith": ""}, input_schema="CloudEventSchemaV1_0")
    assert compile_filter(no_prefix, "CloudEventSchemaV1_0")(event)
    with_prefix = parse_filter({"subjectBeginsWith": "a"}, input_schema="CloudEventSchemaV1_0")
    assert not compile_filter(with_prefix, "CloudEventSchemaV1_0")(event)
    event["subject"] = "Alpha"
    assert compile_filter(with_prefix, "CloudEventSchemaV1_0")(event)


def test_all_advanced_filters_must_match() -> None:
    raw = {
        "advancedFilters": [
            {"operatorType": "StringIn", "key": "data.ModelTags.key1", "values": ["value1"]},
            {"operatorType": "NumberGreaterThanOrEquals", "key": "data.ModelVersion", "value": 3},
            {"operatorType": "StringNotIn", "key": "data.ModelTags.Stage", "values": ["dev"]},
        ]
    }
    predicate = compile_filter(parse_filter(raw, input_schema="EventGridSchema"), "EventGridSchema")
    assert predicate(eg_event(MODEL_DATA))
    assert not predicate(eg_event({**MODEL_DATA, "ModelVersion": "2"}))
    assert not predicate(eg_event({**MODEL_DATA, "ModelTags": {"key1": "value1", "stage": "DEV"}}))


def test_custom_schema_filters_use_event_grid_keys() -> None:
    raw = {
        "includedEventTypes": [REGISTERED],
        "advancedFilters": [{"operatorType": "StringIn", "key": "eventType", "values": [REGISTERED]}],
    }
    predicate = compile_filter(parse_filter(raw, input_schema="CustomEventSchema"), "CustomEventSchema")
    assert predicate(eg_event({}))


def test_float_in_event_is_read_through_its_repr() -> None:
    raw = {"advancedFilters": [{"operatorType": "NumberIn", "key": "data.x", "values": [D("0.1")]}]}
    predicate = compile_filter(parse_filter(raw, input_schema="EventGridSchema"), "EventGridSchema")
    assert predicate(eg_event({"x": 0.1}))
    assert not predicate(eg_event({"x": 0.1 + 0.2 - 0.2}))  # 0.10000000000000003
    assert not predicate(eg_event({"x": float("nan")}))
