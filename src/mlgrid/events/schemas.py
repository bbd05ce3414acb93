"""Schema names and the custom input schema mapping of a topic.

A topic declares the shape publishers send (``inputSchema``); a ``CustomEventSchema`` topic
also carries Azure's ``inputSchemaMapping``, which says where in each published JSON object
the Event Grid fields are found and which defaults fill the gaps. The mapping is parsed and
checked once, when the topic is created or changed, so that publishing only has to apply it.

Azure's shape::

    {"mappingType": "Json",
     "properties": {"id": {"sourceField": "myId"},
                    "topic": {"sourceField": "myTopic"},
                    "eventTime": {"sourceField": "when"},
                    "eventType": {"sourceField": "kind", "defaultValue": "Contoso.Item"},
                    "subject": {"sourceField": "meta.path", "defaultValue": "items"},
                    "dataVersion": {"defaultValue": "1.0"}}}

``sourceField`` may step into nested objects with ``.``. Only ``eventType``, ``subject`` and
``dataVersion`` take a ``defaultValue`` (as in Azure). Every event needs an event type, so a
mapping that gives ``eventType`` neither a source field nor a default is refused here rather
than making every later publish fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlgrid.domain.schemas import INPUT_SCHEMAS, EventSchema
from mlgrid.errors import invalid

__all__ = [
    "FieldMapping",
    "InputSchemaMapping",
    "mapping_to_json",
    "parse_input_schema_mapping",
    "parse_schema_name",
]

# Azure calls the "deliver as published" schema ``CustomInputSchema`` on subscriptions.
_SCHEMA_NAMES = {
    EventSchema.EVENT_GRID.lower(): EventSchema.EVENT_GRID,
    EventSchema.CLOUD_EVENTS.lower(): EventSchema.CLOUD_EVENTS,
    EventSchema.CUSTOM_EVENT.lower(): EventSchema.CUSTOM_EVENT,
    EventSchema.CUSTOM_INPUT.lower(): EventSchema.CUSTOM_EVENT,
}

_MAPPED_FIELDS = ("id", "topic", "eventTime", "eventType", "subject", "dataVersion")
_DEFAULTABLE = frozenset({"eventType", "subject", "dataVersion"})


def parse_schema_name(raw: object, field_name: str) -> str:
    """The canonical spelling of a schema name given in any letter case, else a 400."""
    if isinstance(raw, str):
        canonical = _SCHEMA_NAMES.get(raw.lower())
        if canonical is not None:
            return canonical
    raise invalid(field_name, f"must be one of {', '.join(INPUT_SCHEMAS)}; got {raw!r}")


@dataclass(frozen=True, slots=True)
class FieldMapping:
    """Where one Event Grid field comes from: a source path, a default, both or neither."""

    source_field: str | None = None
    default_value: str | None = None
    path: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Split once here; publishing walks the tuple for every event.
        path = tuple(self.source_field.split(".")) if self.source_field else ()
        object.__setattr__(self, "path", path)


@dataclass(frozen=True, slots=True)
class InputSchemaMapping:
    """A parsed ``inputSchemaMapping`` (``mappingType`` is always ``Json``)."""

    id: FieldMapping = FieldMapping()
    topic: FieldMapping = FieldMapping()
    event_time: FieldMapping = FieldMapping()
    event_type: FieldMapping = FieldMapping()
    subject: FieldMapping = FieldMapping()
    data_version: FieldMapping = FieldMapping()

    def fields(self) -> tuple[tuple[str, FieldMapping], ...]:
        """``(Event Grid field name, mapping)`` pairs in Azure's order."""
        return (
            ("id", self.id),
            ("topic", self.topic),
            ("eventTime", self.event_time),
            ("eventType", self.event_type),
            ("subject", self.subject),
            ("dataVersion", self.data_version),
        )


def _optional_string(raw: dict[str, Any], key: str, field_name: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(field_name, f"must be a string; got {type(value).__name__}")
    return value


def _parse_field(name: str, raw: object, prefix: str) -> FieldMapping:
    where = f"{prefix}.properties.{name}"
    if raw is None:
        return FieldMapping()
    if not isinstance(raw, dict):
        raise invalid(where, "must be an object with sourceField and/or defaultValue")
    for key in raw:
        if key not in ("sourceField", "defaultValue"):
            raise invalid(f"{where}.{key}", "unknown property; expected sourceField or defaultValue")
    source = _optional_string(raw, "sourceField", f"{where}.sourceField")
    if source is not None and (source == "" or "" in source.split(".")):
        raise invalid(f"{where}.sourceField", "must be a property name or a dotted path such as 'meta.id'")
    default = _optional_string(raw, "defaultValue", f"{where}.defaultValue")
    if default is not None and name not in _DEFAULTABLE:
        raise invalid(
            f"{where}.defaultValue", "only eventType, subject and dataVersion accept a defaultValue"
        )
    if default == "" and name == "eventType":
        raise invalid(f"{where}.defaultValue", "must not be empty")
    return FieldMapping(source_field=source, default_value=default)


def parse_input_schema_mapping(
    raw: object, field_prefix: str = "properties.inputSchemaMapping"
) -> InputSchemaMapping:
    """Validate Azure's ``inputSchemaMapping`` JSON; errors are 400s naming the exact field."""
    if not isinstance(raw, dict):
        raise invalid(field_prefix, "must be an object with mappingType and properties")
    for key in raw:
        if key not in ("mappingType", "properties"):
            raise invalid(f"{field_prefix}.{key}", "unknown property; expected mappingType or properties")
    mapping_type = raw.get("mappingType", "Json")
    if not isinstance(mapping_type, str) or mapping_type.lower() != "json":
        raise invalid(f"{field_prefix}.mappingType", f"must be 'Json'; got {mapping_type!r}")
    properties = raw.get("properties")
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        raise invalid(f"{field_prefix}.properties", "must be an object")
    for key in properties:
        if key not in _MAPPED_FIELDS:
            raise invalid(
                f"{field_prefix}.properties.{key}",
                f"unknown field; mappable fields are {', '.join(_MAPPED_FIELDS)}",
            )
    parsed = {name: _parse_field(name, properties.get(name), field_prefix) for name in _MAPPED_FIELDS}
    event_type = parsed["eventType"]
    if event_type.source_field is None and event_type.default_value is None:
        raise invalid(
            f"{field_prefix}.properties.eventType",
            "needs a sourceField or a defaultValue: every event needs an event type",
        )
    return InputSchemaMapping(
        id=parsed["id"],
        topic=parsed["topic"],
        event_time=parsed["eventTime"],
        event_type=event_type,
        subject=parsed["subject"],
        data_version=parsed["dataVersion"],
    )


def mapping_to_json(mapping: InputSchemaMapping) -> dict[str, Any]:
    """Azure's JSON for a mapping; ``parse_input_schema_mapping`` reads it back unchanged.

    Fields with neither a source nor a default are left out rather than written as empty
    objects, which keeps stored and returned documents as small as what users wrote.
    """
    properties: dict[str, Any] = {}
    for name, field_mapping in mapping.fields():
        entry: dict[str, str] = {}
        if field_mapping.source_field is not None:
            entry["sourceField"] = field_mapping.source_field
        if field_mapping.default_value is not None:
            entry["defaultValue"] = field_mapping.default_value
        if entry:
            properties[name] = entry
    return {"mappingType": "Json", "properties": properties}
