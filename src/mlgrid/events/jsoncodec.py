"""Exact JSON: numbers keep every digit the publisher wrote.

Advanced filters compare numbers exactly (SPEC §5): ``0.30000000000000001`` is greater than
``0.3`` and ``9007199254740993`` differs from ``9007199254740992``. A binary float cannot hold
either distinction, so every JSON text that carries events or filter values is read with
:func:`loads_exact` (fractions and exponents become :class:`decimal.Decimal`, integers stay
Python ``int`` of any size) and written back with :func:`dumps`, which emits the ``Decimal``
digits verbatim.

Reading uses the standard library scanner because orjson has no exact-decimal mode; writing
uses orjson because it is several times faster and the exactness is kept by handing it each
``Decimal`` as a pre-rendered fragment.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NoReturn

import orjson

from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import BadRequest, ErrorDetail

__all__ = ["dumps", "loads_exact"]

_DUMPS_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC

# orjson refuses integers outside this range instead of calling ``default``.
_ORJSON_INT_MIN = -(2**63)
_ORJSON_INT_MAX = 2**64 - 1

_BOM = "\ufeff"


def _invalid_json(message: str) -> BadRequest:
    return BadRequest(
        message=message,
        code=ErrorCode.INVALID_JSON,
        details=[ErrorDetail(ErrorCode.INVALID_JSON, message, "body")],
    )


def _reject_constant(name: str) -> NoReturn:
    # ``json`` accepts NaN/Infinity by default; they are not JSON and have no exact value.
    raise ValueError(f"{name} is not a valid JSON number")


def loads_exact(data: bytes | str) -> Any:
    """Parse JSON text with fractions and exponents as ``Decimal`` and integers as ``int``.

    Raises :class:`~mlgrid.errors.BadRequest` with code ``InvalidJson`` (and the line, column
    and character offset when the scanner reports one) on malformed input, on bytes that are
    not UTF-8, on ``NaN``/``Infinity``, and on strings holding unpaired UTF-16 surrogates
    (``"\\ud800"``), which no UTF-8 writer - orjson included - could store later.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _invalid_json(
                f"the body is not valid UTF-8 (byte {exc.start}): JSON text must be UTF-8"
            ) from exc
    else:
        text = data
    if text.startswith(_BOM):
        text = text[1:]
    try:
        value = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _invalid_json(
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} "
            f"(character {exc.pos})"
        ) from exc
    except ValueError as exc:  # NaN/Infinity, or an integer over the interpreter's digit limit
        raise _invalid_json(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise _invalid_json("the body is not valid JSON: it is nested too deeply") from exc
    # A surrogate can only come from a ``\uD8xx``..``\uDFxx`` escape (raw ones fail UTF-8
    # decoding above); paired escapes are merged by the scanner, so any left are lone.
    if ("\\ud" in text or "\\uD" in text) and _has_lone_surrogate(value):
        raise _invalid_json("the body is not valid JSON: a string holds an unpaired UTF-16 surrogate")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise ValueError(f"{obj} has no JSON representation")
        return orjson.Fragment(str(obj))
    if isinstance(obj, date) and not isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON; ``Decimal`` written digit for digit, datetimes as ISO 8601.

    Aware datetimes keep their offset (UTC is written ``Z``); naive ones are taken as UTC.
    Non-finite decimals raise ``TypeError`` (orjson's ``JSONEncodeError``): they can never come
    out of :func:`loads_exact`, so meeting one is a programming error, not bad input.
    """
    try:
        return orjson.dumps(obj, default=_default, option=_DUMPS_OPTIONS)
    except orjson.JSONEncodeError as exc:
        # Integers beyond 64 bits are legal JSON and loads_exact keeps them; orjson does not
        # route them through ``default``, so render them as fragments and try once more.
        if "Integer exceeds" not in str(exc):
            raise
        return orjson.dumps(_fragment_big_ints(obj), default=_default, option=_DUMPS_OPTIONS)


def _fragment_big_ints(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        if _ORJSON_INT_MIN <= value <= _ORJSON_INT_MAX:
            return value
        return orjson.Fragment(str(value))
    if isinstance(value, dict):
        return {key: _fragment_big_ints(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_fragment_big_ints(item) for item in value]
    return value
