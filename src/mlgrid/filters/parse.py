"""Validate the JSON of ``properties.filter`` into an ``EventFilter`` and write it back.

Everything a user can get wrong is caught here, once, at subscription time, with a 400 that
names the exact field (``properties.filter.advancedFilters[2].values[0]``). The compiler and the
index then trust the filter and never check it again on the hot path.

Property names are accepted in any case, as ARM's deserialiser does, and written back in
Azure's camelCase; ``null`` means "not given" everywhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from mlgrid.domain.event_filter import (
    BOOL_OPERATORS,
    NUMBER_LIST_OPERATORS,
    NUMBER_RANGE_OPERATORS,
    OPERATORS,
    PRESENCE_OPERATORS,
    STRING_OPERATORS,
    VALUE_OPERATORS,
    AdvancedFilter,
    EventFilter,
    FilterValue,
    Number,
    canonical_schema,
)
from mlgrid.domain.schemas import EventSchema
from mlgrid.errors import invalid

MAX_ADVANCED_FILTERS: Final = 25
MAX_TOTAL_VALUES: Final = 25
MAX_STRING_VALUE_LENGTH: Final = 512
MAX_EXTENSION_NAME_LENGTH: Final = 20

EVENT_GRID_KEYS: Final = ("id", "topic", "subject", "eventType", "dataVersion", "data")
CLOUD_EVENT_KEYS: Final = (
    "id",
    "source",
    "type",
    "subject",
    "specversion",
    "dataschema",
    "datacontenttype",
    "time",
    "data",
)

_FILTER_PROPERTIES: Final = (
    "includedEventTypes",
    "subjectBeginsWith",
    "subjectEndsWith",
    "isSubjectCaseSensitive",
    "enableAdvancedFilteringOnArrays",
    "advancedFilters",
)
_ADVANCED_FILTER_PROPERTIES: Final = ("operatorType", "key", "value", "values")
_OPERATORS_BY_LOWER: Final = {name.lower(): name for name in OPERATORS}
_EVENT_GRID_KEYS_LOWER: Final = frozenset(k.lower() for k in EVENT_GRID_KEYS)
_EXTENSION_NAME: Final = re.compile(r"[a-z0-9]+")


def parse_filter(raw: object, *, input_schema: str, field_prefix: str = "properties.filter") -> EventFilter:
    """Validate a subscription's ``filter`` JSON for a topic of ``input_schema``.

    ``raw`` is the decoded JSON (``None`` when the filter was omitted, which matches every
    event). Numbers should arrive as ``int``/``Decimal``; a ``float`` is accepted and turned
    into the decimal of its shortest repr. Raises ``InvalidField`` naming the offending path.
    """
    schema = canonical_schema(input_schema)
    if raw is None:
        return EventFilter()
    body = _properties(raw, _FILTER_PROPERTIES, field_prefix)
    filters, total_values = _parse_advanced_filters(
        body.get("advancedFilters"), schema, f"{field_prefix}.advancedFilters"
    )
    if total_values > MAX_TOTAL_VALUES:
        raise invalid(
            f"{field_prefix}.advancedFilters",
            f"at most {MAX_TOTAL_VALUES} values in total across all advanced filters, got {total_values}",
        )
    return EventFilter(
        included_event_types=_parse_event_types(
            body.get("includedEventTypes"), f"{field_prefix}.includedEventTypes"
        ),
        subject_begins_with=_optional_string(
            body.get("subjectBeginsWith"), f"{field_prefix}.subjectBeginsWith"
        ),
        subject_ends_with=_optional_string(body.get("subjectEndsWith"), f"{field_prefix}.subjectEndsWith"),
        is_subject_case_sensitive=_optional_bool(
            body.get("isSubjectCaseSensitive"), f"{field_prefix}.isSubjectCaseSensitive"
        ),
        enable_advanced_filtering_on_arrays=_optional_bool(
            body.get("enableAdvancedFilteringOnArrays"), f"{field_prefix}.enableAdvancedFilteringOnArrays"
        ),
        advanced_filters=filters,
    )


def filter_to_json(f: EventFilter) -> dict[str, Any]:
    """The ARM response shape of a filter; ``parse_filter(filter_to_json(f)) == f``.

    Numbers stay ``int``/``Decimal`` so that no precision is lost on the way out; the JSON
    encoder of the API must write ``Decimal`` as a number.
    """
    return {
        "includedEventTypes": None if f.included_event_types is None else list(f.included_event_types),
        "subjectBeginsWith": f.subject_begins_with,
        "subjectEndsWith": f.subject_ends_with,
        "isSubjectCaseSensitive": f.is_subject_case_sensitive,
        "enableAdvancedFilteringOnArrays": f.enable_advanced_filtering_on_arrays,
        "advancedFilters": [advanced_filter_to_json(a) for a in f.advanced_filters],
    }


def advanced_filter_to_json(a: AdvancedFilter) -> dict[str, Any]:
    """One advanced filter in ARM shape: ``value`` or ``values`` only when the operator has it."""
    body: dict[str, Any] = {"operatorType": a.operator_type, "key": a.key}
    if a.value is not None:
        body["value"] = a.value
    if a.values is not None:
        body["values"] = [list(v) if isinstance(v, tuple) else v for v in a.values]
    return body


def is_addressable_key(key: str, input_schema: str) -> bool:
    """Whether ``key`` names something an event of ``input_schema`` can carry (SPEC §5)."""
    return _key_problem(key, canonical_schema(input_schema)) is None


# --- the filter object -------------------------------------------------------------------


def _properties(raw: object, allowed: Sequence[str], field: str) -> dict[str, object]:
    """The object's properties under their canonical names; unknown or repeated names are errors.

    ``null`` values are dropped so that "absent" and "null" are one case for the callers.
    """
    if not isinstance(raw, Mapping):
        raise invalid(field, "must be a JSON object")
    by_lower = {name.lower(): name for name in allowed}
    seen: set[str] = set()
    body: dict[str, object] = {}
    for name, value in raw.items():
        canonical = by_lower.get(name.lower()) if isinstance(name, str) else None
        if canonical is None:
            raise invalid(f"{field}.{name}", f"unknown property; expected one of {', '.join(allowed)}")
        if canonical in seen:
            raise invalid(f"{field}.{canonical}", "given more than once (property names ignore case)")
        seen.add(canonical)
        if value is not None:
            body[canonical] = value
    return body


def _parse_event_types(raw: object, field: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list | tuple):
        raise invalid(field, "must be an array of event type names or null")
    types: list[str] = []
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not item:
            raise invalid(f"{field}[{i}]", "must be a non-empty string")
        types.append(item)
    return tuple(types)


def _optional_string(raw: object, field: str) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise invalid(field, "must be a string")
    return raw


def _optional_bool(raw: object, field: str) -> bool:
    if raw is None:
        return False
    if not isinstance(raw, bool):
        raise invalid(field, "must be true or false")
    return raw


# --- advanced filters ----------------------------------------------------------------------


def _parse_advanced_filters(raw: object, schema: str, field: str) -> tuple[tuple[AdvancedFilter, ...], int]:
    """The advanced filters and the number of values they hold (a range pair counts as one)."""
    if raw is None:
        return (), 0
    if not isinstance(raw, list | tuple):
        raise invalid(field, "must be an array of advanced filters")
    if len(raw) > MAX_ADVANCED_FILTERS:
        raise invalid(field, f"at most {MAX_ADVANCED_FILTERS} advanced filters, got {len(raw)}")
    filters = tuple(_parse_advanced_filter(item, schema, f"{field}[{i}]") for i, item in enumerate(raw))
    total = sum(len(a.values) if a.values is not None else int(a.value is not None) for a in filters)
    return filters, total


def _parse_advanced_filter(raw: object, schema: str, field: str) -> AdvancedFilter:
    body = _properties(raw, _ADVANCED_FILTER_PROPERTIES, field)
    operator = _parse_operator(body.get("operatorType"), f"{field}.operatorType")
    key = _parse_key(body.get("key"), schema, f"{field}.key")
    value, values = body.get("value"), body.get("values")

    if operator in PRESENCE_OPERATORS:
        if value is not None:
            raise invalid(f"{field}.value", f"{operator} takes no value")
        if values is not None:
            raise invalid(f"{field}.values", f"{operator} takes no values")
        return AdvancedFilter(operator, key)

    if operator in VALUE_OPERATORS:
        if value is None:
            hint = "; use 'value', not 'values'" if values is not None else ""
            raise invalid(f"{field}.value", f"{operator} requires a single 'value'{hint}")
        if values is not None:
            raise invalid(f"{field}.values", f"{operator} takes a single 'value', not 'values'")
        if operator in BOOL_OPERATORS:
            if not isinstance(value, bool):
                raise invalid(f"{field}.value", f"{operator} requires true or false")
            return AdvancedFilter(operator, key, value=value)
        return AdvancedFilter(operator, key, value=_parse_number(value, f"{field}.value"))

    if values is None:
        hint = "; use 'values', not 'value'" if value is not None else ""
        raise invalid(f"{field}.values", f"{operator} requires a non-empty array 'values'{hint}")
    if value is not None:
        raise invalid(f"{field}.value", f"{operator} takes 'values', not a single 'value'")
    if not isinstance(values, list | tuple):
        raise invalid(f"{field}.values", "must be an array")
    if not values:
        raise invalid(f"{field}.values", f"{operator} requires at least one value")
    parsed: list[FilterValue]
    if operator in STRING_OPERATORS:
        parsed = [_parse_string_value(v, f"{field}.values[{i}]") for i, v in enumerate(values)]
    elif operator in NUMBER_LIST_OPERATORS:
        parsed = [_parse_number(v, f"{field}.values[{i}]") for i, v in enumerate(values)]
    else:
        assert operator in NUMBER_RANGE_OPERATORS
        parsed = [_parse_range(v, f"{field}.values[{i}]") for i, v in enumerate(values)]
    return AdvancedFilter(operator, key, values=tuple(parsed))


def _parse_operator(raw: object, field: str) -> str:
    if raw is None:
        raise invalid(field, "is required")
    canonical = _OPERATORS_BY_LOWER.get(raw.lower()) if isinstance(raw, str) else None
    if canonical is None:
        raise invalid(field, f"unknown operatorType {raw!r}; expected one of {', '.join(sorted(OPERATORS))}")
    return canonical


def _parse_key(raw: object, schema: str, field: str) -> str:
    if raw is None:
        raise invalid(field, "is required")
    if not isinstance(raw, str) or not raw:
        raise invalid(field, "must be a non-empty string")
    problem = _key_problem(raw, schema)
    if problem is not None:
        raise invalid(field, problem)
    return raw


def _key_problem(key: str, schema: str) -> str | None:
    """Why ``key`` cannot address a field of an event in ``schema``, or ``None`` if it can."""
    head, dot, path = key.partition(".")
    lowered = head.lower()
    if dot:
        if lowered != "data":
            return f"{key!r} is not addressable: only 'data.<path>' may step into a value"
        if any(segment == "" for segment in path.split(".")):
            return f"{key!r} has an empty path segment"
        return None
    if schema == EventSchema.CLOUD_EVENTS:
        if len(lowered) <= MAX_EXTENSION_NAME_LENGTH and _EXTENSION_NAME.fullmatch(lowered):
            return None
        return (
            f"{key!r} is not addressable in CloudEvents: use {', '.join(CLOUD_EVENT_KEYS)}, "
            f"data.<path> or an extension attribute name (a-z, 0-9, at most {MAX_EXTENSION_NAME_LENGTH})"
        )
    if lowered in _EVENT_GRID_KEYS_LOWER:
        return None
    return (
        f"{key!r} is not addressable in the Event Grid schema: "
        f"use {', '.join(EVENT_GRID_KEYS)} or data.<path>"
    )


#: The largest magnitude a filter number may have: a double's. JSON allows more (``1e400``),
#: but no double-based reader (the UI's number formatting, other languages' clients, Azure's
#: own comparisons) can hold it, so the API refuses it, naming the field, rather than store a
#: value its own tools fail on. Within the range every number is kept exactly.
MAX_MAGNITUDE = Decimal("1.7976931348623157e308")


def _parse_number(raw: object, field: str) -> Number:
    """A filter number: ``int`` or finite ``Decimal`` (a ``float`` becomes its repr's decimal)."""
    if isinstance(raw, bool):
        raise invalid(field, "must be a number (booleans are not numbers)")
    if isinstance(raw, int):
        if abs(raw) > MAX_MAGNITUDE:
            raise invalid(field, "is beyond the range of a double (about 1.8e308)")
        return int(raw)
    if isinstance(raw, Decimal):
        if not raw.is_finite():
            raise invalid(field, "must be a finite number")
        if abs(raw) > MAX_MAGNITUDE:
            raise invalid(field, "is beyond the range of a double (about 1.8e308)")
        return raw
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise invalid(field, "must be a finite number")
        return Decimal(repr(raw))
    raise invalid(field, "must be a number")


def _parse_range(raw: object, field: str) -> tuple[Number, Number]:
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise invalid(field, "must be a [lo, hi] pair of numbers")
    lo = _parse_number(raw[0], f"{field}[0]")
    hi = _parse_number(raw[1], f"{field}[1]")
    if lo > hi:
        raise invalid(field, f"range lower bound {lo} is greater than upper bound {hi}")
    return (lo, hi)


def _parse_string_value(raw: object, field: str) -> str:
    if not isinstance(raw, str):
        raise invalid(field, "must be a string")
    if len(raw) > MAX_STRING_VALUE_LENGTH:
        raise invalid(field, f"must be at most {MAX_STRING_VALUE_LENGTH} characters, got {len(raw)}")
    return raw
