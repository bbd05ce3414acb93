"""Azure CLI's ``--advanced-filter KEY OPERATOR VALUE...`` syntax, turned into ARM JSON.

The CLI mirrors ``az eventgrid event-subscription create`` (SPEC §10), so people can paste the
commands from Azure's docs, including the seed's parenthesised form::

    --advanced-filter data.ModelTags.key1 StringIn value1 value2
    --advanced-filter data.ModelTags.key1 StringIn ('value1')
    --advanced-filter data.x NumberInRange 5,10 20,30
    --advanced-filter data.y IsNullOrUndefined
    --advanced-filter data.z NumberGreaterThan 5
    --advanced-filter data.b BoolEquals true

The result is the JSON of one advanced filter, which the server validates with ``parse_filter``
like any other body (key addressability depends on the topic's schema, which only the server
knows). Numbers become ``int`` or ``Decimal``, never ``float``, to keep SPEC §5's exactness.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Final

from mlgrid.domain.event_filter import (
    BOOL_OPERATORS,
    NUMBER_LIST_OPERATORS,
    NUMBER_RANGE_OPERATORS,
    NUMBER_SINGLE_OPERATORS,
    OPERATORS,
    PRESENCE_OPERATORS,
    Number,
)
from mlgrid.errors import invalid

OPTION: Final = "--advanced-filter"

_OPERATORS_BY_LOWER: Final = {name.lower(): name for name in OPERATORS}
_INTEGER: Final = re.compile(r"[+-]?[0-9]+")
_DECIMAL: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def parse_cli_advanced_filter(tokens: list[str]) -> dict[str, Any]:
    """The ARM JSON of the advanced filter written as ``KEY OPERATOR [VALUE...]``.

    ``tokens`` are the words that followed one ``--advanced-filter`` (a single string holding
    the whole filter is split on whitespace). Raises ``InvalidField`` on ``--advanced-filter``.
    """
    if len(tokens) == 1:
        tokens = tokens[0].split()
    if len(tokens) < 2:
        raise invalid(OPTION, "expected KEY OPERATOR [VALUE ...], e.g. data.ModelTags.key1 StringIn value1")
    key, operator_text, value_tokens = tokens[0], tokens[1], tokens[2:]
    if not key or any(segment == "" for segment in key.split(".")):
        raise invalid(OPTION, f"key {key!r} has an empty path segment")
    operator = _OPERATORS_BY_LOWER.get(operator_text.lower())
    if operator is None:
        raise invalid(
            OPTION, f"unknown operator {operator_text!r}; expected one of {', '.join(sorted(OPERATORS))}"
        )

    body: dict[str, Any] = {"operatorType": operator, "key": key}
    items = _value_items(value_tokens, operator)
    if operator in PRESENCE_OPERATORS:
        if items:
            raise invalid(OPTION, f"{operator} takes no values")
        return body
    if not items:
        raise invalid(OPTION, f"{operator} needs a value")
    if operator in BOOL_OPERATORS or operator in NUMBER_SINGLE_OPERATORS:
        if len(items) != 1:
            raise invalid(OPTION, f"{operator} takes exactly one value, got {len(items)}")
        (item,) = items
        body["value"] = _boolean(item) if operator in BOOL_OPERATORS else _number(item)
    elif operator in NUMBER_LIST_OPERATORS:
        body["values"] = [_number(item) for item in items]
    elif operator in NUMBER_RANGE_OPERATORS:
        body["values"] = [_range(item) for item in items]
    else:
        body["values"] = items
    return body


def _value_items(tokens: list[str], operator: str) -> list[str]:
    """The value words, unpacking the ``('a', 'b')`` form when the values start with ``(``."""
    text = " ".join(tokens).strip()
    if not text.startswith("("):
        return list(tokens)
    if operator in NUMBER_RANGE_OPERATORS:
        raise invalid(OPTION, f"{operator} takes lo,hi pairs, e.g. {operator} 5,10 20,30")
    if not text.endswith(")"):
        raise invalid(OPTION, "a value list that starts with '(' must end with ')'")
    return _split_parenthesised(text[1:-1])


def _split_parenthesised(inner: str) -> list[str]:
    """Comma-separated items, each optionally quoted with ' or " (a doubled quote escapes it)."""
    items: list[str] = []
    position, size = 0, len(inner)
    if not inner.strip():
        return items
    while True:
        while position < size and inner[position].isspace():
            position += 1
        if position < size and inner[position] in "'\"":
            quote = inner[position]
            position += 1
            chars: list[str] = []
            while True:
                if position >= size:
                    raise invalid(OPTION, f"unterminated {quote} quote in the value list")
                if inner[position] == quote:
                    if inner[position + 1 : position + 2] == quote:
                        chars.append(quote)
                        position += 2
                        continue
                    position += 1
                    break
                chars.append(inner[position])
                position += 1
            item = "".join(chars)
            while position < size and inner[position].isspace():
                position += 1
            if position < size and inner[position] != ",":
                raise invalid(OPTION, f"expected ',' after {quote}{item}{quote} in the value list")
        else:
            end = inner.find(",", position)
            end = size if end == -1 else end
            item = inner[position:end].strip()
            position = end
            if not item:
                raise invalid(OPTION, "empty item in the value list")
        items.append(item)
        if position >= size:
            return items
        position += 1  # the comma
        if position >= size:
            raise invalid(OPTION, "the value list ends with a ','")


def _number(text: str) -> Number:
    cleaned = text.strip()
    if _INTEGER.fullmatch(cleaned):
        return int(cleaned)
    if _DECIMAL.fullmatch(cleaned):
        return Decimal(cleaned)
    raise invalid(OPTION, f"{text!r} is not a number")


def _range(text: str) -> list[Number]:
    parts = text.split(",")
    if len(parts) != 2:
        raise invalid(OPTION, f"{text!r} is not a lo,hi range (e.g. 5,10)")
    lo, hi = _number(parts[0]), _number(parts[1])
    if lo > hi:
        raise invalid(OPTION, f"range {text!r} has its lower bound above its upper bound")
    return [lo, hi]


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise invalid(OPTION, f"{text!r} is not true or false")
