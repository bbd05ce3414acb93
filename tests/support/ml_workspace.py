"""Helpers for the ML workspace tests: SDK clients for a server, event shape assertions.

The event assertions check SPEC §2.2 field for field: the envelope, the subject, every data
field in the seed's casing, ``ETag`` and a 20-digit ``Sequencer``, and that the official
``azure-eventgrid`` package reads the event and knows its type.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from azure.eventgrid import EventGridEvent, SystemEventNames

from mlgrid import Client
from mlgrid.client.workspace import RunInfo, Workspace
from tests.support.server import ServerProcess

RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
MODEL_REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"
ENVELOPE_KEYS = {"id", "topic", "subject", "eventType", "eventTime", "data", "dataVersion", "metadataVersion"}
RUN_DATA_KEYS = {
    "ExperimentId",
    "ExperimentName",
    "RunId",
    "RunType",
    "RunTags",
    "RunProperties",
    "ETag",
    "Sequencer",
}
MODEL_DATA_KEYS = {"ModelName", "ModelVersion", "ModelTags", "ModelProperties", "ETag", "Sequencer"}
SYSTEM_EVENT_TYPES = {e.value for e in SystemEventNames}


def admin_client(server: ServerProcess) -> Client:
    return Client(server.url, server.admin_token, environ={})


def principal_token(server: ServerProcess, name: str) -> str:
    with server.client() as http:
        response = http.put(f"/principals/{name}")
        assert response.status_code in (200, 201), response.text
        return str(response.json()["token"])


def retained(workspace: Workspace, event_type: str | None = None) -> list[dict[str, Any]]:
    return workspace.events(event_type=event_type)


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def assert_envelope(event: Mapping[str, Any], workspace: Workspace) -> None:
    assert set(event) == ENVELOPE_KEYS, sorted(event)
    assert event["topic"] == workspace.info.id
    assert event["topic"].endswith(
        f"/providers/Microsoft.MachineLearningServices/workspaces/{workspace.name}"
    )
    assert event["dataVersion"] == ""
    assert event["metadataVersion"] == "1"
    assert event["eventType"] in SYSTEM_EVENT_TYPES
    parsed = EventGridEvent.from_dict(dict(event))
    assert parsed.event_type == event["eventType"]
    assert parsed.subject == event["subject"]
    sequencer = event["data"]["Sequencer"]
    assert isinstance(sequencer, str) and len(sequencer) == 20 and sequencer.isdigit()
    assert isinstance(event["data"]["ETag"], str) and event["data"]["ETag"]


def assert_run_event(
    event: Mapping[str, Any], workspace: Workspace, run: RunInfo, event_type: str, status: str | None = None
) -> None:
    """``run`` is the run as it was right after the change the event reports."""
    assert_envelope(event, workspace)
    assert event["eventType"] == event_type
    assert event["subject"] == f"experiments/{run.experiment_id}/runs/{run.run_id}"
    data = event["data"]
    expected_keys = RUN_DATA_KEYS | ({"RunStatus"} if event_type == RUN_STATUS_CHANGED else set())
    assert set(data) == expected_keys, sorted(data)
    assert data["ExperimentId"] == run.experiment_id
    assert data["ExperimentName"] == run.experiment_name
    assert data["RunId"] == run.run_id
    assert data["RunType"] == run.run_type
    assert data["RunTags"] == run.tags
    assert data["RunProperties"] == run.properties
    assert all(isinstance(v, str) for v in data["RunProperties"].values())
    assert data["ETag"] == run.etag
    if event_type == RUN_STATUS_CHANGED:
        assert data["RunStatus"] == (status or run.status).lower()


def assert_model_event(
    event: Mapping[str, Any],
    workspace: Workspace,
    name: str,
    version: str,
    tags: Mapping[str, Any],
    properties: Mapping[str, Any],
    etag: str,
) -> None:
    assert_envelope(event, workspace)
    assert event["eventType"] == MODEL_REGISTERED
    assert event["subject"] == f"models/{name}:{version}"
    data = event["data"]
    assert set(data) == MODEL_DATA_KEYS, sorted(data)
    assert data["ModelName"] == name
    assert data["ModelVersion"] == version
    assert data["ModelTags"] == dict(tags)
    assert data["ModelProperties"] == dict(properties)
    assert data["ETag"] == etag


def assert_strictly_increasing(values: Sequence[str]) -> None:
    assert all(a < b for a, b in itertools.pairwise(values)), values


def raw(server: ServerProcess, token: str | None = None) -> httpx.Client:
    """A plain HTTP client (admin token unless one is given)."""
    return server.client(token)
