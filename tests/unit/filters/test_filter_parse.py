"""``parse_filter`` rejects every malformed filter with a 400 naming the exact field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from mlgrid.errors import InvalidField
from mlgrid.filters import AdvancedFilter, EventFilter, filter_to_json, is_addressable_key, parse_filter

P = "properties.filter"
AF = f"{P}.advancedFilters"
EG = "EventGridSchema"
CE = "CloudEventSchemaV1_0"


def one(operator: str, key: str = "data.x", **fields: Any) -> dict[str, Any]:
    """A filter with one advanced filter."""
    return {"advancedFilters": [{"operatorType": operator, "key": key, **fields}]}


def string_filters(count: int, values_each: int = 1) -> dict[str, Any]:
    return {
        "advancedFilters": [
            {"operatorType": "StringIn", "key": f"data.k{i}", "values": [f"v{j}" for j in range(values_each)]}
            for i in range(count)
        ]
    }


ERRORS: list[tuple[str, object, str, str]] = [
    # (id, raw filter, schema, field the error must name)
    ("not an object", "x", EG, P),
    ("array", [], EG, P),
    ("unknown property", {"subjectBeginWith": "x"}, EG, f"{P}.subjectBeginWith"),
    ("duplicate property", {"advancedFilters": [], "AdvancedFilters": []}, EG, AF),
    ("event types not a list", {"includedEventTypes": "a"}, EG, f"{P}.includedEventTypes"),
    ("event type not a string", {"includedEventTypes": ["a", 5]}, EG, f"{P}.includedEventTypes[1]"),
    ("event type empty", {"includedEventTypes": [""]}, EG, f"{P}.includedEventTypes[0]"),
    ("subjectBeginsWith number", {"subjectBeginsWith": 5}, EG, f"{P}.subjectBeginsWith"),
    ("subjectEndsWith list", {"subjectEndsWith": []}, EG, f"{P}.subjectEndsWith"),
    ("case flag string", {"isSubjectCaseSensitive": "true"}, EG, f"{P}.isSubjectCaseSensitive"),
    ("arrays flag int", {"enableAdvancedFilteringOnArrays": 1}, EG, f"{P}.enableAdvancedFilteringOnArrays"),
    ("advancedFilters object", {"advancedFilters": {}}, EG, AF),
    ("26 advanced filters", string_filters(26), EG, AF),
    ("26 values in one filter", string_filters(1, 26), EG, AF),
    ("26 values across filters", string_filters(13, 2), EG, AF),
    (
        "26 values counting single values",
        {
            "advancedFilters": [
                *string_filters(1, 24)["advancedFilters"],
                {"operatorType": "NumberGreaterThan", "key": "data.a", "value": 1},
                {"operatorType": "BoolEquals", "key": "data.b", "value": True},
            ]
        },
        EG,
        AF,
    ),
    ("filter not an object", {"advancedFilters": ["x"]}, EG, f"{AF}[0]"),
    ("unknown filter property", one("StringIn", values=["a"], extra=1), EG, f"{AF}[0].extra"),
    (
        "missing operatorType",
        {"advancedFilters": [{"key": "data.x", "values": ["a"]}]},
        EG,
        f"{AF}[0].operatorType",
    ),
    ("unknown operatorType", one("StringLike", values=["a"]), EG, f"{AF}[0].operatorType"),
    ("operatorType not a string", one(5, values=["a"]), EG, f"{AF}[0].operatorType"),  # type: ignore[arg-type]
    (
        "missing key",
        {"advancedFilters": [{"operatorType": "StringIn", "values": ["a"]}]},
        EG,
        f"{AF}[0].key",
    ),
    ("empty key", one("StringIn", key="", values=["a"]), EG, f"{AF}[0].key"),
    ("key not a string", one("StringIn", key=5, values=["a"]), EG, f"{AF}[0].key"),  # type: ignore[arg-type]
    ("eventTime not addressable", one("StringIn", key="eventTime", values=["a"]), EG, f"{AF}[0].key"),
    (
        "metadataVersion not addressable",
        one("StringIn", key="metadataVersion", values=["1"]),
        EG,
        f"{AF}[0].key",
    ),
    ("source is CloudEvents only", one("StringIn", key="source", values=["a"]), EG, f"{AF}[0].key"),
    ("unknown envelope key", one("StringIn", key="foo", values=["a"]), EG, f"{AF}[0].key"),
    ("empty segment", one("StringIn", key="data..x", values=["a"]), EG, f"{AF}[0].key"),
    ("trailing dot", one("StringIn", key="data.", values=["a"]), EG, f"{AF}[0].key"),
    ("trailing dot deep", one("StringIn", key="data.a.b.", values=["a"]), EG, f"{AF}[0].key"),
    ("leading dot", one("StringIn", key=".data", values=["a"]), EG, f"{AF}[0].key"),
    ("path into subject", one("StringIn", key="subject.x", values=["a"]), EG, f"{AF}[0].key"),
    ("CE path into source", one("StringIn", key="source.x", values=["a"]), CE, f"{AF}[0].key"),
    ("CE data_base64", one("StringIn", key="data_base64", values=["a"]), CE, f"{AF}[0].key"),
    ("CE extension too long", one("StringIn", key="a" * 21, values=["a"]), CE, f"{AF}[0].key"),
    ("CE extension with dash", one("StringIn", key="my-ext", values=["a"]), CE, f"{AF}[0].key"),
    ("CE empty segment", one("StringIn", key="data..x", values=["a"]), CE, f"{AF}[0].key"),
    (
        "custom schema uses EG keys",
        one("StringIn", key="source", values=["a"]),
        "CustomEventSchema",
        f"{AF}[0].key",
    ),
    ("StringIn without values", one("StringIn"), EG, f"{AF}[0].values"),
    ("StringIn with value", one("StringIn", value="a"), EG, f"{AF}[0].values"),
    ("StringIn with both", one("StringIn", value="a", values=["a"]), EG, f"{AF}[0].value"),
    ("StringIn values not a list", one("StringIn", values="abc"), EG, f"{AF}[0].values"),
    ("StringIn empty values", one("StringIn", values=[]), EG, f"{AF}[0].values"),
    ("StringIn number value", one("StringIn", values=["a", 1]), EG, f"{AF}[0].values[1]"),
    ("StringContains null element", one("StringContains", values=[None]), EG, f"{AF}[0].values[0]"),
    ("string value too long", one("StringBeginsWith", values=["a" * 513]), EG, f"{AF}[0].values[0]"),
    ("NumberIn string value", one("NumberIn", values=["1"]), EG, f"{AF}[0].values[0]"),
    ("NumberIn boolean value", one("NumberIn", values=[1, True]), EG, f"{AF}[0].values[1]"),
    ("NumberNotIn NaN", one("NumberNotIn", values=[float("nan")]), EG, f"{AF}[0].values[0]"),
    ("NumberIn infinite Decimal", one("NumberIn", values=[Decimal("Infinity")]), EG, f"{AF}[0].values[0]"),
    ("NumberIn with value", one("NumberIn", value=1), EG, f"{AF}[0].values"),
    ("NumberGreaterThan without value", one("NumberGreaterThan"), EG, f"{AF}[0].value"),
    ("NumberGreaterThan with values", one("NumberGreaterThan", values=[5]), EG, f"{AF}[0].value"),
    ("NumberLessThan with both", one("NumberLessThan", value=5, values=[5]), EG, f"{AF}[0].values"),
    ("NumberLessThan string", one("NumberLessThan", value="5"), EG, f"{AF}[0].value"),
    ("NumberLessThanOrEquals bool", one("NumberLessThanOrEquals", value=True), EG, f"{AF}[0].value"),
    ("NumberGreaterThanOrEquals list", one("NumberGreaterThanOrEquals", value=[1]), EG, f"{AF}[0].value"),
    ("BoolEquals string", one("BoolEquals", value="true"), EG, f"{AF}[0].value"),
    ("BoolEquals number", one("BoolEquals", value=1), EG, f"{AF}[0].value"),
    ("BoolEquals missing", one("BoolEquals"), EG, f"{AF}[0].value"),
    ("BoolEquals values", one("BoolEquals", values=[True]), EG, f"{AF}[0].value"),
    ("range not a pair", one("NumberInRange", values=[5]), EG, f"{AF}[0].values[0]"),
    ("range of one", one("NumberInRange", values=[[1]]), EG, f"{AF}[0].values[0]"),
    ("range of three", one("NumberInRange", values=[[1, 2, 3]]), EG, f"{AF}[0].values[0]"),
    ("range reversed", one("NumberNotInRange", values=[[1, 2], [5, 1]]), EG, f"{AF}[0].values[1]"),
    ("range string bound", one("NumberInRange", values=[[1, "2"]]), EG, f"{AF}[0].values[0][1]"),
    ("range boolean bound", one("NumberInRange", values=[[1, 2], [True, 3]]), EG, f"{AF}[0].values[1][0]"),
    ("range values empty", one("NumberInRange", values=[]), EG, f"{AF}[0].values"),
    ("range with value", one("NumberInRange", value=[1, 2]), EG, f"{AF}[0].values"),
    ("IsNullOrUndefined with value", one("IsNullOrUndefined", value=1), EG, f"{AF}[0].value"),
    ("IsNotNull with values", one("IsNotNull", values=[]), EG, f"{AF}[0].values"),
    (
        "error in third filter",
        {
            "advancedFilters": [
                {"operatorType": "StringIn", "key": "data.a", "values": ["x"]},
                {"operatorType": "IsNotNull", "key": "data.b"},
                {"operatorType": "NumberIn", "key": "data.c", "values": [1, "two"]},
            ]
        },
        EG,
        f"{AF}[2].values[1]",
    ),
]


@pytest.mark.parametrize(("raw", "schema", "field"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_invalid_filters_name_their_field(raw: object, schema: str, field: str) -> None:
    with pytest.raises(InvalidField) as caught:
        parse_filter(raw, input_schema=schema)
    error = caught.value
    assert error.field_name == field
    assert error.status == 400
    assert field in str(error)
    assert error.details and error.details[0].target == field
    body = error.as_json()["error"]
    assert isinstance(body, dict) and field in body["message"]


def test_field_prefix_is_used() -> None:
    with pytest.raises(InvalidField) as caught:
        parse_filter(one("StringIn", key="data..x", values=["a"]), input_schema=EG, field_prefix="filter")
    assert caught.value.field_name == "filter.advancedFilters[0].key"


def test_unknown_input_schema_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown input schema"):
        parse_filter(None, input_schema="Avro")


# --- what is accepted ---------------------------------------------------------------------------


def test_none_and_empty_mean_match_everything() -> None:
    assert parse_filter(None, input_schema=EG) == EventFilter()
    assert parse_filter({}, input_schema=EG) == EventFilter()
    nulls = {name: None for name in ("includedEventTypes", "subjectBeginsWith", "advancedFilters")}
    assert parse_filter(nulls, input_schema=EG) == EventFilter()


def test_seed_filter() -> None:
    raw = {
        "includedEventTypes": ["Microsoft.MachineLearningServices.ModelRegistered"],
        "subjectBeginsWith": "models/",
        "subjectEndsWith": "",
        "isSubjectCaseSensitive": False,
        "enableAdvancedFilteringOnArrays": False,
        "advancedFilters": [{"operatorType": "StringIn", "key": "data.ModelTags.key1", "values": ["value1"]}],
    }
    parsed = parse_filter(raw, input_schema=EG)
    assert parsed == EventFilter(
        included_event_types=("Microsoft.MachineLearningServices.ModelRegistered",),
        subject_begins_with="models/",
        advanced_filters=(AdvancedFilter("StringIn", "data.ModelTags.key1", values=("value1",)),),
    )
    assert filter_to_json(parsed) == raw


def test_property_and_operator_names_ignore_case() -> None:
    raw = {"AdvancedFilters": [{"OperatorType": "stringin", "KEY": "data.a", "Values": ["x"]}]}
    parsed = parse_filter(raw, input_schema=EG)
    assert parsed.advanced_filters == (AdvancedFilter("StringIn", "data.a", values=("x",)),)


def test_numbers_stay_exact() -> None:
    raw = {
        "advancedFilters": [
            {"operatorType": "NumberIn", "key": "data.a", "values": [1, Decimal("0.30000000000000001")]},
            {"operatorType": "NumberGreaterThan", "key": "data.b", "value": 0.1},
            {"operatorType": "NumberInRange", "key": "data.c", "values": [[1, Decimal("2.5")], [3, 3]]},
        ]
    }
    a, b, c = parse_filter(raw, input_schema=EG).advanced_filters
    assert a.values == (1, Decimal("0.30000000000000001"))
    assert b.value == Decimal("0.1") and isinstance(b.value, Decimal)
    assert c.values == ((1, Decimal("2.5")), (3, 3))
    for number in (*(a.values or ()), b.value):
        assert not isinstance(number, float)


def test_limits_are_inclusive() -> None:
    assert len(parse_filter(string_filters(25), input_schema=EG).advanced_filters) == 25
    assert len(parse_filter(string_filters(1, 25), input_schema=EG).advanced_filters[0].values or ()) == 25
    ranges = one("NumberInRange", values=[[i, i + 1] for i in range(25)])
    assert len(parse_filter(ranges, input_schema=EG).advanced_filters[0].values or ()) == 25
    longest = one("StringIn", values=["a" * 512])
    assert parse_filter(longest, input_schema=EG).advanced_filters[0].values == ("a" * 512,)
    presence = {"advancedFilters": [{"operatorType": "IsNotNull", "key": f"data.k{i}"} for i in range(25)]}
    assert len(parse_filter(presence, input_schema=EG).advanced_filters) == 25


@pytest.mark.parametrize(
    ("key", "schema", "ok"),
    [
        ("id", EG, True),
        ("TOPIC", EG, True),
        ("subject", EG, True),
        ("eventtype", EG, True),
        ("dataVersion", EG, True),
        ("data", EG, True),
        ("data.a.b.c", EG, True),
        ("Data.With Space.x", EG, True),
        ("type", EG, False),
        ("eventTime", EG, False),
        ("id", CE, True),
        ("source", CE, True),
        ("type", CE, True),
        ("subject", CE, True),
        ("specversion", CE, True),
        ("dataschema", CE, True),
        ("datacontenttype", CE, True),
        ("time", CE, True),
        ("data.a", CE, True),
        ("myext", CE, True),
        ("MyExt", CE, True),
        ("ext0123456789abcdefg", CE, True),
        ("ext0123456789abcdefgh", CE, False),
        ("my_ext", CE, False),
        ("data..a", CE, False),
        ("id", "CustomEventSchema", True),
        ("eventType", "CustomEventSchema", True),
        ("type", "CustomEventSchema", False),
    ],
)
def test_addressable_keys(key: str, schema: str, ok: bool) -> None:
    assert is_addressable_key(key, schema) is ok


def test_round_trip_of_every_operator() -> None:
    raw = {
        "includedEventTypes": None,
        "subjectBeginsWith": "runs/",
        "subjectEndsWith": "/x",
        "isSubjectCaseSensitive": True,
        "enableAdvancedFilteringOnArrays": True,
        "advancedFilters": [
            {"operatorType": "NumberIn", "key": "data.a", "values": [1, Decimal("2.5")]},
            {"operatorType": "NumberNotIn", "key": "data.a", "values": [3]},
            {"operatorType": "NumberLessThan", "key": "data.a", "value": 1},
            {"operatorType": "NumberGreaterThan", "key": "data.a", "value": Decimal("-1.5")},
            {"operatorType": "NumberLessThanOrEquals", "key": "data.a", "value": 0},
            {"operatorType": "NumberGreaterThanOrEquals", "key": "data.a", "value": 0},
            {"operatorType": "NumberInRange", "key": "data.a", "values": [[0, 1]]},
            {"operatorType": "NumberNotInRange", "key": "data.a", "values": [[2, 3]]},
            {"operatorType": "BoolEquals", "key": "data.b", "value": False},
            {"operatorType": "StringIn", "key": "data.s", "values": ["x"]},
            {"operatorType": "StringNotIn", "key": "data.s", "values": ["y"]},
            {"operatorType": "StringBeginsWith", "key": "data.s", "values": ["x"]},
            {"operatorType": "StringNotBeginsWith", "key": "data.s", "values": ["y"]},
            {"operatorType": "StringEndsWith", "key": "data.s", "values": ["x"]},
            {"operatorType": "StringNotEndsWith", "key": "data.s", "values": ["y"]},
            {"operatorType": "StringContains", "key": "data.s", "values": ["x"]},
            {"operatorType": "StringNotContains", "key": "data.s", "values": ["y"]},
            {"operatorType": "IsNullOrUndefined", "key": "data.n"},
            {"operatorType": "IsNotNull", "key": "subject"},
        ],
    }
    parsed = parse_filter(raw, input_schema=EG)
    assert filter_to_json(parsed) == raw
    assert parse_filter(filter_to_json(parsed), input_schema=EG) == parsed
    assert (
        filter_to_json(parse_filter({"includedEventTypes": []}, input_schema=EG))["includedEventTypes"] == []
    )
