"""The ML workspace half of the Python SDK: workspaces and what they hold (runs, jobs, models,
datasets, drift monitors, connectors, endpoints) and the event subscriptions of a workspace's
system topic. A run's own handle is ``Run`` (``client/runs.py``).

::

    from mlgrid import Client
    from mlgrid.client.filters import StringIn

    client = Client()                                   # MLGRID_URL / MLGRID_TOKEN or local admin
    ws = client.workspaces.create("ws1")
    with ws.start_run(experiment="train") as run:       # Completed on exit, Failed on exception
        run.log_metric("rmse", 0.31)
        run.upload_file("model.pkl", name="outputs/model.pkl")
    ws.register_model("model1", run_id=run.id, artifact_path="outputs/model.pkl")
    ws.create_subscription("on-model", endpoint="https://example.org/hook",
                           included_event_types=["Microsoft.MachineLearningServices.ModelRegistered"],
                           advanced_filters=[StringIn("data.ModelTags.key1", ["value1"])])

Results are frozen dataclasses (``RunInfo``, ``ModelVersion``, ``Dataset``, ...) with the
server's JSON kept in ``raw``; failures raise :class:`mlgrid.client.ApiError` carrying the
server's error code (``RunAlreadyTerminal``, ``PreconditionFailed``, ``InvalidRequest``...).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlgrid.client import code_snapshot
from mlgrid.client import connectors as connector_api
from mlgrid.client import drift as drift_api
from mlgrid.client.broker import event_subscription_properties
from mlgrid.client.connectors import Connector
from mlgrid.client.drift import DriftMonitor, DriftRun, to_dataframe
from mlgrid.client.endpoints import Endpoint, deploy_endpoint, get_endpoint, list_endpoints
from mlgrid.client.filters import AdvancedFilter, filter_json
from mlgrid.client.http import Transport, if_match_header
from mlgrid.client.records import Experiment, LockResult, PulledEvent, RoleAssignment
from mlgrid.client.runs import Run
from mlgrid.client.workspace_records import (
    Artifact,
    Column,
    Dataset,
    Metric,
    ModelVersion,
    RunInfo,
    SubscriptionInfo,
    WorkspaceInfo,
    segment,
)

__all__ = [
    "Artifact",
    "Column",
    "Dataset",
    "DriftMonitor",
    "DriftRun",
    "Metric",
    "ModelVersion",
    "RunInfo",
    "SubscriptionInfo",
    "Workspace",
    "WorkspaceInfo",
    "WorkspacesClient",
    "to_dataframe",
]



class WorkspacesClient:
    """``client.workspaces``: create, read, list and delete workspaces."""

    def __init__(self, http: Transport) -> None:
        self.http = http

    def create(
        self, name: str, resource_group: str = "default", run_status_changed_events: str = "failed"
    ) -> Workspace:
        """Create the workspace (admin only) or update its ``runStatusChangedEvents``."""
        body = {
            "properties": {
                "resourceGroup": resource_group,
                "runStatusChangedEvents": run_status_changed_events,
            }
        }
        info = WorkspaceInfo.from_json(self.http.call("PUT", f"/workspaces/{segment(name)}", body))
        return Workspace(self.http, info)

    def get(self, name: str) -> Workspace:
        return Workspace(
            self.http, WorkspaceInfo.from_json(self.http.call("GET", f"/workspaces/{segment(name)}"))
        )

    def list(self) -> list[WorkspaceInfo]:
        return [WorkspaceInfo.from_json(w) for w in self.http.pages("/workspaces")]

    def delete(self, name: str, *, if_match: str | None = None) -> None:
        headers = if_match_header(if_match)
        self.http.request("DELETE", f"/workspaces/{segment(name)}", headers=headers)


class Workspace:
    """A handle on one workspace: runs, jobs, models, datasets, subscriptions, roles."""

    def __init__(self, http: Transport, info: WorkspaceInfo) -> None:
        self.http = http
        self.info = info

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def path(self) -> str:
        return f"/workspaces/{segment(self.info.name)}"

    def __repr__(self) -> str:
        return f"Workspace({self.info.name!r})"

    def refresh(self) -> WorkspaceInfo:
        self.info = WorkspaceInfo.from_json(self.http.call("GET", self.path))
        return self.info

    # --- runs ------------------------------------------------------------------------------

    def start_run(
        self,
        experiment: str,
        run_type: str | None = None,
        tags: Mapping[str, Any] | None = None,
        properties: Mapping[str, str] | None = None,
        status: str = "Running",
    ) -> Run:
        """Start a run; use it as a context manager to complete (or fail) it on exit."""
        body = {
            "runType": run_type,
            "tags": dict(tags or {}),
            "properties": dict(properties or {}),
            "status": status,
        }
        created = self.http.call("POST", f"{self.path}/experiments/{segment(experiment)}/runs", body)
        return Run(self, RunInfo.from_json(created))

    def run(self, run_id: str) -> Run:
        """A handle on an existing run (e.g. ``os.environ["MLGRID_RUN_ID"]`` inside a job)."""
        return Run(self, RunInfo.from_json(self.http.call("GET", f"{self.path}/runs/{segment(run_id)}")))

    def runs(
        self,
        experiment: str | None = None,
        status: str | Sequence[str] | None = None,
        run_type: str | None = None,
    ) -> list[RunInfo]:
        """Runs newest first, optionally of one experiment, in some statuses, of one run type."""
        statuses = status if isinstance(status, str) or status is None else ",".join(status)
        params = {"experiment": experiment, "status": statuses, "runType": run_type}
        return [RunInfo.from_json(r) for r in self.http.pages(f"{self.path}/runs", params)]

    def experiments(self) -> list[Experiment]:
        return [Experiment.from_json(e) for e in self.http.call("GET", f"{self.path}/experiments")["value"]]

    def submit_job(
        self,
        command: str,
        experiment: str,
        working_directory: str | Path | None = None,
        wait: bool = False,
        *,
        environment: Mapping[str, str] | None = None,
        run_type: str | None = None,
        tags: Mapping[str, Any] | None = None,
        properties: Mapping[str, str] | None = None,
        timeout: float = 600.0,
        network: str | None = None,
        memory_mb: int | None = None,
        cpu_seconds: int | None = None,
        code: str | Path | None = None,
        code_max_bytes: int = code_snapshot.DEFAULT_MAX_BYTES,
    ) -> Run:
        """Have the server run ``command`` (``/bin/sh -c``) as a run of ``experiment``.

        ``code`` is a local directory: its snapshot (without what ``.amlignore``/``.gitignore``
        ignore) is zipped, uploaded with the job, kept as the run's artifacts under ``snapshot/``,
        and the command runs in a copy of it — from any machine. More than ``code_max_bytes``
        raises :class:`~mlgrid.client.code_snapshot.CodeSnapshotError` before anything is sent.
        ``network``: ``"api"`` (its own loopback, on which the server's API is relayed),
        ``"none"`` (its own loopback only) or ``"host"`` (the host's network); None: the
        server's ``job_network``. ``memory_mb`` and ``cpu_seconds`` lower its limits
        (docs/security.md).

        ``working_directory`` is instead a directory on the server (a relative path is made
        absolute here, which is right only when client and server share a machine). ``wait``
        blocks until the job ends (at most ``timeout`` seconds). The job's output is the
        artifact ``logs/job.log``.
        """
        if code is not None and working_directory is not None:
            raise ValueError("pass code (uploaded) or working_directory (on the server), not both")
        body: dict[str, Any] = {"command": command}
        if working_directory is not None:
            body["workingDirectory"] = str(Path(working_directory).absolute())
        if environment:
            body["environment"] = dict(environment)
        if run_type is not None:
            body["runType"] = run_type
        if tags:
            body["tags"] = dict(tags)
        if properties:
            body["properties"] = dict(properties)
        if network is not None:
            body["network"] = network
        resources = {"memoryMb": memory_mb, "cpuSeconds": cpu_seconds}
        if any(value is not None for value in resources.values()):
            body["resources"] = {k: v for k, v in resources.items() if v is not None}
        jobs_path = f"{self.path}/experiments/{segment(experiment)}/jobs"
        if code is None:
            created = self.http.call("POST", jobs_path, body)
        else:
            archive, _ = code_snapshot.build_archive(code, max_bytes=code_max_bytes)
            with archive:
                created = self.http.request(
                    "POST",
                    jobs_path,
                    files={"code": ("code.zip", archive, "application/zip")},
                    data={"job": json.dumps(body)},
                    timeout=600.0,
                ).json()
        run = Run(self, RunInfo.from_json(created))
        if wait:
            run.wait(timeout=timeout)
        return run

    # --- models ----------------------------------------------------------------------------

    def register_model(
        self,
        name: str,
        path: str | Path | None = None,
        run_id: str | None = None,
        artifact_path: str | None = None,
        tags: Mapping[str, Any] | None = None,
        properties: Mapping[str, str] | None = None,
        description: str = "",
    ) -> ModelVersion:
        """Register a new version of model ``name`` from a local file or directory (``path``)
        or from a run's artifact file or directory (``run_id`` + ``artifact_path``)."""
        metadata = {
            "tags": dict(tags or {}),
            "properties": dict(properties or {}),
            "description": description,
        }
        models_path = f"{self.path}/models/{segment(name)}/versions"
        if path is not None:
            if run_id is not None or artifact_path is not None:
                raise ValueError("give either path, or run_id and artifact_path")
            return ModelVersion.from_json(self._upload_model(models_path, Path(path), metadata))
        if run_id is None or artifact_path is None:
            raise ValueError("give a local path, or run_id and artifact_path of a run's artifact")
        body = {**metadata, "runId": run_id, "artifactPath": artifact_path}
        return ModelVersion.from_json(self.http.call("POST", models_path, body))

    def _upload_model(self, models_path: str, source: Path, metadata: dict[str, Any]) -> Any:
        if source.is_dir():
            files = sorted(p for p in source.rglob("*") if p.is_file())
            if not files:
                raise ValueError(f"{source} holds no files")
            metadata = {**metadata, "directory": True}
            names = [p.relative_to(source).as_posix() for p in files]
        elif source.is_file():
            files, names = [source], [source.name]
        else:
            raise FileNotFoundError(source)
        handles = [p.open("rb") for p in files]
        try:
            parts = [
                ("file", (n, h, "application/octet-stream")) for n, h in zip(names, handles, strict=True)
            ]
            response = self.http.request(
                "POST", models_path, files=parts, data={"metadata": json.dumps(metadata)}, timeout=600.0
            )
        finally:
            for handle in handles:
                handle.close()
        return response.json()

    def model(self, name: str, version: str | int) -> ModelVersion:
        return ModelVersion.from_json(
            self.http.call("GET", f"{self.path}/models/{segment(name)}/versions/{segment(str(version))}")
        )

    def models(self, name: str | None = None) -> list[ModelVersion]:
        return [ModelVersion.from_json(m) for m in self.http.pages(f"{self.path}/models", {"name": name})]

    def download_model(self, name: str, version: str | int, dest: str | Path) -> Path:
        """Download a model version: a file model is written to ``dest`` (or into it, when
        ``dest`` is a directory); a directory model is extracted into the directory ``dest``."""
        path = f"{self.path}/models/{segment(name)}/versions/{segment(str(version))}/download"
        response = self.http.request("GET", path, timeout=600.0)
        target = Path(dest)
        if response.headers.get("content-type", "").startswith("application/zip"):
            target.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
                root = target.resolve()
                for member in archive.namelist():
                    if not (root / member).resolve().is_relative_to(root):
                        raise ValueError(f"refusing to extract {member!r} outside {target}")
                archive.extractall(target)
            return target
        if target.is_dir():
            target = target / self.model(name, version).raw["files"][0]["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(response.content)
        return target

    # --- datasets --------------------------------------------------------------------------

    def register_dataset(
        self, name: str, path: str | Path, timestamp_column: str | None = None, description: str = ""
    ) -> Dataset:
        """Register a CSV or Parquet file as the next version of dataset ``name``."""
        source = Path(path)
        data: dict[str, str] = {}
        if timestamp_column is not None:
            data["timestampColumn"] = timestamp_column
        if description:
            data["description"] = description
        with source.open("rb") as handle:
            response = self.http.request(
                "POST",
                f"{self.path}/datasets/{segment(name)}/versions",
                files={"file": (source.name, handle, "application/octet-stream")},
                data=data,
                timeout=600.0,
            )
        return Dataset.from_json(response.json())

    def datasets(self, name: str | None = None) -> list[Dataset]:
        return [Dataset.from_json(d) for d in self.http.pages(f"{self.path}/datasets", {"name": name})]

    def dataset(self, name: str, version: int | str) -> Dataset:
        return Dataset.from_json(
            self.http.call("GET", f"{self.path}/datasets/{segment(name)}/versions/{segment(str(version))}")
        )

    # --- data-drift monitors ---------------------------------------------------------------

    def create_drift_monitor(
        self,
        name: str,
        baseline_dataset_id: str | Dataset,
        target_dataset_id: str | Dataset,
        features: Sequence[str] | None = None,
        frequency: str = "Day",
        latency: float = 0,
        threshold: float = 0.2,
        schedule_enabled: bool = False,
        false_alarm_rate: float | None = None,
    ) -> DriftMonitor:
        """Create (or replace) a data-drift monitor comparing windows of the target dataset
        (it needs a timestamp column) with the baseline; ``latency`` is in hours.
        ``false_alarm_rate`` turns on the calibrated decision (the share of no-drift windows
        that alarm, e.g. 0.05); ``None``, the default, decides by ``threshold`` alone (the
        Azure-style coefficient cut)."""
        body = drift_api.monitor_body(
            baseline_dataset_id.id if isinstance(baseline_dataset_id, Dataset) else baseline_dataset_id,
            target_dataset_id.id if isinstance(target_dataset_id, Dataset) else target_dataset_id,
            features, frequency, latency, threshold, schedule_enabled, false_alarm_rate,
        )
        return drift_api.create_monitor(self.http, self.path, name, body)

    def drift_monitor(self, name: str) -> DriftMonitor:
        return drift_api.get_monitor(self.http, self.path, name)

    def drift_monitors(self) -> list[DriftMonitor]:
        return drift_api.list_monitors(self.http, self.path)

    def delete_drift_monitor(self, name: str) -> None:
        self.http.request("DELETE", f"{self.path}/datadrifts/{segment(name)}")

    # --- connectors (an MLflow tracking server) ---------------------------------------------

    def create_mlflow_connector(
        self,
        name: str,
        tracking_uri: str,
        *,
        token: str | None = None,
        poll_interval_seconds: float | None = None,
        full_sweep_minutes: float | None = None,
        experiments: Sequence[str] | None = None,
        deployment_aliases: Sequence[str] | None = None,
        webhook_secret: str | None = None,
        backfill: bool | None = None,
        intake: str | None = None,
        database_url: str | None = None,
    ) -> Connector:
        """Create (or replace) a connector that turns the MLflow server's runs, model versions
        and aliases into this workspace's events (``docs/mlflow.md``). ``intake="outbox"`` with
        ``database_url`` (MLflow's database) drains the outbox plugin's table instead of polling."""
        body = connector_api.mlflow_body(
            tracking_uri, token=token, poll_interval_seconds=poll_interval_seconds,
            full_sweep_minutes=full_sweep_minutes, experiments=experiments,
            deployment_aliases=deployment_aliases, webhook_secret=webhook_secret, backfill=backfill,
            intake=intake, database_url=database_url,
        )
        return connector_api.create(self.http, self.path, name, body)

    def connector(self, name: str) -> Connector:
        return connector_api.get(self.http, self.path, name)

    def connectors(self) -> list[Connector]:
        return connector_api.list_all(self.http, self.path)

    def delete_connector(self, name: str) -> None:
        self.http.request("DELETE", connector_api.connector_path(self.path, name))

    # --- endpoints (model deployments) -----------------------------------------------------

    def deploy(
        self,
        name: str,
        models: Sequence[str | ModelVersion] = (),
        compute_type: str = "Local",
        entry_script: str | Path | None = None,
        tags: Mapping[str, Any] | None = None,
        properties: Mapping[str, str] | None = None,
        wait: bool = True,
        timeout: float = 120.0,
        *,
        startup_timeout: float | None = None,
        if_match: str | None = None,
    ) -> Endpoint:
        """Deploy model versions (``"name:version"`` or ``ModelVersion``) to the endpoint
        ``name`` (created, or redeployed). ``entry_script``: a local file (sent with the
        request), a path inside a deployed model, or None. With ``wait`` this returns once the
        endpoint is ``Healthy`` and raises ``DeploymentFailed`` (with the scoring log) if it
        ends ``Failed`` or ``TimeoutError`` after ``timeout`` seconds."""
        return deploy_endpoint(
            self.http,
            self.path,
            name,
            models,
            compute_type,
            entry_script,
            tags,
            properties,
            wait=wait,
            timeout=timeout,
            startup_timeout=startup_timeout,
            if_match=if_match,
        )

    def endpoint(self, name: str) -> Endpoint:
        return get_endpoint(self.http, self.path, name)

    def endpoints(self) -> list[Endpoint]:
        return list_endpoints(self.http, self.path)

    # --- event subscriptions on the workspace's system topic -------------------------------

    def create_subscription(
        self,
        name: str,
        endpoint: str | None = None,
        endpoint_type: str = "WebHook",
        included_event_types: Sequence[str] | None = None,
        subject_begins_with: str | None = None,
        subject_ends_with: str | None = None,
        advanced_filters: Iterable[AdvancedFilter | Mapping[str, Any]] | None = None,
        event_delivery_schema: str | None = None,
        max_delivery_attempts: int | None = None,
        event_ttl: int | None = None,
        dead_letter_container: str | None = None,
        labels: Sequence[str] | None = None,
        *,
        destination_properties: Mapping[str, Any] | None = None,
        max_events_per_batch: int | None = None,
    ) -> SubscriptionInfo:
        """Create or replace an event subscription on this workspace's events (Owner or
        Contributor). ``endpoint`` is the webhook URL (``endpoint_type="WebHook"``) or the
        ``url`` of a Redis/NATS/RabbitMQ destination; a ``Queue`` subscription needs none and
        is read with ``receive``. ``event_ttl`` is in minutes."""
        properties = event_subscription_properties(
            endpoint=endpoint,
            endpoint_type=endpoint_type,
            included_event_types=included_event_types,
            subject_begins_with=subject_begins_with,
            subject_ends_with=subject_ends_with,
            advanced_filters=None if advanced_filters is None else [filter_json(f) for f in advanced_filters],
            event_delivery_schema=event_delivery_schema,
            max_delivery_attempts=max_delivery_attempts,
            event_ttl=event_ttl,
            deadletter_container=dead_letter_container,
            labels=labels,
            max_events_per_batch=max_events_per_batch,
            destination_properties=destination_properties,
        )
        body = self.http.call(
            "PUT",
            f"{self.path}/eventSubscriptions/{segment(name)}",
            {"properties": properties},
            timeout=90.0,
        )
        return SubscriptionInfo.from_json(body)

    def subscription(self, name: str) -> SubscriptionInfo:
        return SubscriptionInfo.from_json(
            self.http.call("GET", f"{self.path}/eventSubscriptions/{segment(name)}")
        )

    def subscriptions(self) -> list[SubscriptionInfo]:
        return [SubscriptionInfo.from_json(s) for s in self.http.pages(f"{self.path}/eventSubscriptions")]

    def delete_subscription(self, name: str) -> None:
        self.http.request("DELETE", f"{self.path}/eventSubscriptions/{segment(name)}")

    def receive(self, subscription: str, max_events: int = 10, max_wait: float = 5) -> list[PulledEvent]:
        """Pull events from a ``Queue`` subscription: ``[{"brokerProperties": {"lockToken",
        "deliveryCount"}, "event": {...}}]`` (long poll up to ``max_wait`` seconds)."""
        body = self.http.call(
            "POST",
            f"{self.path}/eventsubscriptions/{segment(subscription)}:receive",
            params={"maxEvents": max_events, "maxWaitTime": int(max_wait)},
            timeout=max_wait + 30,
        )
        return [PulledEvent.from_json(e) for e in (body or {}).get("value", [])]

    def acknowledge(self, subscription: str, lock_tokens: Sequence[str]) -> LockResult:
        path = f"{self.path}/eventsubscriptions/{segment(subscription)}:acknowledge"
        return LockResult.from_json(self.http.call("POST", path, {"lockTokens": list(lock_tokens)}) or {})

    def release(
        self, subscription: str, lock_tokens: Sequence[str], delay_seconds: int = 0
    ) -> LockResult:
        """Give received events back (redelivered after ``delay_seconds``: 0, 10, 60, 600, 3600)."""
        path = f"{self.path}/eventsubscriptions/{segment(subscription)}:release"
        params = {"releaseDelayInSeconds": delay_seconds}
        body = self.http.call("POST", path, {"lockTokens": list(lock_tokens)}, params=params)
        return LockResult.from_json(body or {})

    def reject(self, subscription: str, lock_tokens: Sequence[str]) -> LockResult:
        """Refuse received events: they are dead-lettered (or dropped)."""
        path = f"{self.path}/eventsubscriptions/{segment(subscription)}:reject"
        return LockResult.from_json(self.http.call("POST", path, {"lockTokens": list(lock_tokens)}) or {})

    def events(self, event_type: str | None = None, since: str | None = None) -> list[dict[str, Any]]:
        """The retained events of the workspace's system topic, oldest first."""
        path = f"/systemTopics/{segment(self.name)}/events"
        return list(self.http.pages(path, {"eventType": event_type, "since": since}))

    # --- role assignments ------------------------------------------------------------------

    def assign_role(self, principal: str, role: str) -> RoleAssignment:
        return RoleAssignment.from_json(
            self.http.call("PUT", f"{self.path}/roleAssignments/{segment(principal)}", {"role": role})
        )

    def remove_role(self, principal: str) -> None:
        self.http.request("DELETE", f"{self.path}/roleAssignments/{segment(principal)}")

    def role_assignments(self) -> list[RoleAssignment]:
        body = self.http.call("GET", f"{self.path}/roleAssignments")
        return [RoleAssignment.from_json(r) for r in body["value"]]
