"""The filter of an event subscription as plain, immutable values.

A filter is data first (what the user asked for, in the shape Azure's ARM API uses) and a
predicate second (``compile.py``). Keeping the parsed form as frozen dataclasses lets the broker
store, compare and echo a filter back without ever re-validating it, and lets the compiler and the
index rely on it being valid.

Numbers are ``int`` or ``Decimal``, never ``float``: SPEC §5 compares numbers exactly, so a
filter value such as ``0.3`` must stay the decimal the user wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final, TypeAlias

from mlgrid.domain.schemas import INPUT_SCHEMAS, EventSchema

Number: TypeAlias = int | Decimal
"""A JSON number as mlgrid keeps it: an ``int`` or an exact ``Decimal``."""

RangePair: TypeAlias = tuple[Number, Number]
"""An inclusive ``[lo, hi]`` range of ``NumberInRange`` / ``NumberNotInRange``."""

FilterValue: TypeAlias = Number | str | RangePair
"""One element of ``values``: a number, a string or a range pair depending on the operator."""


# Operator families. The family decides the shape of the value (``value`` or ``values`` and
# the element type) and how a missing key, a type mismatch and arrays are treated (SPEC §5).
NUMBER_LIST_OPERATORS: Final = frozenset({"NumberIn", "NumberNotIn"})
NUMBER_SINGLE_OPERATORS: Final = frozenset(
    {"NumberLessThan", "NumberGreaterThan", "NumberLessThanOrEquals", "NumberGreaterThanOrEquals"}
)
NUMBER_RANGE_OPERATORS: Final = frozenset({"NumberInRange", "NumberNotInRange"})
BOOL_OPERATORS: Final = frozenset({"BoolEquals"})
STRING_OPERATORS: Final = frozenset(
    {
        "StringIn",
        "StringNotIn",
        "StringBeginsWith",
        "StringNotBeginsWith",
        "StringEndsWith",
        "StringNotEndsWith",
        "StringContains",
        "StringNotContains",
    }
)
PRESENCE_OPERATORS: Final = frozenset({"IsNullOrUndefined", "IsNotNull"})

OPERATORS: Final = (
    NUMBER_LIST_OPERATORS
    | NUMBER_SINGLE_OPERATORS
    | NUMBER_RANGE_OPERATORS
    | BOOL_OPERATORS
    | STRING_OPERATORS
    | PRESENCE_OPERATORS
)
"""Every ``operatorType`` mlgrid accepts, in Azure's spelling."""

VALUE_OPERATORS: Final = NUMBER_SINGLE_OPERATORS | BOOL_OPERATORS
"""Operators that take a single ``value``; the list and range operators take ``values``."""

VALUES_OPERATORS: Final = NUMBER_LIST_OPERATORS | NUMBER_RANGE_OPERATORS | STRING_OPERATORS

NEGATED_MATCH_WHEN_ABSENT: Final = frozenset({"NumberNotIn", "StringNotIn", "NumberNotInRange"})
"""``Not`` operators that match a missing key or a value of the wrong type (SPEC §5)."""

NEGATED_STRICT: Final = frozenset({"StringNotBeginsWith", "StringNotEndsWith", "StringNotContains"})
"""``Not`` operators that need a string to be present before they can match (SPEC §5)."""


@dataclass(frozen=True)
class AdvancedFilter:
    """One advanced filter: ``operator_type`` applied to the event value at ``key``.

    Exactly one of ``value`` (single-value operators) and ``values`` (list and range operators)
    is set; both are ``None`` for ``IsNullOrUndefined`` and ``IsNotNull``. ``key`` is kept as
    the user wrote it so that the API echoes it back unchanged; matching ignores its case.
    """

    operator_type: str
    key: str
    value: Number | bool | None = None
    values: tuple[FilterValue, ...] | None = None


@dataclass(frozen=True)
class EventFilter:
    """The ``properties.filter`` of a subscription; the defaults match every event."""

    included_event_types: tuple[str, ...] | None = None
    subject_begins_with: str = ""
    subject_ends_with: str = ""
    is_subject_case_sensitive: bool = False
    enable_advanced_filtering_on_arrays: bool = False
    advanced_filters: tuple[AdvancedFilter, ...] = ()

    @property
    def matches_all_event_types(self) -> bool:
        """True when the event type list does not restrict anything (null, empty or "All")."""
        types = self.included_event_types
        return not types or any(t.lower() == "all" for t in types)


def canonical_schema(input_schema: str) -> str:
    """The schema a filter is evaluated against: custom events are matched as Event Grid events.

    Custom-schema events are normalised to the Event Grid schema by the input mapping before
    they are matched, so their filters use Event Grid keys. Names are compared ignoring case.
    Raises ``ValueError`` for an unknown name, which is a programming error (topics only carry
    the three known schemas).
    """
    lowered = input_schema.lower()
    if lowered == EventSchema.CLOUD_EVENTS.lower():
        return EventSchema.CLOUD_EVENTS
    # "CustomInputSchema" is Azure's name for the same thing on the delivery side; accept it
    # rather than fail routing over a naming slip.
    if lowered in (EventSchema.EVENT_GRID.lower(), EventSchema.CUSTOM_EVENT.lower(),
                   EventSchema.CUSTOM_INPUT.lower()):
        return EventSchema.EVENT_GRID
    raise ValueError(f"unknown input schema {input_schema!r}; expected one of {', '.join(INPUT_SCHEMAS)}")
