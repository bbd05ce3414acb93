"""Event timestamps: accept what publishers send, store RFC 3339.

Publishers already holding a valid RFC 3339 timestamp (``2017-06-26T18:41:00.9584103Z``, any
number of fraction digits, ``Z`` or an offset) get it back byte for byte, so an event read back
from mlgrid is the event that was sent. Anything else Python's ISO 8601 parser understands - a
space instead of ``T``, no offset (taken as UTC, which is what Event Grid's "the provider's UTC
time" means), the basic format - is rewritten as a UTC ``...Z`` string so consumers only ever
see one shape.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["format_timestamp", "normalise_timestamp", "parse_timestamp"]

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})\Z")


def parse_timestamp(value: str) -> datetime | None:
    """An aware datetime for an ISO 8601 string (naive means UTC), ``None`` when unparseable."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``; microseconds only when there are any; naive means UTC."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    # Formatted by hand: strftime does not zero-pad years before 1000 on every platform.
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def normalise_timestamp(value: str) -> str | None:
    """The string to store for a published timestamp, or ``None`` when it is not one.

    A valid RFC 3339 string is returned unchanged (the same object); other ISO 8601 forms are
    rewritten by :func:`format_timestamp`.
    """
    if _RFC3339.match(value):
        return value if parse_timestamp(value) is not None else None
    parsed = parse_timestamp(value)
    return None if parsed is None else format_timestamp(parsed)
