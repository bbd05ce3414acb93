"""Turn a publish request into validated events, or refuse all of it (SPEC §3).

:func:`parse_publish_body` is the whole contract between the HTTP layer and the broker: it
receives the raw body, the ``Content-Type`` and the headers, and returns the events in the
form they are stored in - Event Grid dicts for ``EventGridSchema`` and ``CustomEventSchema``
topics, CloudEvents dicts for ``CloudEventSchemaV1_0`` topics - or raises one error that
lists every problem found (up to :data:`MAX_ERROR_DETAILS`, collected by
``publish_problems.py``), each naming the event index and the field
(``[3].eventType: required string is missing``). Nothing is accepted unless everything is.

Event Grid schema decisions (Azure's documented schema and the ``azure-eventgrid`` SDK):

* required: ``id`` (non-empty string), ``subject`` (string, may be empty), ``eventType``
  (non-empty string), ``eventTime`` (ISO 8601 string);
* optional: ``topic`` (must equal the topic's id, letter case ignored; stamped when absent),
  ``data`` (any JSON; absent means ``null`` - the SDK leaves ``data`` out when it is ``None``),
  ``dataVersion`` (string, ``""`` when absent), ``metadataVersion`` (must be ``"1"``);
  ``null`` for an optional field means absent;
* any other top-level field is refused (case matters: ``EventType`` is not ``eventType``).

Size limits. The request may be at most :data:`MAX_REQUEST_BYTES`. Every event of a structured
request is a slice of that body, so no event can exceed :data:`MAX_EVENT_BYTES` once the request
passed: the per-event limit is enforced by the request check and no event is re-serialised to
measure it. (An event's size is what the publisher sent; the stored form may grow by the
stamped ``topic``/``metadataVersion``, and a binary-mode body grows by a third as
``data_base64``.) More than :data:`MAX_EVENTS_PER_REQUEST` events is also a 413: like the byte
limits it bounds the size of one request.

Content types are compared case-insensitively with parameters ignored:

* ``EventGridSchema``/``CustomEventSchema``: ``application/json``, ``text/json``, any other
  ``+json`` type, or none. The CloudEvents types are a 400 (wrong schema for this topic),
  anything else a 415.
* ``CloudEventSchemaV1_0``: ``application/cloudevents+json`` (one object),
  ``application/cloudevents-batch+json`` (an array; the SDK sends this with
  ``; charset=utf-8`` from both its classic and namespace clients), ``application/json`` (an
  array, or one object), or binary mode: a ``ce-specversion`` header with any other content
  type, the body being the data (parsed into ``data`` when the content type is JSON, kept as
  ``data_base64`` otherwise). Any other content type without ``ce-*`` headers is a 415.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from mlgrid.domain.error_codes import ErrorCode
from mlgrid.domain.schemas import EventSchema
from mlgrid.errors import (
    BadRequest,
    ErrorDetail,
    InvalidField,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from mlgrid.events.jsoncodec import loads_exact
from mlgrid.events.publish_problems import (
    MAX_ERROR_DETAILS,
    Problems,
    json_type,
    length_problem,
    show,
    string_problem,
)
from mlgrid.events.schemas import FieldMapping, InputSchemaMapping, parse_schema_name
from mlgrid.events.timestamps import format_timestamp, normalise_timestamp

__all__ = [
    "MAX_ERROR_DETAILS",
    "MAX_EVENTS_PER_REQUEST",
    "MAX_EVENT_BYTES",
    "MAX_REQUEST_BYTES",
    "media_type",
    "parse_publish_body",
    "request_too_large",
]

MAX_REQUEST_BYTES = 1_048_576
MAX_EVENT_BYTES = 1_048_576
MAX_EVENTS_PER_REQUEST = 5_000

CLOUDEVENTS_JSON = "application/cloudevents+json"
CLOUDEVENTS_BATCH_JSON = "application/cloudevents-batch+json"
_JSON_MEDIA_TYPES = frozenset({"application/json", "text/json"})

_EVENT_GRID_FIELDS = frozenset(
    {"id", "topic", "subject", "eventType", "eventTime", "data", "dataVersion", "metadataVersion"}
)
_EVENT_GRID_BY_LOWER = {name.lower(): name for name in _EVENT_GRID_FIELDS}

_CE_REQUIRED = ("id", "source", "type")
_CE_OPTIONAL_STRINGS = ("subject", "datacontenttype", "dataschema")
_CE_KNOWN = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"}
    | {"data", "data_base64"}
)
_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}\Z")

_MISSING: Any = object()


def request_too_large(measured: str) -> PayloadTooLarge:
    """The 413 for a body over the limit: Azure's sentence first (clients match it, with the
    limit in force here: SPEC §3 keeps mlgrid's request limit at 1 MB where Azure's is
    1,536,000 bytes), then what was measured; ``details`` repeats the precise part."""
    detail = (
        f"{measured}; a request and each event in it may be at most {MAX_REQUEST_BYTES:,} bytes (1 MB)"
    )
    message = f"The maximum size ({MAX_REQUEST_BYTES}) has been exceeded. {detail}"
    return PayloadTooLarge(
        message=message, details=[ErrorDetail(ErrorCode.PAYLOAD_TOO_LARGE, detail, "body")]
    )


def media_type(content_type: str | None) -> str | None:
    """``"Application/JSON; charset=utf-8"`` -> ``"application/json"``; ``None`` when absent."""
    if content_type is None:
        return None
    value = content_type.split(";", 1)[0].strip().lower()
    return value or None


def _is_json_media_type(value: str | None) -> bool:
    return value is None or value in _JSON_MEDIA_TYPES or value.endswith("+json")


def parse_publish_body(
    body: bytes,
    content_type: str | None,
    headers: Mapping[str, str],
    *,
    input_schema: str,
    mapping: InputSchemaMapping | None,
    topic_id: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """Validate a publish request and return its events normalised for storage.

    ``topic_id`` is the topic's Azure-style resource id (stamped into ``topic`` and checked
    against a published one); ``now`` is the publish time (the event time of custom-schema
    events whose mapping has no ``eventTime``). ``mapping`` is only read for
    ``CustomEventSchema``. All-or-nothing: raises ``InvalidField``/``BadRequest`` (400),
    ``PayloadTooLarge`` (413) or ``UnsupportedMediaType`` (415) and returns nothing then.
    """
    if len(body) > MAX_REQUEST_BYTES:
        raise request_too_large(f"the request body is {len(body):,} bytes")
    kind = media_type(content_type)
    input_schema = parse_schema_name(input_schema, "inputSchema")
    if input_schema == EventSchema.CLOUD_EVENTS:
        return _parse_cloudevents_request(body, content_type, kind, headers)
    if kind in (CLOUDEVENTS_JSON, CLOUDEVENTS_BATCH_JSON):
        message = (
            f"this topic's input schema is {input_schema}; CloudEvents ({kind}) can only be "
            f"published to a topic whose input schema is {EventSchema.CLOUD_EVENTS}"
        )
        raise BadRequest(
            message=message,
            code=ErrorCode.INPUT_SCHEMA_MISMATCH,
            details=[ErrorDetail(ErrorCode.INPUT_SCHEMA_MISMATCH, message, "Content-Type")],
        )
    if not _is_json_media_type(kind):
        raise _unsupported_media_type(content_type, "application/json")
    document = _load_body(body)
    if input_schema == EventSchema.EVENT_GRID:
        if not isinstance(document, list):
            raise _wrong_body_shape(document, "the Event Grid schema requires a JSON array of events")
        _check_count(len(document))
        return _parse_eventgrid_events(document, topic_id)
    items = document if isinstance(document, list) else [document]
    _check_count(len(items))
    return _parse_custom_events(items, mapping or InputSchemaMapping(), topic_id, now)


def _load_body(body: bytes) -> Any:
    if not body.strip():
        message = "the request body is empty; expected JSON"
        raise BadRequest(
            message=message,
            code=ErrorCode.INVALID_JSON,
            details=[ErrorDetail(ErrorCode.INVALID_JSON, message, "body")],
        )
    return loads_exact(body)


def _wrong_body_shape(document: Any, what: str) -> InvalidField:
    message = f"body: {what}, got {json_type(document)}"
    return InvalidField(message=message, field_name="body")


def _check_count(count: int) -> None:
    if count > MAX_EVENTS_PER_REQUEST:
        message = (
            f"the request holds {count:,} events; at most {MAX_EVENTS_PER_REQUEST:,} are accepted at once"
        )
        raise PayloadTooLarge(
            message=message, details=[ErrorDetail(ErrorCode.TOO_MANY_EVENTS, message, "body")]
        )


def _unsupported_media_type(content_type: str | None, accepted: str) -> UnsupportedMediaType:
    message = f"Content-Type {content_type!r} is not accepted here; use {accepted}"
    return UnsupportedMediaType(
        message=message, details=[ErrorDetail(ErrorCode.UNSUPPORTED_MEDIA_TYPE, message, "Content-Type")]
    )


def _non_object(problems: Problems, index: int, item: Any) -> None:
    problems.add(
        f"[{index}]", ErrorCode.INVALID_EVENT, f"each event must be a JSON object, got {json_type(item)}"
    )


# --- Event Grid schema -------------------------------------------------------------------


def _parse_eventgrid_events(items: list[Any], topic_id: str) -> list[dict[str, Any]]:
    problems = Problems()
    events: list[dict[str, Any]] = []
    topic_lower = topic_id.lower()
    for index, item in enumerate(items):
        if problems.full:
            break
        if type(item) is not dict:
            _non_object(problems, index, item)
            continue
        event = _eventgrid_event(index, item, topic_id, topic_lower, problems)
        if event is not None:
            events.append(event)
    problems.raise_if_any()
    return events


def _eventgrid_event(
    index: int, raw: dict[str, Any], topic_id: str, topic_lower: str, problems: Problems
) -> dict[str, Any] | None:
    found = len(problems.details)
    if not raw.keys() <= _EVENT_GRID_FIELDS:
        for key in raw:
            if key not in _EVENT_GRID_FIELDS:
                hint = _EVENT_GRID_BY_LOWER.get(key.lower())
                reason = "unknown field in the Event Grid schema"
                if hint is not None:
                    reason += f" (did you mean {hint}?)"
                problems.add(f"[{index}].{key}", ErrorCode.UNKNOWN_FIELD, reason)

    event_id = raw.get("id")
    if type(event_id) is not str or not event_id:
        string_problem(problems, f"[{index}].id", raw, "id", empty_ok=False)
    length_problem(problems, f"[{index}].id", event_id)
    subject = raw.get("subject")
    if type(subject) is not str:
        string_problem(problems, f"[{index}].subject", raw, "subject", empty_ok=True)
    event_type = raw.get("eventType")
    if type(event_type) is not str or not event_type:
        string_problem(problems, f"[{index}].eventType", raw, "eventType", empty_ok=False)
    length_problem(problems, f"[{index}].eventType", event_type)
    event_time = raw.get("eventTime")
    if type(event_time) is str:
        event_time = normalise_timestamp(event_time)
        if event_time is None:
            problems.invalid_value(
                f"[{index}].eventTime",
                "must be an ISO 8601 date-time such as 2024-05-01T12:00:00Z",
            )
    else:
        string_problem(problems, f"[{index}].eventTime", raw, "eventTime", empty_ok=False)

    topic = raw.get("topic")
    if topic is not None and (type(topic) is not str or topic.lower() != topic_lower):
        if type(topic) is not str:
            problems.invalid_type(f"[{index}].topic", f"must be a string, got {json_type(topic)}")
        else:
            problems.invalid_value(
                f"[{index}].topic",
                f"must be this topic's id {show(topic_id)} or be left out, got {show(topic)}",
            )
    data_version = raw.get("dataVersion")
    if data_version is None:
        data_version = ""
    elif type(data_version) is not str:
        problems.invalid_type(
            f"[{index}].dataVersion",
            f"must be a string, got {json_type(data_version)}",
        )
    metadata_version = raw.get("metadataVersion")
    if metadata_version is not None and metadata_version != "1":
        problems.invalid_value(
            f"[{index}].metadataVersion",
            f'must be "1" or be left out, got {show(metadata_version)}',
        )

    if len(problems.details) != found:
        return None
    return {
        "id": event_id,
        "topic": topic_id,
        "subject": subject,
        "eventType": event_type,
        "eventTime": event_time,
        "data": raw.get("data"),
        "dataVersion": data_version,
        "metadataVersion": "1",
    }


# --- Custom input schema -----------------------------------------------------------------


def _lookup(raw: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = raw
    for segment in path:
        if type(value) is not dict or segment not in value:
            return _MISSING
        value = value[segment]
    return value


def _mapped_string(
    index: int,
    raw: dict[str, Any],
    name: str,
    field_mapping: FieldMapping,
    problems: Problems,
    *,
    required: bool,
    empty_ok: bool = True,
) -> str | None:
    """The value of one mapped field; records a problem and returns ``None`` when unusable.

    Returns ``None`` without a problem when the field is neither found nor defaulted and not
    required, so that the caller can stamp its own fallback.
    """
    value = _lookup(raw, field_mapping.path) if field_mapping.path else _MISSING
    if value is _MISSING or value is None:
        if field_mapping.default_value is not None:
            return field_mapping.default_value
        if required and field_mapping.source_field is not None:
            problems.missing(
                f"[{index}].{field_mapping.source_field}",
                f"required string is missing (the topic maps it to {name}, with no defaultValue)",
            )
        elif required:
            problems.missing(
                f"[{index}].{name}",
                f"no value: the topic's inputSchemaMapping gives {name} "
                "neither a sourceField nor a defaultValue",
            )
        return None
    target = f"[{index}].{field_mapping.source_field}"
    if type(value) is not str:
        problems.invalid_type(
            target,
            f"must be a string (mapped to {name}), got {json_type(value)}",
        )
        return None
    if not empty_ok and not value:
        problems.invalid_value(target, f"must not be empty (mapped to {name})")
        return None
    return value


def _parse_custom_events(
    items: list[Any], mapping: InputSchemaMapping, topic_id: str, now: datetime
) -> list[dict[str, Any]]:
    problems = Problems()
    events: list[dict[str, Any]] = []
    topic_lower = topic_id.lower()
    now_text = format_timestamp(now)
    for index, item in enumerate(items):
        if problems.full:
            break
        if type(item) is not dict:
            _non_object(problems, index, item)
            continue
        event = _custom_event(index, item, mapping, topic_id, topic_lower, now_text, problems)
        if event is not None:
            events.append(event)
    problems.raise_if_any()
    return events


def _custom_event(
    index: int,
    raw: dict[str, Any],
    mapping: InputSchemaMapping,
    topic_id: str,
    topic_lower: str,
    now_text: str,
    problems: Problems,
) -> dict[str, Any] | None:
    """Map one custom event to the Event Grid schema; the whole object becomes ``data``.

    Unmapped ``id`` gets a fresh UUID and unmapped ``eventTime`` the publish time (Azure does
    the same); a mapped field the event lacks is a 400 unless the mapping has a default.
    """
    found = len(problems.details)
    # In the mapping's (Azure's) field order, so problems are listed in a predictable order.
    id_mapped = mapping.id.source_field is not None
    event_id = _mapped_string(index, raw, "id", mapping.id, problems, required=id_mapped, empty_ok=False)
    if event_id is None and not id_mapped:
        event_id = str(uuid.uuid4())

    if mapping.topic.source_field is not None:
        topic = _mapped_string(index, raw, "topic", mapping.topic, problems, required=False)
        if topic is not None and topic.lower() != topic_lower:
            problems.invalid_value(
                f"[{index}].{mapping.topic.source_field}",
                f"must be this topic's id {show(topic_id)} or be left out (mapped to topic), "
                f"got {show(topic)}",
            )

    event_time: str | None = now_text
    if mapping.event_time.source_field is not None:
        event_time = _mapped_string(
            index, raw, "eventTime", mapping.event_time, problems, required=True, empty_ok=False
        )
        if event_time is not None:
            event_time = normalise_timestamp(event_time)
            if event_time is None:
                problems.invalid_value(
                    f"[{index}].{mapping.event_time.source_field}",
                    "must be an ISO 8601 date-time such as 2024-05-01T12:00:00Z (mapped to eventTime)",
                )

    event_type = _mapped_string(
        index, raw, "eventType", mapping.event_type, problems, required=True, empty_ok=False
    )
    length_problem(problems, f"[{index}].{mapping.id.source_field or 'id'}", event_id)
    length_problem(problems, f"[{index}].{mapping.event_type.source_field or 'eventType'}", event_type)
    subject = _mapped_string(
        index, raw, "subject", mapping.subject, problems, required=mapping.subject.source_field is not None
    )
    data_version = _mapped_string(index, raw, "dataVersion", mapping.data_version, problems, required=False)

    if len(problems.details) != found:
        return None
    return {
        "id": event_id,
        "topic": topic_id,
        "subject": subject if subject is not None else "",
        "eventType": event_type,
        "eventTime": event_time,
        "data": raw,
        "dataVersion": data_version if data_version is not None else "",
        "metadataVersion": "1",
    }


# --- CloudEvents 1.0 ---------------------------------------------------------------------


def _parse_cloudevents_request(
    body: bytes, content_type: str | None, kind: str | None, headers: Mapping[str, str]
) -> list[dict[str, Any]]:
    if kind == CLOUDEVENTS_JSON:
        document = _load_body(body)
        if not isinstance(document, dict):
            raise _wrong_body_shape(
                document,
                f"{CLOUDEVENTS_JSON} carries one CloudEvent object (send arrays as {CLOUDEVENTS_BATCH_JSON})",
            )
        return _parse_cloud_events([document])
    if kind == CLOUDEVENTS_BATCH_JSON:
        document = _load_body(body)
        if not isinstance(document, list):
            raise _wrong_body_shape(document, f"{CLOUDEVENTS_BATCH_JSON} carries a JSON array of CloudEvents")
        _check_count(len(document))
        return _parse_cloud_events(document)
    binary_headers = {name.lower(): value for name, value in headers.items() if name[:3].lower() == "ce-"}
    if "ce-specversion" in binary_headers:
        return [_binary_cloud_event(body, content_type, kind, binary_headers)]
    if not _is_json_media_type(kind):
        raise _unsupported_media_type(
            content_type,
            f"{CLOUDEVENTS_JSON}, {CLOUDEVENTS_BATCH_JSON}, application/json, "
            "or binary mode (ce-specversion, ce-id, ce-source and ce-type headers)",
        )
    document = _load_body(body)
    if isinstance(document, list):
        _check_count(len(document))
        return _parse_cloud_events(document)
    if isinstance(document, dict):
        return _parse_cloud_events([document])
    raise _wrong_body_shape(document, "expected a CloudEvent object or a JSON array of CloudEvents")


def _parse_cloud_events(items: list[Any]) -> list[dict[str, Any]]:
    problems = Problems()
    events: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if problems.full:
            break
        if type(item) is not dict:
            _non_object(problems, index, item)
            continue
        event = _cloud_event(item, f"[{index}].", problems)
        if event is not None:
            events.append(event)
    problems.raise_if_any()
    return events


def _cloud_event(raw: dict[str, Any], prefix: str, problems: Problems) -> dict[str, Any] | None:
    """Validate one CloudEvent; ``prefix`` is ``"[i]."`` (structured) or ``"ce-"`` (binary).

    ``null`` attributes count as absent, as the CloudEvents JSON format allows; the output has
    the context attributes first, then extensions, then ``data``/``data_base64``.
    """
    found = len(problems.details)
    specversion = raw.get("specversion")
    if specversion != "1.0":
        if specversion is None:
            problems.missing(f"{prefix}specversion", 'required, must be "1.0"')
        else:
            problems.invalid_value(
                f"{prefix}specversion",
                f'must be "1.0", got {show(specversion)}',
            )
    event: dict[str, Any] = {"specversion": "1.0"}
    for name in _CE_REQUIRED:
        value = raw.get(name)
        if type(value) is not str or not value:
            string_problem(problems, f"{prefix}{name}", raw, name, empty_ok=False)
        elif name != "source":
            length_problem(problems, f"{prefix}{name}", value)
        event[name] = value
    for name in _CE_OPTIONAL_STRINGS:
        value = raw.get(name)
        if value is None:
            continue
        if type(value) is not str or not value:
            string_problem(problems, f"{prefix}{name}", raw, name, empty_ok=False)
        event[name] = value
    time = raw.get("time")
    if time is not None:
        normalised = normalise_timestamp(time) if type(time) is str else None
        if normalised is None:
            problems.invalid_value(
                f"{prefix}time",
                "must be an RFC 3339 date-time such as 2024-05-01T12:00:00Z",
            )
        event["time"] = normalised

    if not raw.keys() <= _CE_KNOWN:
        for key, value in raw.items():
            if key in _CE_KNOWN or value is None:
                continue
            if not _EXTENSION_NAME.match(key):
                problems.add(
                    f"{prefix}{key}",
                    ErrorCode.INVALID_FIELD_NAME,
                    "extension attribute names must be 1-20 lowercase letters a-z or digits 0-9",
                )
            elif type(value) is not str and type(value) is not int and type(value) is not bool:
                problems.invalid_type(
                    f"{prefix}{key}",
                    "extension attributes must be a string, an integer or a boolean, "
                    f"got {json_type(value)}",
                )
            event[key] = value

    data = raw.get("data")
    data_base64 = raw.get("data_base64")
    if data_base64 is not None:
        if data is not None:
            problems.invalid_value(
                f"{prefix}data_base64",
                "data and data_base64 are mutually exclusive",
            )
        elif type(data_base64) is not str:
            problems.invalid_type(
                f"{prefix}data_base64",
                f"must be a base64 string, got {json_type(data_base64)}",
            )
        else:
            try:
                base64.b64decode(data_base64, validate=True)
            except (binascii.Error, ValueError):
                problems.invalid_value(f"{prefix}data_base64", "is not valid base64")
        event["data_base64"] = data_base64
    elif data is not None:
        event["data"] = data

    if len(problems.details) != found:
        return None
    return event


def _binary_cloud_event(
    body: bytes, content_type: str | None, kind: str | None, ce_headers: dict[str, str]
) -> dict[str, Any]:
    """Binary content mode: attributes in ``ce-*`` headers, the body is the data.

    Header values are percent-decoded (the CloudEvents HTTP binding percent-encodes them). A
    JSON content type puts the parsed body in ``data``; any other keeps the bytes exactly as
    ``data_base64``. The request's ``Content-Type`` is the event's ``datacontenttype``.
    """
    problems = Problems()
    raw: dict[str, Any] = {}
    for name, value in ce_headers.items():
        attribute = name[3:]
        if attribute in ("data", "data_base64"):
            problems.add(
                name,
                ErrorCode.INVALID_FIELD_NAME,
                "the data travels in the body in binary mode, not in a header",
            )
            continue
        raw[attribute] = unquote(value)
    if content_type is not None and content_type.strip():
        raw["datacontenttype"] = content_type.strip()
    if body:
        if kind is not None and _is_json_media_type(kind):
            if body.strip():
                raw["data"] = loads_exact(body)
        else:
            raw["data_base64"] = base64.b64encode(body).decode("ascii")
    event = _cloud_event(raw, "ce-", problems)
    problems.raise_if_any()
    assert event is not None
    return event
