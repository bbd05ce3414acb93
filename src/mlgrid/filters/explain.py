"""Why a filter matches an event or not, condition by condition (the filter tester).

An operator writing a filter wants more than a yes or no: which condition refused the event,
and what value it saw. ``explain`` answers with one :class:`Condition` per part of the filter
(the event types, the subject prefix and suffix, each advanced filter) and the overall verdict.

Every answer comes from the engine the router uses: each condition is evaluated by a filter
compiled from that condition alone (``compile_filter``), and the verdict by the whole filter
compiled as routing compiles it, so the tester cannot disagree with delivery. Pure: no IO.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from mlgrid.domain.event_filter import AdvancedFilter, EventFilter, canonical_schema
from mlgrid.domain.schemas import EventSchema
from mlgrid.filters.compile import compile_filter, read_key

#: How much of a value a condition's explanation quotes.
_QUOTE_CHARS: Final = 80


@dataclass(frozen=True)
class Condition:
    """One part of a filter: what it asks (``condition``), whether the event passes it, and
    what the event had (``actual``: the value read, or ``None`` when the key is absent)."""

    condition: str
    matched: bool
    reason: str
    key: str | None = None
    operator: str | None = None
    actual: Any = None

    def as_json(self) -> dict[str, Any]:
        return {
            "condition": self.condition,
            "matched": self.matched,
            "reason": self.reason,
            "key": self.key,
            "operatorType": self.operator,
            "actual": self.actual,
        }


@dataclass(frozen=True)
class Verdict:
    """Whether the filter matches the event, and each condition's part in it."""

    matches: bool
    conditions: tuple[Condition, ...]

    def as_json(self) -> dict[str, Any]:
        return {"matches": self.matches, "conditions": [c.as_json() for c in self.conditions]}


def _quote(value: Any) -> str:
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, bool):
        text = str(value).lower()
    else:
        text = str(value)
    return text if len(text) <= _QUOTE_CHARS else text[: _QUOTE_CHARS - 1] + "…"


def _filter_values(a: AdvancedFilter) -> str:
    if a.values is not None:
        parts = [f"[{_quote(v[0])}, {_quote(v[1])}]" if isinstance(v, tuple | list) else _quote(v)
                 for v in a.values]
        return "[" + ", ".join(parts) + "]"
    if a.value is not None:
        return _quote(a.value)
    return ""


def _event_types(f: EventFilter, event: Mapping[str, Any], type_field: str) -> Condition:
    actual = event.get(type_field)
    if f.matches_all_event_types:
        return Condition("event type: any", True, "the filter accepts every event type",
                         type_field, None, actual)
    wanted = ", ".join(f.included_event_types or ())
    alone = EventFilter(included_event_types=f.included_event_types)
    matched = compile_filter(alone, _schema(type_field))(event)
    verb = "is" if matched else "is not"
    return Condition(
        f"event type in [{wanted}]", matched,
        f"{type_field} {_quote(actual) if actual is not None else '(missing)'} {verb} one of them "
        "(case-insensitive)",
        type_field, None, actual,
    )


def _schema(type_field: str) -> str:
    return EventSchema.CLOUD_EVENTS if type_field == "type" else EventSchema.EVENT_GRID


def _subject(f: EventFilter, event: Mapping[str, Any], type_field: str) -> list[Condition]:
    subject = event.get("subject")
    shown = _quote(subject) if isinstance(subject, str) else "(missing, read as '')"
    case = "case-sensitive" if f.is_subject_case_sensitive else "case-insensitive"
    found = []
    sensitive = f.is_subject_case_sensitive
    for label, value, alone in (
        ("begins with", f.subject_begins_with,
         EventFilter(subject_begins_with=f.subject_begins_with, is_subject_case_sensitive=sensitive)),
        ("ends with", f.subject_ends_with,
         EventFilter(subject_ends_with=f.subject_ends_with, is_subject_case_sensitive=sensitive)),
    ):
        if not value:
            continue
        matched = compile_filter(alone, _schema(type_field))(event)
        verb = label if matched else f"does not {label.replace('begins', 'begin').replace('ends', 'end')}"
        found.append(Condition(
            f"subject {label} {_quote(value)}", matched, f"subject {shown} {verb} {_quote(value)} ({case})",
            "subject", None, subject,
        ))
    return found


def _advanced(f: EventFilter, a: AdvancedFilter, event: Mapping[str, Any], schema: str) -> Condition:
    alone = EventFilter(advanced_filters=(a,),
                        enable_advanced_filtering_on_arrays=f.enable_advanced_filtering_on_arrays)
    matched = compile_filter(alone, schema)(event)
    present, actual = read_key(event, a.key)
    values = _filter_values(a)
    condition = f"{a.key} {a.operator_type}" + (f" {values}" if values else "")
    seen = f"{a.key} is {_quote(actual)}" if present else f"{a.key} is missing (or null)"
    if present and isinstance(actual, list) and not f.enable_advanced_filtering_on_arrays:
        seen += "; an array, and filtering on arrays is off (a type mismatch)"
    elif present and isinstance(actual, Mapping):
        seen += "; an object (a type mismatch)"
    return Condition(
        condition, matched, f"{seen}: {'passes' if matched else 'fails'}",
        a.key, a.operator_type, _jsonable(actual) if present else None,
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def explain(f: EventFilter, event: Mapping[str, Any], input_schema: str) -> Verdict:
    """The verdict of filter ``f`` on ``event`` (a dict in ``input_schema``), with the reason
    of each condition. ``matches`` is exactly what routing decides for this event."""
    schema = canonical_schema(input_schema)
    type_field = "type" if schema == EventSchema.CLOUD_EVENTS else "eventType"
    conditions = [_event_types(f, event, type_field), *_subject(f, event, type_field)]
    conditions += [_advanced(f, a, event, schema) for a in f.advanced_filters]
    return Verdict(compile_filter(f, input_schema)(event), tuple(conditions))
