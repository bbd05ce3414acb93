"""The five Azure Machine Learning lifecycle events (SPEC §2.2).

One builder per event type, so the subject format and the ``data`` field names - spelled and
cased exactly as Azure's published samples, because consumers written for Azure read them -
live in one place. Every builder returns a complete Event Grid event ready to store: a fresh
UUID ``id`` (unless one is given, e.g. to rebuild an event), the workspace's ``topic`` id,
``dataVersion`` ``""`` and ``metadataVersion`` ``"1"``.

Beyond Azure's fields, ``data.ETag`` (the object's version tag after the change) and
``data.Sequencer`` (sorts in the order of changes to the object; see :func:`sequencer`) are
always present, because the seed tells consumers to rely on them for ordering and staleness.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from mlgrid.events.timestamps import format_timestamp

__all__ = [
    "DATASET_DRIFT_DETECTED",
    "ML_EVENT_TYPES",
    "MODEL_DEPLOYED",
    "MODEL_REGISTERED",
    "RUN_COMPLETED",
    "RUN_STATUS_CHANGED",
    "dataset_drift_detected",
    "model_deployed",
    "model_registered",
    "run_completed",
    "run_status_changed",
    "sequencer",
]

RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
MODEL_REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"
MODEL_DEPLOYED = "Microsoft.MachineLearningServices.ModelDeployed"
DATASET_DRIFT_DETECTED = "Microsoft.MachineLearningServices.DatasetDriftDetected"
ML_EVENT_TYPES = (RUN_COMPLETED, RUN_STATUS_CHANGED, MODEL_REGISTERED, MODEL_DEPLOYED, DATASET_DRIFT_DETECTED)

_SEQUENCER_DIGITS = 20


def sequencer(n: int) -> str:
    """A per-object change counter as a 20-digit zero-padded string.

    Zero padding makes string order equal numeric order, which is what consumers comparing
    ``data.Sequencer`` as strings (the only type it has in the event) need.
    """
    if n < 0 or n >= 10**_SEQUENCER_DIGITS:
        raise ValueError(f"sequencer counter must be in [0, 10**{_SEQUENCER_DIGITS}), got {n}")
    return f"{n:0{_SEQUENCER_DIGITS}d}"


def _envelope(
    topic_id: str,
    subject: str,
    event_type: str,
    data: dict[str, Any],
    event_time: datetime,
    event_id: str | None,
) -> dict[str, Any]:
    return {
        "id": event_id if event_id is not None else str(uuid.uuid4()),
        "topic": topic_id,
        "subject": subject,
        "eventType": event_type,
        "eventTime": format_timestamp(event_time),
        "data": data,
        "dataVersion": "",
        "metadataVersion": "1",
    }


def _run_data(
    *,
    experiment_id: str,
    experiment_name: str,
    run_id: str,
    run_type: str | None,
    run_tags: Mapping[str, Any],
    run_properties: Mapping[str, str],
) -> dict[str, Any]:
    return {
        "ExperimentId": experiment_id,
        "ExperimentName": experiment_name,
        "RunId": run_id,
        "RunType": run_type,
        "RunTags": dict(run_tags),
        "RunProperties": dict(run_properties),
    }


def run_completed(
    *,
    topic_id: str,
    experiment_id: str,
    experiment_name: str,
    run_id: str,
    run_type: str | None,
    run_tags: Mapping[str, Any],
    run_properties: Mapping[str, str],
    etag: str,
    sequencer: str,
    event_time: datetime,
    event_id: str | None = None,
) -> dict[str, Any]:
    """``RunCompleted``: a run reached ``Completed``."""
    data = _run_data(
        experiment_id=experiment_id,
        experiment_name=experiment_name,
        run_id=run_id,
        run_type=run_type,
        run_tags=run_tags,
        run_properties=run_properties,
    )
    data["ETag"] = etag
    data["Sequencer"] = sequencer
    subject = f"experiments/{experiment_id}/runs/{run_id}"
    return _envelope(topic_id, subject, RUN_COMPLETED, data, event_time, event_id)


def run_status_changed(
    *,
    topic_id: str,
    experiment_id: str,
    experiment_name: str,
    run_id: str,
    run_type: str | None,
    run_tags: Mapping[str, Any],
    run_properties: Mapping[str, str],
    etag: str,
    sequencer: str,
    event_time: datetime,
    run_status: str,
    event_id: str | None = None,
) -> dict[str, Any]:
    """``RunStatusChanged``: ``RunStatus`` is lower-cased (``"Failed"`` -> ``"failed"``) as in Azure."""
    data = _run_data(
        experiment_id=experiment_id,
        experiment_name=experiment_name,
        run_id=run_id,
        run_type=run_type,
        run_tags=run_tags,
        run_properties=run_properties,
    )
    data["RunStatus"] = run_status.lower()
    data["ETag"] = etag
    data["Sequencer"] = sequencer
    subject = f"experiments/{experiment_id}/runs/{run_id}"
    return _envelope(topic_id, subject, RUN_STATUS_CHANGED, data, event_time, event_id)


def model_registered(
    *,
    topic_id: str,
    model_name: str,
    model_version: str | int,
    model_tags: Mapping[str, Any],
    model_properties: Mapping[str, Any],
    etag: str,
    sequencer: str,
    event_time: datetime,
    event_id: str | None = None,
) -> dict[str, Any]:
    """``ModelRegistered``: ``ModelVersion`` is always a string (``"3"``), per the spec's table."""
    version = str(model_version)
    data = {
        "ModelName": model_name,
        "ModelVersion": version,
        "ModelTags": dict(model_tags),
        "ModelProperties": dict(model_properties),
        "ETag": etag,
        "Sequencer": sequencer,
    }
    return _envelope(topic_id, f"models/{model_name}:{version}", MODEL_REGISTERED, data, event_time, event_id)


def model_deployed(
    *,
    topic_id: str,
    service_name: str,
    compute_type: str,
    model_ids: Sequence[str],
    service_tags: Mapping[str, Any],
    service_properties: Mapping[str, Any],
    etag: str,
    sequencer: str,
    event_time: datetime,
    event_id: str | None = None,
) -> dict[str, Any]:
    """``ModelDeployed``: ``model_ids`` are ``"name:version"`` strings, joined with commas."""
    data = {
        "ServiceName": service_name,
        "ServiceComputeType": compute_type,
        "ModelIds": ",".join(model_ids),
        "ServiceTags": dict(service_tags),
        "ServiceProperties": dict(service_properties),
        "ETag": etag,
        "Sequencer": sequencer,
    }
    return _envelope(topic_id, f"endpoints/{service_name}", MODEL_DEPLOYED, data, event_time, event_id)


def _window_time(moment: datetime) -> str:
    # The seed writes the drift window as ISO 8601 with an explicit offset ("+00:00").
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def dataset_drift_detected(
    *,
    topic_id: str,
    data_drift_id: str,
    data_drift_name: str,
    run_id: str,
    base_dataset_id: str,
    target_dataset_id: str,
    drift_coefficient: float | Decimal,
    start_time: datetime,
    end_time: datetime,
    etag: str,
    sequencer: str,
    event_time: datetime,
    event_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``DatasetDriftDetected``: ``StartTime``/``EndTime`` are the analysed target window.

    ``extra`` adds fields after the spec's (``DriftedFeatures``, ``PValue``...); it cannot
    replace one of them.
    """
    data = {
        "DataDriftId": data_drift_id,
        "DataDriftName": data_drift_name,
        "RunId": run_id,
        "BaseDatasetId": base_dataset_id,
        "TargetDatasetId": target_dataset_id,
        "DriftCoefficient": drift_coefficient,
        "StartTime": _window_time(start_time),
        "EndTime": _window_time(end_time),
        "ETag": etag,
        "Sequencer": sequencer,
    }
    for key, value in (extra or {}).items():
        data.setdefault(key, value)
    subject = f"datadrift/{data_drift_id}/run/{run_id}"
    return _envelope(topic_id, subject, DATASET_DRIFT_DETECTED, data, event_time, event_id)
