"""The body-model kit (``mlgrid/body.py``): mlgrid's error paths and reasons, strictness, and a
schema that stands alone in the OpenAPI document."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ConfigDict, Field

from mlgrid.body import Body, Invalid, Missing, checker, integral, openapi_schema, parse, reason
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import InvalidField


def _positive(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Invalid("must be a positive integer")
    return value


class Inner(Body):
    size: Annotated[int, Field(ge=1, le=10), reason("must be an integer from 1 to 10")] = 1
    label: Annotated[str, Missing("is required: a label")]


class Outer(Body):
    inner: Inner | None = None
    items: list[Inner] = []
    count: Annotated[Any, *checker(_positive, {"type": "integer", "minimum": 1})] = 1


class Loose(Body):
    names_ignore_case: ClassVar[bool] = True
    max_count: int = 0


def _error(model: type[Body], raw: object) -> InvalidField:
    with pytest.raises(InvalidField) as caught:
        parse(model, raw)
    return caught.value


def test_the_message_names_the_json_path_and_the_reason() -> None:
    error = _error(Outer, {"items": [{"label": "a"}, {"label": "b", "size": 11}]})
    assert error.message == "items[1].size: must be an integer from 1 to 10"
    assert error.status == 400 and error.code == ErrorCode.INVALID_REQUEST
    assert [d.target for d in error.details] == ["items[1].size"]


def test_a_missing_member_is_told_its_own_reason() -> None:
    assert _error(Outer, {"inner": {}}).message == "inner.label: is required: a label"


def test_unknown_members_are_refused_by_name_first_in_sorted_order() -> None:
    error = _error(Outer, {"zeta": 1, "alpha": 2})
    assert error.message == "alpha: unknown field; expected one of count, inner, items"


def test_a_body_that_is_not_an_object_is_refused_at_body() -> None:
    assert _error(Outer, [1]).message == "body: must be a JSON object"
    assert _error(Outer, {"inner": "x"}).message == "inner: must be a JSON object"


@pytest.mark.parametrize("value", ["3", 3.0, Decimal("3"), True])
def test_models_are_strict_no_value_is_coerced(value: object) -> None:
    assert _error(Outer, {"inner": {"label": "a", "size": value}}).field_name == "inner.size"


def test_a_checker_keeps_its_exact_wording() -> None:
    assert _error(Outer, {"count": 0}).message == "count: must be a positive integer"
    assert parse(Outer, {"count": 5}).count == 5


def test_names_can_ignore_case_but_not_twice() -> None:
    assert parse(Loose, {"MAXCOUNT": 3}).max_count == 3
    error = _error(Loose, {"maxCount": 1, "maxcount": 2})
    assert error.message == "maxcount: given more than once (property names ignore case)"


def test_the_schema_stands_alone_and_says_the_rules() -> None:
    schema = openapi_schema(Outer)
    text = repr(schema)
    assert "$defs" not in schema and "$ref" not in text and "'title'" not in text
    assert schema["additionalProperties"] is False
    inner = schema["properties"]["items"]["items"]
    assert inner["properties"]["size"]["maximum"] == 10 and inner["required"] == ["label"]
    assert schema["properties"]["count"] == {"type": "integer", "minimum": 1, "default": 1}


@given(st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8) | st.none(), max_size=4))
def test_any_object_either_parses_or_is_a_400_naming_a_path(raw: dict[str, object]) -> None:
    try:
        parse(Outer, raw)
    except InvalidField as exc:
        assert exc.status == 400
        assert exc.message.startswith(f"{exc.field_name}: ")


class Open(Body):
    model_config = ConfigDict(extra="ignore")
    size: Annotated[int, reason("must be an integer")] = 1


def test_an_open_model_ignores_unknown_members_but_checks_its_own() -> None:
    assert parse(Open, {"size": 3, "other": [1]}).size == 3
    assert _error(Open, {"size": "3", "other": 1}).message == "size: must be an integer"
    assert "additionalProperties" not in openapi_schema(Open)


class Counted(Body):
    count: Annotated[int, integral, Field(ge=1), reason("must be a positive integer")] = 1


@pytest.mark.parametrize("raw", [Decimal("3.0"), Decimal("3"), Decimal("0.3E+1"), 3])
def test_a_whole_number_is_an_integer_however_written(raw: object) -> None:
    # JSON Schema's "integer" is a number whose value is whole: 3.0 is one (issue 16).
    assert parse(Counted, {"count": raw}).count == 3


@pytest.mark.parametrize("raw", [Decimal("3.5"), Decimal("NaN"), True, "3", Decimal("0.0")])
def test_a_fraction_or_a_non_number_is_not(raw: object) -> None:
    with pytest.raises(InvalidField) as caught:
        parse(Counted, {"count": raw})
    assert caught.value.message == "count: must be a positive integer"
