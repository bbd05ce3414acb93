"""MLflow facts → the workspace's ML events (the table in ``docs/mlflow.md``).

The events are built by the same builders the workspace uses (``events/ml.py``), so a consumer
cannot tell an MLflow run from a workspace run by shape: subjects, field names and casing are
those of SPEC §2.2. What is decided here:

* statuses: ``RUNNING``→``Running``, ``SCHEDULED``→``Queued``, ``FINISHED``→``Completed``,
  ``FAILED``→``Failed``, ``KILLED``→``Canceled`` (anything else keeps MLflow's spelling,
  title-cased, so a new MLflow status is visible rather than dropped);
* which events a status change emits: exactly the workspace's rule
  (``workspace.lifecycle.events_for_transition``);
* ``RunType`` is the run's ``mlflow.source.type`` tag (``LOCAL``, ``NOTEBOOK``, ``JOB``,
  ``PROJECT``...), null when the client did not set it; ``RunTags`` are all run tags,
  ``RunProperties`` the params (strings, as MLflow stores them);
* ``ModelProperties`` holds ``source`` and ``run_id`` (and ``description`` when there is one);
* an alias is a deployment: ``ServiceName`` ``{model}@{alias}``, ``ServiceComputeType``
  ``MLflowAlias``, ``ModelIds`` ``{model}:{version}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlgrid.connectors.observation import FAILED, FINISHED, KILLED, RUNNING, SCHEDULED, RunObservation
from mlgrid.events import ml
from mlgrid.workspace import lifecycle

STATUS_NAMES = {
    RUNNING: lifecycle.RUNNING,
    SCHEDULED: lifecycle.QUEUED,
    FINISHED: lifecycle.COMPLETED,
    FAILED: lifecycle.FAILED,
    KILLED: lifecycle.CANCELED,
}
RUN_TYPE_TAG = "mlflow.source.type"
ALIAS_COMPUTE_TYPE = "MLflowAlias"


def azure_status(mlflow_status: str) -> str:
    return STATUS_NAMES.get(mlflow_status, mlflow_status.title())


def event_types_for(mlflow_status: str, mode: str) -> list[str]:
    """Event types a run entering ``mlflow_status`` emits under the workspace's mode."""
    return lifecycle.events_for_transition(azure_status(mlflow_status), mode)


def from_millis(value: int | None, default: datetime) -> datetime:
    if value is None or value <= 0:
        return default
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return default


def run_event(
    event_type: str,
    topic_id: str,
    run: RunObservation,
    *,
    etag: str,
    sequencer: str,
    event_time: datetime,
    event_id: str,
) -> dict[str, Any]:
    common: dict[str, Any] = {
        "topic_id": topic_id,
        "experiment_id": run.experiment_id,
        "experiment_name": run.experiment_name,
        "run_id": run.run_id,
        "run_type": run.tags.get(RUN_TYPE_TAG),
        "run_tags": run.tags,
        "run_properties": run.params,
        "etag": etag,
        "sequencer": sequencer,
        "event_time": event_time,
        "event_id": event_id,
    }
    if event_type == ml.RUN_COMPLETED:
        return ml.run_completed(**common)
    return ml.run_status_changed(**common, run_status=azure_status(run.status))


def service_name(model: str, alias: str) -> str:
    return f"{model}@{alias}"
