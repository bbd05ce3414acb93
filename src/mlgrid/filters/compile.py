"""Turn an ``EventFilter`` into a predicate over events, exactly as SPEC §5 decides.

Compilation does all the work that does not depend on the event once: operator dispatch,
lower-casing of filter strings, splitting keys into path segments, building sets for the ``In``
operators. What is left per event is a dictionary walk and one comparison per value.

Semantics in one place (SPEC §5 is normative; these are its rules as implemented here):

* a missing key and JSON ``null`` behave alike, and a value of the wrong type behaves like a
  missing key: positive operators fail, ``NumberNotIn``/``StringNotIn``/``NumberNotInRange``
  match, ``StringNotBeginsWith``/``EndsWith``/``Contains`` fail;
* numbers are ``int``/``Decimal`` compared exactly; strings of the form ``-?[0-9]+(\\.[0-9]+)?``
  count as numbers; booleans never do;
* arrays are a type mismatch unless ``enableAdvancedFilteringOnArrays``; with it, elements of
  the wrong type are skipped and the operator is applied across the remaining elements;
* ``IsNullOrUndefined``/``IsNotNull`` only look at presence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal

from mlgrid.domain.event_filter import (
    BOOL_OPERATORS,
    NEGATED_MATCH_WHEN_ABSENT,
    NEGATED_STRICT,
    NUMBER_LIST_OPERATORS,
    NUMBER_RANGE_OPERATORS,
    NUMBER_SINGLE_OPERATORS,
    STRING_OPERATORS,
    AdvancedFilter,
    EventFilter,
    Number,
    canonical_schema,
)
from mlgrid.domain.schemas import EventSchema

EventPredicate = Callable[[Mapping[str, Any]], bool]
"""A compiled filter: ``True`` when the subscription wants the event."""

_MISSING: Final[Any] = object()
"""A key the event does not have (or a path through a non-object)."""

_MISMATCH: Final[Any] = object()
"""A value whose type the operator does not accept."""

_NUMERIC_STRING: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")

# The first path segment is tried in the envelope's own spelling before the case-insensitive
# scan, so that ``eventtype`` finds ``eventType`` with one dictionary lookup.
_ENVELOPE_SPELLING: Final = {
    name.lower(): name
    for name in (
        "id",
        "topic",
        "subject",
        "eventType",
        "dataVersion",
        "data",
        "source",
        "type",
        "specversion",
        "dataschema",
        "datacontenttype",
        "time",
    )
}


#: Entries a ``FilterCompiler`` keeps before it starts its memo over.
_CACHE_LIMIT: Final = 8192


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    """A filter split into the parts an index can look up and the parts it must evaluate.

    ``event_types`` is the lower-cased set of accepted types (``None``: all types);
    ``subject_prefix`` and ``subject_suffix`` are lower-cased unless ``case_sensitive``;
    ``advanced`` checks every advanced filter (``None`` when there are none); ``anchors`` are
    the advanced filters an index can look up by the event's value instead of evaluating them,
    the most selective kind first (empty when none is of a kind that can be looked up).
    """

    event_types: frozenset[str] | None
    subject_prefix: str
    subject_suffix: str
    case_sensitive: bool
    advanced: EventPredicate | None
    anchors: tuple[Anchor, ...] = ()


AnchorKind = Literal["strings", "numbers", "bool", "prefixes", "gt", "ge", "lt", "le"]
"""How an anchor is looked up: by equality (``strings``, ``numbers``, ``bool``), by string
prefix (``prefixes``) or by a threshold the event value must exceed or stay under."""


@dataclass(frozen=True, slots=True)
class Anchor:
    """A necessary condition of a filter that an index can answer by looking up the event value.

    A subscription can only match an event whose value at ``key`` (read by ``get``, with arrays
    taken element by element when ``arrays``) satisfies the anchor, so an index that files the
    subscription under its anchor may skip it for every other value. The anchor is always one
    of the filter's *positive* advanced filters (or, for ``NumberInRange``, the lower bound of
    its widest range), so it never excludes an event the full predicate would accept; the full
    predicate still decides. Values are normalised the way the predicate reads event values:
    strings lower-cased, numbers exact (``int``/``Decimal``). ``identity`` is the same for
    identical advanced filters (an index counts how many subscriptions share one, and prefers
    the least shared anchor); ``rank`` orders kinds by how few subscriptions a lookup usually
    finds (equality before prefixes before booleans before thresholds).
    """

    key: str
    arrays: bool
    kind: AnchorKind
    values: tuple[object, ...]
    get: Callable[[Mapping[str, Any]], Any]
    identity: tuple[object, ...]
    rank: int


# Lower ranks are preferred: an equality lookup singles out the fewest subscriptions, a
# threshold the most.
_ANCHOR_RANK: Final[dict[str, int]] = {
    "StringIn": 0,
    "NumberIn": 0,
    "StringBeginsWith": 1,
    "BoolEquals": 2,
    "NumberGreaterThan": 3,
    "NumberGreaterThanOrEquals": 3,
    "NumberLessThan": 3,
    "NumberLessThanOrEquals": 3,
    "NumberInRange": 4,
}
_THRESHOLD_KINDS: Final[dict[str, AnchorKind]] = {
    "NumberGreaterThan": "gt",
    "NumberGreaterThanOrEquals": "ge",
    "NumberLessThan": "lt",
    "NumberLessThanOrEquals": "le",
}


class FilterCompiler:
    """Compiles filters, sharing what identical filters have in common.

    Compiled predicates are shared between identical advanced filters (and key readers
    between identical keys). Many subscriptions filter on the same keys and values; sharing
    keeps the objects an event touches few and hot in the CPU cache, which is what keeps
    matching time flat as subscriptions grow. The memo belongs to the compiler (the
    subscription index has one), holds immutable closures only, and is simply emptied past
    its bound (compiled filters keep their own references).
    """

    def __init__(self) -> None:
        self._predicates: dict[tuple[object, ...], EventPredicate] = {}
        self._getters: dict[str, Callable[[Mapping[str, Any]], Any]] = {}

    def compile(self, f: EventFilter, input_schema: str) -> EventPredicate:
        """A predicate that is ``True`` exactly when a subscription with filter ``f`` matches.

        Events are plain dicts in ``input_schema`` (custom-schema events already normalised to
        the Event Grid schema). The event type is ``eventType`` (Event Grid) or ``type``
        (CloudEvents); a missing subject counts as ``""``.
        """
        type_field = "type" if canonical_schema(input_schema) == EventSchema.CLOUD_EVENTS else "eventType"
        parts = self.parts(f)
        event_types, prefix, suffix, case_sensitive = (
            parts.event_types,
            parts.subject_prefix,
            parts.subject_suffix,
            parts.case_sensitive,
        )
        advanced = parts.advanced or _always

        def matches(event: Mapping[str, Any]) -> bool:
            if event_types is not None:
                event_type = event.get(type_field)
                if not isinstance(event_type, str) or event_type.lower() not in event_types:
                    return False
            subject = event.get("subject")
            if not isinstance(subject, str):
                subject = ""
            elif not case_sensitive:
                subject = subject.lower()
            return subject.startswith(prefix) and subject.endswith(suffix) and advanced(event)

        return matches

    def parts(self, f: EventFilter) -> CompiledFilter:
        """Compile ``f`` into index keys plus the predicate of its advanced filters."""
        case_sensitive = f.is_subject_case_sensitive
        prefix = f.subject_begins_with if case_sensitive else f.subject_begins_with.lower()
        suffix = f.subject_ends_with if case_sensitive else f.subject_ends_with.lower()
        event_types = (
            None
            if f.matches_all_event_types or f.included_event_types is None
            else frozenset(t.lower() for t in f.included_event_types)
        )
        arrays = f.enable_advanced_filtering_on_arrays
        advanced = self._compile_all(f.advanced_filters, arrays)
        anchors = tuple(
            sorted(
                (self._anchor(a, arrays) for a in f.advanced_filters if a.operator_type in _ANCHOR_RANK),
                key=lambda anchor: anchor.rank,
            )
        )
        return CompiledFilter(event_types, prefix, suffix, case_sensitive, advanced, anchors)

    def _anchor(self, a: AdvancedFilter, arrays: bool) -> Anchor:
        """``a`` as an index lookup. Called after ``_compile_all``, so its values are valid."""
        operator = a.operator_type
        kind: AnchorKind
        values: tuple[object, ...]
        if operator == "StringIn":
            kind, values = "strings", tuple(s.lower() for s in _strings(a))
        elif operator == "StringBeginsWith":
            kind, values = "prefixes", tuple(s.lower() for s in _strings(a))
        elif operator == "NumberIn":
            kind, values = "numbers", tuple(_numbers(a))
        elif operator == "BoolEquals":
            kind, values = "bool", (a.value,)
        elif operator == "NumberInRange":
            # Inside any of the ranges implies at least the smallest lower bound.
            kind, values = "ge", (min(lo for lo, _ in _ranges(a)),) if a.values else ()
        else:
            kind, values = _THRESHOLD_KINDS[operator], (_number(a.value, a),)
        getter = self._getter(a.key)
        return Anchor(a.key, arrays, kind, values, getter, _identity(a, arrays), _ANCHOR_RANK[operator])

    def _remember(self, identity: tuple[object, ...], predicate: EventPredicate) -> EventPredicate:
        if len(self._predicates) >= _CACHE_LIMIT:
            self._predicates.clear()
        self._predicates[identity] = predicate
        return predicate

    def _compile_all(self, filters: tuple[AdvancedFilter, ...], arrays: bool) -> EventPredicate | None:
        """One predicate that holds when every advanced filter holds, shared when already built."""
        if not filters:
            return None
        identity = tuple(_identity(a, arrays) for a in filters)
        cached = self._predicates.get(identity)
        if cached is not None:
            return cached
        if len(filters) == 1:
            return self._remember(identity, self._compile_advanced(filters[0], arrays))
        parts = tuple(self._compile_advanced(a, arrays) for a in filters)

        def combined(event: Mapping[str, Any]) -> bool:
            for predicate in parts:  # noqa: SIM110 - a plain loop avoids a generator per event
                if not predicate(event):
                    return False
            return True

        return self._remember(identity, combined)

    def _compile_advanced(self, a: AdvancedFilter, arrays: bool) -> EventPredicate:
        """The predicate of one advanced filter (shared between identical ones)."""
        identity = (_identity(a, arrays),)
        cached = self._predicates.get(identity)
        if cached is None:
            cached = self._remember(identity, _build_advanced(a, arrays, self._getter(a.key)))
        return cached

    def _getter(self, key: str) -> Callable[[Mapping[str, Any]], Any]:
        """The reader of ``key``, shared between all filters on the same key."""
        getter = self._getters.get(key)
        if getter is None:
            if len(self._getters) >= _CACHE_LIMIT:
                self._getters.clear()
            getter = self._getters[key] = _compile_getter(key)
        return getter


def compile_filter(f: EventFilter, input_schema: str) -> EventPredicate:
    """``FilterCompiler().compile``: one filter on its own (replay, tests); the subscription
    index keeps a compiler of its own so that its filters share their parts."""
    return FilterCompiler().compile(f, input_schema)


def compile_parts(f: EventFilter) -> CompiledFilter:
    """``FilterCompiler().parts`` for one filter on its own."""
    return FilterCompiler().parts(f)


def _always(event: Mapping[str, Any]) -> bool:
    return True


def _identity(a: AdvancedFilter, arrays: bool) -> tuple[object, ...]:
    """What makes two advanced filters behave identically (``repr`` keeps 1, 1.0 and True apart)."""
    return (a.operator_type, a.key, arrays, repr(a.value), repr(a.values))


# --- reading a key -----------------------------------------------------------------------------


def _scan(mapping: Mapping[str, Any], name_lower: str) -> Any:
    """The value of the first key equal to ``name_lower`` ignoring case, or ``_MISSING``.

    Only reached when the exact spelling is absent, so the common case costs one ``get``.
    """
    for candidate, value in mapping.items():
        if isinstance(candidate, str) and candidate.lower() == name_lower:
            return value
    return _MISSING


def read_key(event: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    """``(present, value)`` of ``key`` in ``event``, read exactly as a filter on that key reads
    it (case-insensitive segments, envelope spellings first); JSON ``null`` counts as absent."""
    value = _compile_getter(key)(event)
    return (value is not _MISSING and value is not None), (None if value is _MISSING else value)


def _compile_getter(key: str) -> Callable[[Mapping[str, Any]], Any]:
    """A reader for ``key`` that returns ``_MISSING`` when any step is absent or not an object.

    Each segment is looked up in the spelling the filter uses (for envelope names, the
    envelope's own spelling) and only then by a case-insensitive scan.
    """
    head, *rest = key.split(".")
    head_lower = head.lower()
    head_spelling = _ENVELOPE_SPELLING.get(head_lower, head_lower)
    steps = tuple((segment, segment.lower()) for segment in rest)

    if not steps:

        def get_attribute(event: Mapping[str, Any]) -> Any:
            value = event.get(head_spelling, _MISSING)
            return value if value is not _MISSING else _scan(event, head_lower)

        return get_attribute

    def get_path(event: Mapping[str, Any]) -> Any:
        current = event.get(head_spelling, _MISSING)
        if current is _MISSING:
            current = _scan(event, head_lower)
        for name, name_lower in steps:
            if type(current) is not dict and not isinstance(current, Mapping):
                return _MISSING
            value = current.get(name, _MISSING)
            current = value if value is not _MISSING else _scan(current, name_lower)
        return current

    return get_path


# --- value types ---------------------------------------------------------------------------------


def _as_number(value: Any) -> Any:
    """The exact number ``value`` stands for, or ``_MISMATCH`` (booleans are not numbers)."""
    kind = type(value)
    if kind is int:
        return value
    if kind is Decimal:
        return value if value.is_finite() else _MISMATCH
    if kind is str:
        if len(value) < 19 and value.isascii() and value.isdigit():
            return int(value)  # the common "3" without the regular expression
        return Decimal(value) if _NUMERIC_STRING.fullmatch(value) else _MISMATCH
    if kind is float:
        return Decimal(repr(value)) if math.isfinite(value) else _MISMATCH
    if isinstance(value, bool):
        return _MISMATCH
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Decimal):
        return value if value.is_finite() else _MISMATCH
    if isinstance(value, str):
        return _as_number(str(value))
    if isinstance(value, float):
        return _as_number(float(value))
    return _MISMATCH


def _as_lower_string(value: object) -> Any:
    return value.lower() if isinstance(value, str) else _MISMATCH


MISMATCH: Final[Any] = _MISMATCH
"""What ``as_number``/``as_lower_string`` return for a value the operator cannot read."""
as_number: Final = _as_number
"""An event value as the number operators read it (exact), or ``MISMATCH``; the index reads
values with it so that it looks them up exactly as the predicates compare them."""
as_lower_string: Final = _as_lower_string
"""An event value as the string operators read it (lower-cased), or ``MISMATCH``."""


def _as_bool(value: object) -> Any:
    return value if isinstance(value, bool) else _MISMATCH


# --- operators ---------------------------------------------------------------------------------


def _build_advanced(
    a: AdvancedFilter, arrays: bool, get: Callable[[Mapping[str, Any]], Any]
) -> EventPredicate:
    """The predicate of one advanced filter, including the missing/mismatch/array rules
    (``get`` reads its key)."""
    operator = a.operator_type

    if operator in ("IsNullOrUndefined", "IsNotNull"):
        want_absent = operator == "IsNullOrUndefined"

        def presence(event: Mapping[str, Any]) -> bool:
            value = get(event)
            return (value is None or value is _MISSING) == want_absent

        return presence

    coerce, test = _value_test(a)
    # What a missing key, a null or a value of the wrong type yields (SPEC §5).
    on_absent = operator in NEGATED_MATCH_WHEN_ABSENT
    strict_negation = operator in NEGATED_STRICT
    positive = not on_absent and not strict_negation

    def other_shapes(value: Any) -> bool:
        """A value the operator cannot read directly: absent, null, an array or another type."""
        if arrays and isinstance(value, list | tuple):
            seen_typed = False
            for element in value:
                typed = coerce(element)
                if typed is _MISMATCH:
                    continue
                if test(typed):
                    return positive
                seen_typed = True
            return seen_typed if strict_negation else on_absent
        return on_absent

    def predicate(event: Mapping[str, Any]) -> bool:
        value = get(event)
        typed = coerce(value)
        if typed is _MISMATCH:
            return other_shapes(value)
        return test(typed) == positive

    return predicate


def _value_test(a: AdvancedFilter) -> tuple[Callable[[object], Any], Callable[[Any], bool]]:
    """How to read an event value for ``a`` and whether it matches any of ``a``'s values.

    For a ``Not`` operator the test is the one of its positive twin; the caller negates it.
    """
    operator = a.operator_type
    if operator in NUMBER_LIST_OPERATORS:
        numbers = frozenset(_numbers(a))
        return _as_number, numbers.__contains__
    if operator in NUMBER_SINGLE_OPERATORS:
        bound = _number(a.value, a)
        comparisons: dict[str, Callable[[Any], bool]] = {
            "NumberLessThan": lambda t: t < bound,
            "NumberGreaterThan": lambda t: t > bound,
            "NumberLessThanOrEquals": lambda t: t <= bound,
            "NumberGreaterThanOrEquals": lambda t: t >= bound,
        }
        return _as_number, comparisons[operator]
    if operator in NUMBER_RANGE_OPERATORS:
        ranges = _ranges(a)
        if len(ranges) == 1:
            ((lo, hi),) = ranges
            return _as_number, lambda t: lo <= t <= hi
        return _as_number, lambda t: any(low <= t <= high for low, high in ranges)
    if operator in BOOL_OPERATORS:
        if not isinstance(a.value, bool):
            raise ValueError(f"{operator} needs a boolean value, got {a.value!r}")
        expected = a.value
        return _as_bool, lambda t: t is expected
    if operator in STRING_OPERATORS:
        needles = tuple(s.lower() for s in _strings(a))
        if operator in ("StringIn", "StringNotIn"):
            return _as_lower_string, frozenset(needles).__contains__
        if operator in ("StringBeginsWith", "StringNotBeginsWith"):
            return _as_lower_string, lambda t: t.startswith(needles)
        if operator in ("StringEndsWith", "StringNotEndsWith"):
            return _as_lower_string, lambda t: t.endswith(needles)
        if len(needles) == 1:
            (needle,) = needles
            return _as_lower_string, lambda t: needle in t
        return _as_lower_string, lambda t: any(n in t for n in needles)
    raise ValueError(f"unknown operatorType {operator!r}")


def _number(value: object, a: AdvancedFilter) -> Number:
    number = _as_number(value) if not isinstance(value, str) else _MISMATCH
    if number is _MISMATCH:
        raise ValueError(f"{a.operator_type} on {a.key!r} needs numbers, got {value!r}")
    result: Number = number
    return result


def _numbers(a: AdvancedFilter) -> list[Number]:
    return [_number(v, a) for v in a.values or ()]


def _ranges(a: AdvancedFilter) -> list[tuple[Number, Number]]:
    pairs: list[tuple[Number, Number]] = []
    for pair in a.values or ():
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValueError(f"{a.operator_type} on {a.key!r} needs [lo, hi] pairs, got {pair!r}")
        pairs.append((_number(pair[0], a), _number(pair[1], a)))
    return pairs


def _strings(a: AdvancedFilter) -> list[str]:
    strings = list(a.values or ())
    for s in strings:
        if not isinstance(s, str):
            raise ValueError(f"{a.operator_type} on {a.key!r} needs strings, got {s!r}")
    return [s for s in strings if isinstance(s, str)]
