"""Problems of a publish request, collected so that one 400 reports them all.

The parsers of ``events/publish.py`` check every event of a request and record each problem
here (naming the event index and the field: ``[3].eventType: required string is missing``)
instead of raising at the first; ``Problems.raise_if_any`` turns them into one
``InvalidField`` with up to :data:`MAX_ERROR_DETAILS` details. The checks shared by every
input schema (a required string, the length of an indexed column) live here too.
"""

from __future__ import annotations

from typing import Any

from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import ErrorDetail, InvalidField
from mlgrid.events.jsoncodec import dumps

__all__ = [
    "MAX_ERROR_DETAILS",
    "MAX_ID_CHARACTERS",
    "Problems",
    "json_type",
    "length_problem",
    "show",
    "string_problem",
]

MAX_ERROR_DETAILS = 50
MAX_ID_CHARACTERS = 256
"""Longest event ``id`` and event type (``eventType``, CloudEvents ``type``) accepted: both are
stored in indexed columns of this size, and a longer one must be a 400 naming the field, not a
database error."""


class Problems:
    """Collects every problem of a request so one 400 can report them all."""

    __slots__ = ("details",)

    def __init__(self) -> None:
        self.details: list[ErrorDetail] = []

    def __len__(self) -> int:
        return len(self.details)

    @property
    def full(self) -> bool:
        return len(self.details) >= MAX_ERROR_DETAILS

    def add(self, target: str, code: str, reason: str) -> None:
        if not self.full:
            self.details.append(ErrorDetail(code, f"{target}: {reason}", target))

    def missing(self, target: str, reason: str) -> None:
        self.add(target, ErrorCode.MISSING_FIELD, reason)

    def invalid_value(self, target: str, reason: str) -> None:
        self.add(target, ErrorCode.INVALID_FIELD_VALUE, reason)

    def invalid_type(self, target: str, reason: str) -> None:
        self.add(target, ErrorCode.INVALID_FIELD_TYPE, reason)

    def raise_if_any(self) -> None:
        if not self.details:
            return
        first = self.details[0]
        message = first.message
        if len(self.details) > 1:
            more = len(self.details) - 1
            shown = "" if not self.full else f"; at most {MAX_ERROR_DETAILS} are listed"
            message += f" (and {more} more problem{'s' if more > 1 else ''}{shown})"
        raise InvalidField(message=message, field_name=first.target or "", details=self.details)


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "number"


def show(value: Any) -> str:
    """A JSON rendering of a rejected value for an error message, cut to a readable length."""
    text = dumps(value).decode("utf-8", "replace")
    return text if len(text) <= 300 else text[:297] + "..."


def string_problem(problems: Problems, target: str, raw: dict[str, Any], key: str, empty_ok: bool) -> None:
    """Record why ``raw[key]`` is not an acceptable string (called only when it is not)."""
    if key not in raw:
        problems.missing(target, "required string is missing")
        return
    value = raw[key]
    if isinstance(value, str):
        if not empty_ok and value == "":
            problems.invalid_value(target, "must not be empty")
        return
    problems.invalid_type(target, f"must be a string, got {json_type(value)}")


def length_problem(
    problems: Problems, target: str, value: Any, limit: int | None = MAX_ID_CHARACTERS
) -> None:
    """``id`` and the event type are stored in indexed columns of :data:`MAX_ID_CHARACTERS`."""
    if type(value) is str and limit is not None and len(value) > limit:
        problems.invalid_value(target, f"must be at most {limit} characters, got {len(value):,}")
