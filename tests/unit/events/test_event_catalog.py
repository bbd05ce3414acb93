"""The event catalog's pure parts: the ML events' schemas hold for what the emitters build, a
custom event satisfies the schema inferred from it, and the AsyncAPI document is wired up."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mlgrid.events import catalog, ml

_TYPES = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
    "integer": int, "number": (int, float, Decimal),
}


def violations(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """The JSON Schema keywords the catalog uses: type, required, properties,
    additionalProperties, items, const, pattern."""
    found: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        names = kinds if isinstance(kinds, list) else [kinds]
        ok = any(
            isinstance(value, _TYPES[n]) and not (n in ("integer", "number") and isinstance(value, bool))
            for n in names
        )
        if not ok:
            return [f"{where}: {value!r} is not {names}"]
    if "const" in schema and value != schema["const"]:
        found.append(f"{where}: {value!r} != {schema['const']!r}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        found.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, dict):
        found += [f"{where}: {name} is missing" for name in schema.get("required", []) if name not in value]
        for name, item in value.items():
            if name in schema.get("properties", {}):
                found += violations(item, schema["properties"][name], f"{where}.{name}")
            elif isinstance(schema.get("additionalProperties"), dict):
                found += violations(item, schema["additionalProperties"], f"{where}.{name}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += violations(item, schema["items"], f"{where}[{index}]")
    return found


def test_every_ml_example_follows_its_schema() -> None:
    examples = catalog.ml_examples()
    assert sorted(examples) == sorted(ml.ML_EVENT_TYPES)
    for event_type, event in examples.items():
        schema = catalog.event_grid_schema(catalog.ML_DATA_SCHEMAS[event_type])
        assert violations(event, schema) == [], event_type
        assert event["eventType"] == event_type


def test_the_schema_catches_a_missing_field() -> None:
    event = catalog.ml_examples()[ml.MODEL_REGISTERED]
    del event["data"]["ModelVersion"]
    schema = catalog.event_grid_schema(catalog.ML_DATA_SCHEMAS[ml.MODEL_REGISTERED])
    assert violations(event, schema) == ["$.data: ModelVersion is missing"]


# Lists of at most one item: an array is described by its first item, and real events carry
# homogeneous arrays.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    | st.decimals(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=1) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)


@given(json_values)
def test_a_value_follows_the_schema_inferred_from_it(value: Any) -> None:
    assert violations(value, catalog.infer_schema(value)) == []


def test_an_event_follows_the_schema_inferred_from_it() -> None:
    event = {"id": "1", "subject": "orders/1", "eventType": "Shop.OrderPlaced",
             "data": {"total": Decimal("12.5"), "items": [{"sku": "a", "n": 2}], "gift": False, "note": None}}
    assert violations(event, catalog.infer_schema(event)) == []
    data = catalog.infer_schema(event)["properties"]["data"]["properties"]
    assert data["items"]["items"]["properties"]["n"] == {"type": "integer"}


def test_the_asyncapi_document_wires_channels_messages_and_operations() -> None:
    examples = catalog.ml_examples()
    entries = [
        catalog.CatalogEntry(t, catalog.ML, catalog.event_grid_schema(catalog.ML_DATA_SCHEMAS[t]),
                             examples[t], "example", topics=["ws1"])
        for t in ml.ML_EVENT_TYPES
    ]
    entries.append(catalog.CatalogEntry("Shop.OrderPlaced", catalog.CUSTOM, {"type": "object"},
                                        {"eventType": "Shop.OrderPlaced"}, "retained", topics=["orders"]))
    doc = catalog.asyncapi(entries, "http://127.0.0.1:8780", "0.1.0")
    assert doc["asyncapi"] == "3.0.0"
    assert doc["servers"]["mlgrid"] == {"host": "127.0.0.1:8780", "protocol": "http"}
    assert set(doc["channels"]) == {"workspaceSystemTopic", "topic-orders"}
    assert doc["channels"]["topic-orders"]["address"] == "/topics/orders/api/events"
    names = {m["name"] for m in doc["components"]["messages"].values()}
    assert names == {*ml.ML_EVENT_TYPES, "Shop.OrderPlaced"}
    for key, operation in doc["operations"].items():
        channel = operation["channel"]["$ref"].removeprefix("#/channels/")
        for message_ref in operation["messages"]:
            _, _, message_channel, _, message = message_ref["$ref"].split("/")
            assert message_channel == channel and message in doc["channels"][channel]["messages"], key
            target = doc["channels"][channel]["messages"][message]["$ref"].split("/")[-1]
            assert target in doc["components"]["messages"]
