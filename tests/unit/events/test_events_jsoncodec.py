"""Exact JSON: numbers survive a read and a write digit for digit (SPEC §5)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest

from mlgrid.errors import BadRequest
from mlgrid.events.jsoncodec import dumps, loads_exact


def test_fraction_is_decimal_and_compares_exactly() -> None:
    value = loads_exact(b'{"x": 0.30000000000000001}')["x"]
    assert isinstance(value, Decimal)
    assert value == Decimal("0.30000000000000001")
    assert value > Decimal("0.3")


def test_large_integer_stays_exact() -> None:
    value = loads_exact("[9007199254740993]")[0]
    assert value == 9007199254740993
    assert value != 9007199254740992
    assert dumps(value) == b"9007199254740993"


@pytest.mark.parametrize(
    "text",
    [
        "0.30000000000000001",
        "9007199254740993",
        "1.10",
        "-0.0",
        "1E+400",
        "1.5e-7",
        "123456789012345678901234567890",
        "-123456789012345678901234567890.000000000000000000001",
    ],
)
def test_numbers_round_trip_digit_for_digit(text: str) -> None:
    value = loads_exact(text)
    again = loads_exact(dumps(value))
    assert again == value
    assert dumps(again) == dumps(value)


def test_decimal_written_verbatim() -> None:
    assert dumps({"a": Decimal("0.30000000000000001"), "b": Decimal("1.10")}) == (
        b'{"a":0.30000000000000001,"b":1.10}'
    )


def test_integers_beyond_64_bits_are_written() -> None:
    big = 2**70
    assert dumps({"n": [big, -big, 1]}) == f'{{"n":[{big},{-big},1]}}'.encode()


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_non_finite_decimal_is_refused(value: Decimal) -> None:
    with pytest.raises(TypeError):
        dumps(value)


def test_datetimes_are_iso_8601() -> None:
    assert dumps(datetime(2024, 5, 1, 12, 0, tzinfo=UTC)) == b'"2024-05-01T12:00:00Z"'
    plus_two = timezone(timedelta(hours=2))
    assert dumps(datetime(2024, 5, 1, 12, 0, tzinfo=plus_two)) == b'"2024-05-01T12:00:00+02:00"'
    assert dumps(datetime(2024, 5, 1, 12, 0)) == b'"2024-05-01T12:00:00Z"'
    assert dumps(date(2024, 5, 1)) == b'"2024-05-01"'


def test_dumps_is_compact_utf8() -> None:
    assert dumps({"a": [1, "é"], "b": None}) == '{"a":[1,"é"],"b":null}'.encode()


def test_unknown_type_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        dumps(object())


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant: str) -> None:
    with pytest.raises(BadRequest) as caught:
        loads_exact(f'{{"x": {constant}}}')
    assert caught.value.code == "InvalidJson"
    assert constant.lstrip("-") in caught.value.message


def test_malformed_json_reports_position() -> None:
    with pytest.raises(BadRequest) as caught:
        loads_exact(b'[{"id": "1",}]')
    error = caught.value
    assert error.status == 400
    assert error.code == "InvalidJson"
    assert "line 1, column 13" in error.message
    assert "character 12" in error.message
    assert error.details[0].code == "InvalidJson"


def test_multiline_position() -> None:
    with pytest.raises(BadRequest) as caught:
        loads_exact(b'[\n  {"a": 1}\n  {"b": 2}\n]')
    assert "line 3, column 3" in caught.value.message


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(BadRequest) as caught:
        loads_exact(b'["\xff"]')
    assert caught.value.code == "InvalidJson"
    assert "UTF-8" in caught.value.message


def test_lone_surrogate_is_refused_but_pairs_are_fine() -> None:
    with pytest.raises(BadRequest):
        loads_exact(b'{"a": "\\ud800"}')
    with pytest.raises(BadRequest):
        loads_exact(b'{"\\uDC00": 1}')
    assert loads_exact(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}
    # An escaped backslash followed by "ud800" is ordinary text.
    assert loads_exact(b'{"a": "\\\\ud800"}') == {"a": "\\ud800"}


def test_byte_order_mark_is_ignored() -> None:
    assert loads_exact("\ufeff[1]".encode()) == [1]


def test_too_deep_nesting_is_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        loads_exact("[" * 100_000 + "]" * 100_000)


def test_huge_integer_beyond_interpreter_limit_is_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        loads_exact("1" * 5000)


def test_output_is_readable_by_orjson() -> None:
    document = {"a": Decimal("0.5"), "b": [1, 2, {"c": "d"}]}
    assert orjson.loads(dumps(document)) == {"a": 0.5, "b": [1, 2, {"c": "d"}]}
