"""Advanced filters of event subscriptions as small typed Python objects (SPEC §5).

Each class is one ``operatorType``; ``to_json()`` gives the object Azure's API takes::

    StringIn("data.ModelTags.key1", ["value1"]).to_json()
    # {"operatorType": "StringIn", "key": "data.ModelTags.key1", "values": ["value1"]}

    NumberInRange("data.DriftCoefficient", [(0.5, 1)])
    IsNotNull("data.RunProperties.model_name")

Anywhere a filter is accepted, a plain ``dict`` in Azure's shape works too (``filter_json``
passes it through). Numbers may be ``int``, ``float``, ``Decimal`` or a decimal string; they
are sent as given (``Decimal`` keeps every digit, as the server compares exactly).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

__all__ = [
    "AdvancedFilter",
    "BoolEquals",
    "IsNotNull",
    "IsNullOrUndefined",
    "NumberGreaterThan",
    "NumberGreaterThanOrEquals",
    "NumberIn",
    "NumberInRange",
    "NumberLessThan",
    "NumberLessThanOrEquals",
    "NumberNotIn",
    "NumberNotInRange",
    "StringBeginsWith",
    "StringContains",
    "StringEndsWith",
    "StringIn",
    "StringNotBeginsWith",
    "StringNotContains",
    "StringNotEndsWith",
    "StringNotIn",
    "filter_json",
]

Number = int | float | Decimal | str


@dataclass(frozen=True)
class AdvancedFilter:
    """Base of the operator classes: a ``key`` (``data.ModelTags.key1``, ``subject``, ...)."""

    key: str
    operator_type: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        return {"operatorType": self.operator_type, "key": self.key}


@dataclass(frozen=True)
class _Values(AdvancedFilter):
    values: tuple[Any, ...] = ()

    def __init__(self, key: str, values: Iterable[Any]) -> None:
        if isinstance(values, str | bytes):
            raise TypeError(f"{type(self).__name__} takes a list of values, not one string")
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "values", tuple(values))

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "values": list(self.values)}


@dataclass(frozen=True)
class _Value(AdvancedFilter):
    value: Any = None

    def __init__(self, key: str, value: Any) -> None:
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "value", value)

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "value": self.value}


@dataclass(frozen=True)
class _Ranges(AdvancedFilter):
    ranges: tuple[tuple[Number, Number], ...] = ()

    def __init__(self, key: str, ranges: Iterable[Sequence[Number]]) -> None:
        pairs = []
        for pair in ranges:
            if len(pair) != 2:
                raise ValueError(f"{type(self).__name__} ranges are (low, high) pairs, got {pair!r}")
            pairs.append((pair[0], pair[1]))
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "ranges", tuple(pairs))

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "values": [list(pair) for pair in self.ranges]}


class NumberIn(_Values):
    operator_type = "NumberIn"


class NumberNotIn(_Values):
    operator_type = "NumberNotIn"


class NumberLessThan(_Value):
    operator_type = "NumberLessThan"


class NumberGreaterThan(_Value):
    operator_type = "NumberGreaterThan"


class NumberLessThanOrEquals(_Value):
    operator_type = "NumberLessThanOrEquals"


class NumberGreaterThanOrEquals(_Value):
    operator_type = "NumberGreaterThanOrEquals"


class NumberInRange(_Ranges):
    operator_type = "NumberInRange"


class NumberNotInRange(_Ranges):
    operator_type = "NumberNotInRange"


class BoolEquals(_Value):
    operator_type = "BoolEquals"


class StringIn(_Values):
    operator_type = "StringIn"


class StringNotIn(_Values):
    operator_type = "StringNotIn"


class StringBeginsWith(_Values):
    operator_type = "StringBeginsWith"


class StringNotBeginsWith(_Values):
    operator_type = "StringNotBeginsWith"


class StringEndsWith(_Values):
    operator_type = "StringEndsWith"


class StringNotEndsWith(_Values):
    operator_type = "StringNotEndsWith"


class StringContains(_Values):
    operator_type = "StringContains"


class StringNotContains(_Values):
    operator_type = "StringNotContains"


class IsNullOrUndefined(AdvancedFilter):
    operator_type = "IsNullOrUndefined"


class IsNotNull(AdvancedFilter):
    operator_type = "IsNotNull"


def filter_json(item: AdvancedFilter | Mapping[str, Any]) -> dict[str, Any]:
    """Azure's JSON for a filter object, or a copy of a dict already in that shape."""
    if isinstance(item, AdvancedFilter):
        return item.to_json()
    if isinstance(item, Mapping):
        return dict(item)
    raise TypeError(f"an advanced filter must be an AdvancedFilter or a dict, not {type(item).__name__}")
