"""The dead-letter record and where its blob goes (SPEC §6.5), shaped as Azure writes them.

A record is the event as the subscription would have received it (its delivery schema) plus
why and how delivery ended. Consumers written for Azure's dead-letter blobs read these
unchanged: the same field names (lower-case for CloudEvents, where attribute names must be
lower-case alphanumerics), the same ``<container>/<SUBSCRIPTION>/<Y>/<M>/<D>/<H>/<uuid>.json``
layout with no zero padding.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlgrid.domain.schemas import EventSchema

__all__ = ["blob_path", "build_record", "format_time"]

_FIELDS = (
    "deadLetterReason",
    "deliveryAttempts",
    "lastDeliveryOutcome",
    "lastHttpStatusCode",
    "publishTime",
    "lastDeliveryAttemptTime",
)


def _to_utc(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def format_time(value: datetime) -> str:
    """UTC ISO 8601 with microseconds and ``Z``, as Azure stamps ``publishTime``."""
    return _to_utc("time", value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_record(
    event: dict[str, Any],
    delivery_schema: str,
    reason: str,
    delivery_attempts: int,
    last_outcome: str,
    last_http_status: int | None,
    publish_time: datetime,
    last_attempt_time: datetime | None,
) -> dict[str, Any]:
    """The dead-letter record for one event (a new dict; ``event`` is not modified).

    ``event`` must already be in ``delivery_schema``. ``last_http_status`` and
    ``last_attempt_time`` are ``null`` when there was no HTTP response (a timeout, a socket
    error) or no attempt at all (the subscription was deleted first); the keys are always
    present so readers need not guess.
    """
    values: tuple[Any, ...] = (
        str(reason),
        int(delivery_attempts),
        str(last_outcome),
        last_http_status,
        format_time(publish_time),
        None if last_attempt_time is None else format_time(last_attempt_time),
    )
    cloud_events = delivery_schema.lower() == EventSchema.CLOUD_EVENTS.lower()
    record = dict(event)
    for name, value in zip(_FIELDS, values, strict=True):
        record[name.lower() if cloud_events else name] = value
    return record


def blob_path(container: str, subscription_name: str, when: datetime, blob_id: str) -> str:
    """``<container>/<SUBSCRIPTION-NAME-UPPER>/<YYYY>/<M>/<D>/<H>/<blob_id>.json`` in UTC.

    Month, day and hour are not zero-padded (Azure's layout, e.g. ``.../2024/3/7/9/...``).
    """
    moment = _to_utc("when", when)
    return (
        f"{container}/{subscription_name.upper()}/"
        f"{moment.year}/{moment.month}/{moment.day}/{moment.hour}/{blob_id}.json"
    )
