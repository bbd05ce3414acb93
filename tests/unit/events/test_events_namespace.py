"""CloudEvents sent to ``:publish`` of an Event Grid schema topic are stored converted."""

from __future__ import annotations

from datetime import UTC, datetime

from mlgrid.events.namespace import cloudevent_to_eventgrid

TOPIC_ID = "/subscriptions/0/resourceGroups/default/providers/Microsoft.EventGrid/topics/top1"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def test_fields_map_back_to_the_event_grid_schema() -> None:
    event = cloudevent_to_eventgrid(
        {"specversion": "1.0", "id": "a", "source": "src", "type": "T.A", "subject": "s/1",
         "time": "2024-01-01T00:00:00Z", "dataschema": "#2", "data": {"x": 1}},
        TOPIC_ID, NOW,
    )
    assert event == {"id": "a", "topic": TOPIC_ID, "subject": "s/1", "eventType": "T.A",
                     "eventTime": "2024-01-01T00:00:00Z", "data": {"x": 1}, "dataVersion": "2",
                     "metadataVersion": "1"}


def test_a_cloudevent_without_time_gets_the_publish_time_not_an_empty_event_time() -> None:
    event = cloudevent_to_eventgrid({"specversion": "1.0", "id": "a", "source": "src", "type": "T.A"},
                                    TOPIC_ID, NOW)
    assert event["eventTime"] == "2024-05-01T12:00:00Z"
    assert event["subject"] == "src"
