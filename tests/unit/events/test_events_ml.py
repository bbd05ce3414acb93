"""The five ML lifecycle events: subject and data exactly as SPEC §2.2 and the seed samples."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from azure.eventgrid import EventGridEvent, SystemEventNames
from hypothesis import given
from hypothesis import strategies as st

from mlgrid.domain.schemas import EventSchema
from mlgrid.events import ml
from mlgrid.events.jsoncodec import dumps
from mlgrid.events.publish import parse_publish_body

TOPIC = (
    "/subscriptions/0b5c1c9e-8c5d-4a36-9a39-5f3b7a0b4d11/resourceGroups/default"
    "/providers/Microsoft.MachineLearningServices/workspaces/ws1"
)
WHEN = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
EXPERIMENT_ID = "b1d7966c-f73a-4c68-b846-992ace89551f"
RUN_ID = "my_exp1_1554835758_38dbaa94"

# The data keys of the seed's samples (event-schema-machine-learning), in their casing.
SEED_DATA_KEYS = {
    ml.RUN_COMPLETED: ["ExperimentId", "ExperimentName", "RunId", "RunType", "RunTags", "RunProperties"],
    ml.RUN_STATUS_CHANGED: [
        "ExperimentId",
        "ExperimentName",
        "RunId",
        "RunType",
        "RunTags",
        "RunProperties",
        "RunStatus",
    ],
    ml.MODEL_REGISTERED: ["ModelName", "ModelVersion", "ModelTags", "ModelProperties"],
    ml.MODEL_DEPLOYED: ["ServiceName", "ServiceComputeType", "ModelIds", "ServiceTags", "ServiceProperties"],
    ml.DATASET_DRIFT_DETECTED: [
        "DataDriftId",
        "DataDriftName",
        "RunId",
        "BaseDatasetId",
        "TargetDatasetId",
        "DriftCoefficient",
        "StartTime",
        "EndTime",
    ],
}


def run_completed() -> dict[str, Any]:
    return ml.run_completed(
        topic_id=TOPIC,
        experiment_id=EXPERIMENT_ID,
        experiment_name="my_exp1",
        run_id=RUN_ID,
        run_type=None,
        run_tags={"team": "a"},
        run_properties={"runTemplate": "automl_child"},
        etag="etag-1",
        sequencer=ml.sequencer(3),
        event_time=WHEN,
    )


def run_status_changed() -> dict[str, Any]:
    return ml.run_status_changed(
        topic_id=TOPIC,
        experiment_id=EXPERIMENT_ID,
        experiment_name="my_exp1",
        run_id=RUN_ID,
        run_type="azureml.scriptrun",
        run_tags={},
        run_properties={},
        etag="etag-2",
        sequencer=ml.sequencer(4),
        event_time=WHEN,
        run_status="Failed",
    )


def model_registered() -> dict[str, Any]:
    return ml.model_registered(
        topic_id=TOPIC,
        model_name="sklearn_regression_model",
        model_version=3,
        model_tags={"area": "diabetes", "type": "regression"},
        model_properties={"type": "test"},
        etag="etag-m3",
        sequencer=ml.sequencer(3),
        event_time=WHEN,
    )


def model_deployed() -> dict[str, Any]:
    return ml.model_deployed(
        topic_id=TOPIC,
        service_name="my-sklearn-service",
        compute_type="Local",
        model_ids=["sklearn_regression_model:1", "sklearn_regression_model:2"],
        service_tags={"area": "diabetes"},
        service_properties={"type": "test"},
        etag="etag-e1",
        sequencer=ml.sequencer(1),
        event_time=WHEN,
    )


def dataset_drift_detected() -> dict[str, Any]:
    return ml.dataset_drift_detected(
        topic_id=TOPIC,
        data_drift_id="01d29aa4-e6a4-470a-9ef3-66660d21f8ef",
        data_drift_name="myDriftMonitor",
        run_id="01d29aa4-e6a4-470a-9ef3-66660d21f8ef_1571590300380",
        base_dataset_id="3c56d136-0f64-4657-a0e8-5162089a88a3",
        target_dataset_id="d7e74d2e-c972-4266-b5fb-6c9c182d2a74",
        drift_coefficient=Decimal("0.83503490684792081"),
        start_time=datetime(2019, 7, 4, tzinfo=UTC),
        end_time=datetime(2019, 7, 5, tzinfo=UTC),
        etag="etag-d1",
        sequencer=ml.sequencer(7),
        event_time=WHEN,
    )


BUILDERS = [run_completed, run_status_changed, model_registered, model_deployed, dataset_drift_detected]


def test_type_names() -> None:
    assert ml.RUN_COMPLETED == "Microsoft.MachineLearningServices.RunCompleted"
    assert ml.RUN_STATUS_CHANGED == "Microsoft.MachineLearningServices.RunStatusChanged"
    assert ml.MODEL_REGISTERED == "Microsoft.MachineLearningServices.ModelRegistered"
    assert ml.MODEL_DEPLOYED == "Microsoft.MachineLearningServices.ModelDeployed"
    assert ml.DATASET_DRIFT_DETECTED == "Microsoft.MachineLearningServices.DatasetDriftDetected"
    assert len(set(ml.ML_EVENT_TYPES)) == 5


def test_type_names_are_the_sdks_system_event_names() -> None:
    assert set(ml.ML_EVENT_TYPES) == {
        SystemEventNames.MachineLearningServicesRunCompletedEventName,
        SystemEventNames.MachineLearningServicesRunStatusChangedEventName,
        SystemEventNames.MachineLearningServicesModelRegisteredEventName,
        SystemEventNames.MachineLearningServicesModelDeployedEventName,
        SystemEventNames.MachineLearningServicesDatasetDriftDetectedEventName,
    }


def test_run_completed() -> None:
    event = run_completed()
    assert event["subject"] == f"experiments/{EXPERIMENT_ID}/runs/{RUN_ID}"
    assert event["data"] == {
        "ExperimentId": EXPERIMENT_ID,
        "ExperimentName": "my_exp1",
        "RunId": RUN_ID,
        "RunType": None,
        "RunTags": {"team": "a"},
        "RunProperties": {"runTemplate": "automl_child"},
        "ETag": "etag-1",
        "Sequencer": "00000000000000000003",
    }


def test_run_status_changed_lowercases_the_status() -> None:
    event = run_status_changed()
    assert event["eventType"] == ml.RUN_STATUS_CHANGED
    assert event["subject"] == f"experiments/{EXPERIMENT_ID}/runs/{RUN_ID}"
    assert event["data"]["RunStatus"] == "failed"
    assert event["data"]["RunType"] == "azureml.scriptrun"
    assert event["data"]["ETag"] == "etag-2"


def test_model_registered() -> None:
    event = model_registered()
    assert event["subject"] == "models/sklearn_regression_model:3"
    assert event["data"] == {
        "ModelName": "sklearn_regression_model",
        "ModelVersion": "3",
        "ModelTags": {"area": "diabetes", "type": "regression"},
        "ModelProperties": {"type": "test"},
        "ETag": "etag-m3",
        "Sequencer": "00000000000000000003",
    }


def test_model_deployed() -> None:
    event = model_deployed()
    assert event["subject"] == "endpoints/my-sklearn-service"
    assert event["data"] == {
        "ServiceName": "my-sklearn-service",
        "ServiceComputeType": "Local",
        "ModelIds": "sklearn_regression_model:1,sklearn_regression_model:2",
        "ServiceTags": {"area": "diabetes"},
        "ServiceProperties": {"type": "test"},
        "ETag": "etag-e1",
        "Sequencer": "00000000000000000001",
    }


def test_dataset_drift_detected() -> None:
    event = dataset_drift_detected()
    assert (
        event["subject"] == "datadrift/01d29aa4-e6a4-470a-9ef3-66660d21f8ef/run/"
        "01d29aa4-e6a4-470a-9ef3-66660d21f8ef_1571590300380"
    )
    assert event["data"] == {
        "DataDriftId": "01d29aa4-e6a4-470a-9ef3-66660d21f8ef",
        "DataDriftName": "myDriftMonitor",
        "RunId": "01d29aa4-e6a4-470a-9ef3-66660d21f8ef_1571590300380",
        "BaseDatasetId": "3c56d136-0f64-4657-a0e8-5162089a88a3",
        "TargetDatasetId": "d7e74d2e-c972-4266-b5fb-6c9c182d2a74",
        "DriftCoefficient": Decimal("0.83503490684792081"),
        "StartTime": "2019-07-04T00:00:00+00:00",
        "EndTime": "2019-07-05T00:00:00+00:00",
        "ETag": "etag-d1",
        "Sequencer": "00000000000000000007",
    }
    assert b'"DriftCoefficient":0.83503490684792081' in dumps(event)


def test_drift_window_keeps_its_offset_and_naive_means_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    event = ml.dataset_drift_detected(
        topic_id=TOPIC,
        data_drift_id="d",
        data_drift_name="n",
        run_id="r",
        base_dataset_id="b",
        target_dataset_id="t",
        drift_coefficient=0.5,
        start_time=datetime(2024, 1, 1, tzinfo=plus_two),
        end_time=datetime(2024, 1, 2),
        etag="e",
        sequencer="s",
        event_time=WHEN,
    )
    assert event["data"]["StartTime"] == "2024-01-01T00:00:00+02:00"
    assert event["data"]["EndTime"] == "2024-01-02T00:00:00+00:00"
    assert event["data"]["DriftCoefficient"] == 0.5


@pytest.mark.parametrize("build", BUILDERS)
def test_envelope(build: Any) -> None:
    event = build()
    assert list(event) == [
        "id",
        "topic",
        "subject",
        "eventType",
        "eventTime",
        "data",
        "dataVersion",
        "metadataVersion",
    ]
    assert event["topic"] == TOPIC
    assert event["eventTime"] == "2024-05-01T10:00:00.123456Z"
    assert event["dataVersion"] == ""
    assert event["metadataVersion"] == "1"
    uuid.UUID(event["id"])
    assert build()["id"] != event["id"]


@pytest.mark.parametrize("build", BUILDERS)
def test_data_has_the_seed_fields_in_order_then_etag_and_sequencer(build: Any) -> None:
    event = build()
    assert list(event["data"]) == [*SEED_DATA_KEYS[event["eventType"]], "ETag", "Sequencer"]


@pytest.mark.parametrize("build", BUILDERS)
def test_builders_output_is_accepted_by_the_sdk(build: Any) -> None:
    event = build()
    # What a consumer does with a delivered body: the standard JSON parser, then the SDK.
    parsed = EventGridEvent.from_dict(json.loads(dumps(event)))
    assert parsed.id == event["id"]
    assert parsed.subject == event["subject"]
    assert parsed.event_type == event["eventType"]
    assert parsed.data_version == ""
    assert parsed.topic == TOPIC
    assert parsed.event_time == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize("build", BUILDERS)
def test_builders_output_passes_publish_validation_unchanged(build: Any) -> None:
    event = build()
    stored = parse_publish_body(
        dumps([event]),
        "application/json",
        {},
        input_schema=EventSchema.EVENT_GRID,
        mapping=None,
        topic_id=TOPIC,
        now=WHEN,
    )
    assert stored == [event]


def test_explicit_event_id() -> None:
    event = ml.model_registered(
        topic_id=TOPIC, model_name="m", model_version="1", model_tags={}, model_properties={}, etag="e",
        sequencer="s", event_time=WHEN, event_id="fixed",
    )
    assert event["id"] == "fixed"


def test_tags_are_copied() -> None:
    tags = {"a": "1"}
    event = ml.model_registered(
        topic_id=TOPIC, model_name="m", model_version="1", model_tags=tags, model_properties={}, etag="e",
        sequencer="s", event_time=WHEN,
    )
    tags["a"] = "2"
    assert event["data"]["ModelTags"] == {"a": "1"}


def test_sequencer_format() -> None:
    assert ml.sequencer(0) == "00000000000000000000"
    assert ml.sequencer(42) == "00000000000000000042"
    assert ml.sequencer(10**20 - 1) == "9" * 20
    for bad in (-1, 10**20):
        with pytest.raises(ValueError):
            ml.sequencer(bad)


@given(st.integers(0, 10**20 - 1), st.integers(0, 10**20 - 1))
def test_sequencer_sorts_like_the_counter(a: int, b: int) -> None:
    assert (ml.sequencer(a) < ml.sequencer(b)) == (a < b)
    assert len(ml.sequencer(a)) == 20


def test_builders_take_keywords_only() -> None:
    """Tags and properties are both mappings: passed by position they could swap unnoticed."""
    with pytest.raises(TypeError):
        ml.model_registered(TOPIC, "m", "1", {}, {}, "e", "s", WHEN)  # type: ignore[misc]
