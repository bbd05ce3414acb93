"""Validate the JSON of ``properties.filter`` into an ``EventFilter`` and write it back.

Everything a user can get wrong is caught here, once, at subscription time, with a 400 that
names the exact field (``properties.filter.advancedFilters[2].values[0]``). The compiler and the
index then trust the filter and never check it again on the hot path.

The filter's shape is two body models (``mlgrid/body.py``), ``FilterBody`` and
``AdvancedFilterBody``: they validate it and are the OpenAPI schema of ``properties.filter``.
Which keys a filter may name depends on the topic's input schema, which the models read from
the validation context (``parse_filter`` passes it).

Property names are accepted in any case, as ARM's deserialiser does, and written back in
Azure's camelCase; ``null`` means "not given" everywhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, Final

from pydantic import PrivateAttr, ValidationError, ValidationInfo, WithJsonSchema, model_validator

from mlgrid.body import ArmBody, Invalid, case_insensitive, checker, openapi_schema, parse, relay
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
    return parse(FilterBody, raw, root=field_prefix, context={_INPUT_SCHEMA: schema}).event_filter()


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

_INPUT_SCHEMA: Final = "inputSchema"
_NO_VALUE: Final = "null or left out when the operator takes none"


def _input_schema(info: ValidationInfo) -> str:
    schema = (info.context or {}).get(_INPUT_SCHEMA)
    if not isinstance(schema, str):
        raise TypeError("a filter is validated for a topic: pass its input schema in the context")
    return schema


class _FilterObject(ArmBody):
    """An object of a filter: names ignore case; one given twice is named in its canonical
    spelling."""

    @classmethod
    def canonical_members(cls, value: object) -> dict[str, Any]:
        if isinstance(value, Mapping):
            by_lower = {(f.alias or name).lower(): f.alias or name for name, f in cls.model_fields.items()}
            seen: set[str] = set()
            for name in value:
                canonical = by_lower.get(name.lower()) if isinstance(name, str) else None
                if canonical is None:
                    break  # unknown: the base names it
                if canonical in seen:
                    raise Invalid("given more than once (property names ignore case)", at=canonical)
                seen.add(canonical)
        return super().canonical_members(value)


def _operator(raw: object) -> str:
    if raw is None:
        raise Invalid("is required")
    canonical = _OPERATORS_BY_LOWER.get(raw.lower()) if isinstance(raw, str) else None
    if canonical is None:
        raise Invalid(f"unknown operatorType {raw!r}; expected one of {', '.join(sorted(OPERATORS))}")
    return canonical


def _key(raw: object, info: ValidationInfo) -> str:
    if raw is None:
        raise Invalid("is required")
    if not isinstance(raw, str) or not raw:
        raise Invalid("must be a non-empty string")
    problem = _key_problem(raw, _input_schema(info))
    if problem is not None:
        raise Invalid(problem)
    return raw


class AdvancedFilterBody(_FilterObject):
    """One advanced filter: an operator, the key it reads and its ``value`` or ``values``
    (which of the two, and of what type, depends on the operator)."""

    operator_type: Annotated[Any, *checker(_operator, {
        "type": "string", "pattern": case_insensitive(sorted(OPERATORS)),
        "description": f"one of {', '.join(sorted(OPERATORS))} (any letter case)",
    })]
    key: Annotated[Any, *checker(_key, {
        "type": "string", "minLength": 1,
        "description": "data.<path>, or an envelope field of the topic's input schema",
    })]
    value: Annotated[Any, WithJsonSchema({
        "type": ["number", "boolean", "null"],
        "description": f"the value of a Number comparison or BoolEquals; {_NO_VALUE}",
    })] = None
    values: Annotated[Any, WithJsonSchema({
        "type": ["array", "null"], "maxItems": MAX_TOTAL_VALUES,
        "items": {"anyOf": [
            {"type": "string", "maxLength": MAX_STRING_VALUE_LENGTH},
            {"type": "number"},
            {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
        ]},
        "description": "strings, numbers or [lo, hi] ranges, by operator; " + _NO_VALUE,
    })] = None

    _filter: AdvancedFilter | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _operands(self) -> AdvancedFilterBody:
        self._filter = _advanced_filter(self.operator_type, self.key, self.value, self.values)
        return self

    def advanced_filter(self) -> AdvancedFilter:
        assert self._filter is not None
        return self._filter


def _advanced_filters(raw: object, info: ValidationInfo) -> tuple[AdvancedFilter, ...]:
    """The advanced filters, at most ``MAX_TOTAL_VALUES`` values in all (a range pair counts as one)."""
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple):
        raise Invalid("must be an array of advanced filters")
    if len(raw) > MAX_ADVANCED_FILTERS:
        raise Invalid(f"at most {MAX_ADVANCED_FILTERS} advanced filters, got {len(raw)}")
    filters: list[AdvancedFilter] = []
    for index, item in enumerate(raw):
        try:
            body = AdvancedFilterBody.model_validate(item, context=info.context)
        except ValidationError as exc:
            raise relay(exc, f"[{index}]") from None
        filters.append(body.advanced_filter())
    total = sum(len(a.values) if a.values is not None else int(a.value is not None) for a in filters)
    if total > MAX_TOTAL_VALUES:
        raise Invalid(f"at most {MAX_TOTAL_VALUES} values in total across all advanced filters, got {total}")
    return tuple(filters)


def _event_types(raw: object) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list | tuple):
        raise Invalid("must be an array of event type names or null")
    types: list[str] = []
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not item:
            raise Invalid("must be a non-empty string", at=f"[{i}]")
        types.append(item)
    return tuple(types)


def _optional_string(raw: object) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise Invalid("must be a string")
    return raw


def _optional_bool(raw: object) -> bool:
    if raw is None:
        return False
    if not isinstance(raw, bool):
        raise Invalid("must be true or false")
    return raw


_STRING: dict[str, Any] = {"type": ["string", "null"]}
_FLAG: dict[str, Any] = {"type": ["boolean", "null"], "description": "null or left out: false"}


class FilterBody(_FilterObject):
    """``properties.filter`` of an event subscription (SPEC §5). ``advancedFilters`` comes
    first: its errors are reported before the others', as they always were."""

    advanced_filters: Annotated[Any, *checker(_advanced_filters, {
        "type": ["array", "null"], "maxItems": MAX_ADVANCED_FILTERS,
        "items": openapi_schema(AdvancedFilterBody),
        "description": f"at most {MAX_TOTAL_VALUES} values in total across all of them",
    })] = None
    included_event_types: Annotated[Any, *checker(_event_types, {
        "type": ["array", "null"], "items": {"type": "string", "minLength": 1},
    })] = None
    subject_begins_with: Annotated[Any, *checker(_optional_string, _STRING)] = None
    subject_ends_with: Annotated[Any, *checker(_optional_string, _STRING)] = None
    is_subject_case_sensitive: Annotated[Any, *checker(_optional_bool, _FLAG)] = None
    enable_advanced_filtering_on_arrays: Annotated[Any, *checker(_optional_bool, _FLAG)] = None

    @classmethod
    def unknown_reason(cls, known: list[str]) -> str:
        return f"unknown property; expected one of {', '.join(_FILTER_PROPERTIES)}"

    def event_filter(self) -> EventFilter:
        """The validated filter (members left out take their defaults)."""
        return EventFilter(
            included_event_types=self.included_event_types,
            subject_begins_with=self.subject_begins_with or "",
            subject_ends_with=self.subject_ends_with or "",
            is_subject_case_sensitive=bool(self.is_subject_case_sensitive),
            enable_advanced_filtering_on_arrays=bool(self.enable_advanced_filtering_on_arrays),
            advanced_filters=self.advanced_filters or (),
        )


# --- advanced filters ----------------------------------------------------------------------


def _advanced_filter(operator: str, key: str, value: object, values: object) -> AdvancedFilter:
    """``operator``'s operands checked: presence operators take none, value operators a single
    ``value``, the others a non-empty array ``values``."""
    if operator in PRESENCE_OPERATORS:
        if value is not None:
            raise Invalid(f"{operator} takes no value", at="value")
        if values is not None:
            raise Invalid(f"{operator} takes no values", at="values")
        return AdvancedFilter(operator, key)

    if operator in VALUE_OPERATORS:
        if value is None:
            hint = "; use 'value', not 'values'" if values is not None else ""
            raise Invalid(f"{operator} requires a single 'value'{hint}", at="value")
        if values is not None:
            raise Invalid(f"{operator} takes a single 'value', not 'values'", at="values")
        if operator in BOOL_OPERATORS:
            if not isinstance(value, bool):
                raise Invalid(f"{operator} requires true or false", at="value")
            return AdvancedFilter(operator, key, value=value)
        return AdvancedFilter(operator, key, value=_parse_number(value, "value"))

    if values is None:
        hint = "; use 'values', not 'value'" if value is not None else ""
        raise Invalid(f"{operator} requires a non-empty array 'values'{hint}", at="values")
    if value is not None:
        raise Invalid(f"{operator} takes 'values', not a single 'value'", at="value")
    if not isinstance(values, list | tuple):
        raise Invalid("must be an array", at="values")
    if not values:
        raise Invalid(f"{operator} requires at least one value", at="values")
    parsed: list[FilterValue]
    if operator in STRING_OPERATORS:
        parsed = [_parse_string_value(v, f"values[{i}]") for i, v in enumerate(values)]
    elif operator in NUMBER_LIST_OPERATORS:
        parsed = [_parse_number(v, f"values[{i}]") for i, v in enumerate(values)]
    else:
        assert operator in NUMBER_RANGE_OPERATORS
        parsed = [_parse_range(v, f"values[{i}]") for i, v in enumerate(values)]
    return AdvancedFilter(operator, key, values=tuple(parsed))


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


def _parse_number(raw: object, at: str) -> Number:
    """A filter number: ``int`` or finite ``Decimal`` (a ``float`` becomes its repr's decimal);
    an error names ``at`` (a path inside the advanced filter)."""
    if isinstance(raw, bool):
        raise Invalid("must be a number (booleans are not numbers)", at=at)
    if isinstance(raw, int):
        if abs(raw) > MAX_MAGNITUDE:
            raise Invalid("is beyond the range of a double (about 1.8e308)", at=at)
        return int(raw)
    if isinstance(raw, Decimal):
        if not raw.is_finite():
            raise Invalid("must be a finite number", at=at)
        if abs(raw) > MAX_MAGNITUDE:
            raise Invalid("is beyond the range of a double (about 1.8e308)", at=at)
        return raw
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise Invalid("must be a finite number", at=at)
        return Decimal(repr(raw))
    raise Invalid("must be a number", at=at)


def _parse_range(raw: object, at: str) -> tuple[Number, Number]:
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise Invalid("must be a [lo, hi] pair of numbers", at=at)
    lo = _parse_number(raw[0], f"{at}[0]")
    hi = _parse_number(raw[1], f"{at}[1]")
    if lo > hi:
        raise Invalid(f"range lower bound {lo} is greater than upper bound {hi}", at=at)
    return (lo, hi)


def _parse_string_value(raw: object, at: str) -> str:
    if not isinstance(raw, str):
        raise Invalid("must be a string", at=at)
    if len(raw) > MAX_STRING_VALUE_LENGTH:
        raise Invalid(f"must be at most {MAX_STRING_VALUE_LENGTH} characters, got {len(raw)}", at=at)
    return raw
