"""Event Grid -> CloudEvents conversion and delivery schemas (SPEC §2.1)."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.messaging import CloudEvent

from mlgrid.domain.schemas import EventSchema
from mlgrid.errors import BadRequest
from mlgrid.events.convert import (
    event_data_version,
    event_id,
    event_source,
    event_subject,
    event_time,
    event_type,
    eventgrid_to_cloudevent,
    is_cloudevent,
    to_delivery_schema,
)

TOPIC = (
    "/subscriptions/0b5c1c9e-8c5d-4a36-9a39-5f3b7a0b4d11/resourceGroups/default"
    "/providers/Microsoft.MachineLearningServices/workspaces/ws1"
)

EG_EVENT: dict[str, Any] = {
    "id": "831e1650-001e-001b-66ab-eeb76e069631",
    "topic": TOPIC,
    "subject": "models/sklearn_regression_model:3",
    "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
    "eventTime": "2017-06-26T18:41:00.9584103Z",
    "data": {"ModelName": "sklearn_regression_model", "ModelVersion": "3"},
    "dataVersion": "",
    "metadataVersion": "1",
}

CE_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "c1",
    "source": "/contoso",
    "type": "Contoso.Thing",
    "subject": "things/1",
    "time": "2024-05-01T10:00:00Z",
    "data": {"a": 1},
}


def test_eventgrid_to_cloudevent_field_by_field() -> None:
    assert eventgrid_to_cloudevent(EG_EVENT) == {
        "specversion": "1.0",
        "id": EG_EVENT["id"],
        "source": TOPIC,
        "type": "Microsoft.MachineLearningServices.ModelRegistered",
        "subject": "models/sklearn_regression_model:3",
        "time": "2017-06-26T18:41:00.9584103Z",
        "dataschema": "#",
        "data": {"ModelName": "sklearn_regression_model", "ModelVersion": "3"},
    }


def test_data_version_becomes_a_fragment_dataschema() -> None:
    converted = eventgrid_to_cloudevent(dict(EG_EVENT, dataVersion="2.1"))
    assert converted["dataschema"] == "#2.1"
    assert "metadataVersion" not in converted
    assert "dataVersion" not in converted


def test_empty_subject_and_null_data_are_left_out() -> None:
    converted = eventgrid_to_cloudevent(dict(EG_EVENT, subject="", data=None))
    assert "subject" not in converted
    assert "data" not in converted


def test_converted_event_is_a_valid_sdk_cloudevent() -> None:
    parsed = CloudEvent.from_dict(eventgrid_to_cloudevent(EG_EVENT))
    assert parsed.id == EG_EVENT["id"]
    assert parsed.source == TOPIC
    assert parsed.type == EG_EVENT["eventType"]
    assert parsed.subject == EG_EVENT["subject"]
    assert parsed.data == EG_EVENT["data"]
    assert parsed.dataschema == "#"
    assert parsed.time is not None
    assert not parsed.extensions


def test_conversion_does_not_touch_the_stored_event() -> None:
    before = dict(EG_EVENT)
    eventgrid_to_cloudevent(EG_EVENT)
    assert before == EG_EVENT


@pytest.mark.parametrize("stored", [EventSchema.EVENT_GRID, EventSchema.CUSTOM_EVENT])
def test_event_grid_delivery_is_identity(stored: str) -> None:
    assert to_delivery_schema(EG_EVENT, stored, EventSchema.EVENT_GRID) is EG_EVENT


@pytest.mark.parametrize("stored", [EventSchema.EVENT_GRID, EventSchema.CUSTOM_EVENT])
def test_cloudevents_delivery_converts(stored: str) -> None:
    assert to_delivery_schema(EG_EVENT, stored, EventSchema.CLOUD_EVENTS) == eventgrid_to_cloudevent(EG_EVENT)


def test_cloudevents_stay_cloudevents() -> None:
    assert to_delivery_schema(CE_EVENT, EventSchema.CLOUD_EVENTS, EventSchema.CLOUD_EVENTS) is CE_EVENT


@pytest.mark.parametrize("wanted", [EventSchema.EVENT_GRID, EventSchema.CUSTOM_EVENT])
def test_cloudevents_are_never_delivered_in_another_schema(wanted: str) -> None:
    with pytest.raises(BadRequest) as caught:
        to_delivery_schema(CE_EVENT, EventSchema.CLOUD_EVENTS, wanted)
    assert caught.value.status == 400
    assert caught.value.code == "UnsupportedDeliverySchema"


def test_custom_delivery_gives_back_the_published_object() -> None:
    published = {"kind": "x", "n": 1}
    stored = dict(EG_EVENT, data=published)
    assert to_delivery_schema(stored, EventSchema.CUSTOM_EVENT, "CustomInputSchema") is published


def test_custom_delivery_of_an_event_grid_topic_is_refused() -> None:
    with pytest.raises(BadRequest):
        to_delivery_schema(EG_EVENT, EventSchema.EVENT_GRID, EventSchema.CUSTOM_EVENT)


def test_schema_names_any_case() -> None:
    assert to_delivery_schema(EG_EVENT, "eventgridschema", "CLOUDEVENTSCHEMAV1_0")["specversion"] == "1.0"


def test_accessors_event_grid() -> None:
    assert not is_cloudevent(EG_EVENT)
    assert event_id(EG_EVENT) == EG_EVENT["id"]
    assert event_type(EG_EVENT) == EG_EVENT["eventType"]
    assert event_subject(EG_EVENT) == EG_EVENT["subject"]
    assert event_time(EG_EVENT) == EG_EVENT["eventTime"]
    assert event_source(EG_EVENT) == TOPIC
    assert event_data_version(dict(EG_EVENT, dataVersion="1.0")) == "1.0"


def test_accessors_cloudevents() -> None:
    assert is_cloudevent(CE_EVENT)
    assert event_id(CE_EVENT) == "c1"
    assert event_type(CE_EVENT) == "Contoso.Thing"
    assert event_subject(CE_EVENT) == "things/1"
    assert event_time(CE_EVENT) == "2024-05-01T10:00:00Z"
    assert event_source(CE_EVENT) == "/contoso"
    assert event_data_version(CE_EVENT) == ""
    bare = {"specversion": "1.0", "id": "2", "source": "/s", "type": "t"}
    assert event_subject(bare) == ""
    assert event_time(bare) is None
