"""Properties: valid events survive parse -> dumps -> parse; broken ones are named precisely."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlgrid.domain.schemas import EventSchema
from mlgrid.errors import InvalidField
from mlgrid.events.jsoncodec import dumps, loads_exact
from mlgrid.events.publish import parse_publish_body
from mlgrid.events.timestamps import format_timestamp, normalise_timestamp

TOPIC = (
    "/subscriptions/0b5c1c9e-8c5d-4a36-9a39-5f3b7a0b4d11/resourceGroups/default"
    "/providers/Microsoft.EventGrid/topics/p"
)
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def rfc3339(draw: st.DrawFn) -> str:
    moment = draw(
        st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))
    )
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    digits = draw(st.integers(0, 9))
    if digits:
        text += "." + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=digits, max_size=digits)))
    minutes = draw(st.integers(-14 * 60, 14 * 60))
    if minutes == 0 and draw(st.booleans()):
        return text + "Z"
    sign = "-" if minutes < 0 else "+"
    return text + f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@st.composite
def eventgrid_events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": draw(st.text(min_size=1, max_size=40)),
        "subject": draw(st.text(max_size=40)),
        "eventType": draw(st.text(min_size=1, max_size=40)),
        "eventTime": draw(rfc3339()),
    }
    if draw(st.booleans()):
        event["data"] = draw(json_values)
    if draw(st.booleans()):
        event["dataVersion"] = draw(st.text(max_size=8))
    if draw(st.booleans()):
        event["topic"] = draw(st.sampled_from([TOPIC, TOPIC.upper(), TOPIC.lower()]))
    if draw(st.booleans()):
        event["metadataVersion"] = "1"
    return event


def publish(
    body: bytes, input_schema: str = EventSchema.EVENT_GRID, content_type: str = "application/json"
) -> list[dict[str, Any]]:
    return parse_publish_body(
        body, content_type, {}, input_schema=input_schema, mapping=None, topic_id=TOPIC, now=NOW
    )


def expected_storage(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": event["id"],
        "topic": TOPIC,
        "subject": event["subject"],
        "eventType": event["eventType"],
        "eventTime": event["eventTime"],
        "data": event.get("data"),
        "dataVersion": event.get("dataVersion", ""),
        "metadataVersion": "1",
    }


@settings(max_examples=200, deadline=None)
@given(st.lists(eventgrid_events(), max_size=5))
def test_valid_events_survive_parse_dumps_parse(events: list[dict[str, Any]]) -> None:
    body = dumps(events)
    parsed = publish(body)
    assert parsed == [expected_storage(event) for event in events]
    stored = dumps(parsed)
    again = publish(stored)
    assert again == parsed
    assert dumps(again) == stored


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_json_values_round_trip_exactly(value: Any) -> None:
    text = dumps(value)
    parsed = loads_exact(text)
    assert parsed == value
    assert dumps(parsed) == text


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimals_keep_every_digit(value: Decimal) -> None:
    text = dumps(value)
    assert text.decode() == str(value)
    assert loads_exact(text) == value


@given(rfc3339())
def test_rfc3339_is_kept_verbatim(text: str) -> None:
    assert normalise_timestamp(text) == text


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.just(UTC) | st.just(timezone(timedelta(hours=-5))) | st.none(),
    )
)
def test_format_timestamp_is_valid_rfc3339_in_utc(moment: datetime) -> None:
    text = format_timestamp(moment)
    assert text.endswith("Z")
    assert normalise_timestamp(text) == text
    expected = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    assert datetime.fromisoformat(text) == expected


REQUIRED = ["id", "subject", "eventType", "eventTime"]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(eventgrid_events(), min_size=1, max_size=6),
    st.data(),
)
def test_one_broken_event_rejects_the_request_and_is_named(
    events: list[dict[str, Any]], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(events) - 1))
    field = data.draw(st.sampled_from(REQUIRED))
    breakage = data.draw(st.sampled_from(["remove", "number"]))
    if breakage == "remove":
        del events[index][field]
    else:
        events[index][field] = 12
    with pytest.raises(InvalidField) as caught:
        publish(dumps(events))
    assert [detail.target for detail in caught.value.details] == [f"[{index}].{field}"]
    assert caught.value.message.startswith(f"[{index}].{field}: ")


@st.composite
def cloud_events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": draw(st.text(min_size=1, max_size=20)),
        "source": draw(st.text(min_size=1, max_size=20)),
        "type": draw(st.text(min_size=1, max_size=20)),
    }
    if draw(st.booleans()):
        event["time"] = draw(rfc3339())
    if draw(st.booleans()):
        event["subject"] = draw(st.text(min_size=1, max_size=20))
    extensions = draw(
        st.dictionaries(
            st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True).filter(
                lambda name: (
                    name
                    not in {
                        "id",
                        "source",
                        "type",
                        "time",
                        "subject",
                        "specversion",
                        "dataschema",
                        "datacontenttype",
                    }
                )
            ),
            st.text(max_size=10) | st.integers(-(2**31), 2**31) | st.booleans(),
            max_size=3,
        )
    )
    event.update(extensions)
    data = draw(json_values)
    if data is not None:
        event["data"] = data
    return event


@settings(max_examples=100, deadline=None)
@given(st.lists(cloud_events(), max_size=5))
def test_cloudevents_survive_parse_dumps_parse(events: list[dict[str, Any]]) -> None:
    parsed = publish(dumps(events), EventSchema.CLOUD_EVENTS, "application/cloudevents-batch+json")
    assert parsed == events
    again = publish(dumps(parsed), EventSchema.CLOUD_EVENTS, "application/cloudevents-batch+json")
    assert again == parsed
