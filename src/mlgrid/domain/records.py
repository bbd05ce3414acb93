"""What the store reads back, as services and routes see it: frozen values, aware datetimes.

``store/`` builds these from rows; services return them; ``api/`` turns them into JSON. They live
here rather than in ``store/`` so that a route can name what it renders without importing the
layer that holds the SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    event_seq: int
    subscription_id: str
    state: str
    attempts: int
    next_attempt_at: datetime
    claimed_by: str | None
    lease_until: datetime | None
    lock_token: str | None
    last_outcome: str | None
    last_http_status: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    final_reason: str | None
    created_at: datetime
    finished_at: datetime | None
    last_duration_ms: int | None = None
    last_response: str | None = None


@dataclass(frozen=True)
class DeadLetterRow:
    id: str
    subscription_id: str
    delivery_id: int | None
    event_id: str
    reason: str
    record: str
    blob_path: str | None
    created_at: datetime
    redelivered_at: datetime | None


@dataclass(frozen=True)
class MonitorRow:
    id: str
    workspace_key: str
    name: str
    baseline_dataset_id: str
    target_dataset_id: str
    features: list[str] | None
    frequency: str
    latency_hours: float
    threshold: float
    schedule_enabled: bool
    schedule_since: datetime | None
    etag: str
    created_at: datetime
    updated_at: datetime
    false_alarm_rate: float | None = None

    @property
    def name_key(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class DriftRunRow:
    id: str
    monitor_id: str
    workspace_key: str
    window_start: datetime
    window_end: datetime
    coefficient: float | None
    reason: str | None
    threshold: float
    feature_contributions: dict[str, Any]
    feature_metrics: dict[str, Any]
    row_counts: dict[str, Any]
    skipped_features: dict[str, Any]
    rows_compared: int
    baseline_dataset_id: str
    target_dataset_id: str
    monitor_etag: str
    trigger: str
    event_published: bool
    event_id: str | None
    created_at: datetime
    auroc: float | None = None
    p_value: float | None = None
    classifier_p_value: float | None = None
    false_alarm_rate: float | None = None
    feature_tests: list[dict[str, Any]] = field(default_factory=list)
    explanation: str | None = None
    null_rows: int = 0
    null_draws: int = 0


@dataclass(frozen=True)
class MetricRow:
    name: str
    step: int
    value: str
    time: datetime


@dataclass(frozen=True)
class ArtifactRow:
    workspace_key: str
    run_id: str
    path: str
    size: int
    sha256: str
    created_at: datetime


@dataclass(frozen=True)
class ConnectorRow:
    id: str
    workspace_key: str
    name: str
    kind: str
    tracking_uri: str
    token_sealed: str | None
    webhook_secret_sealed: str | None
    poll_interval: float
    full_sweep_minutes: float
    experiments: list[str] | None
    deployment_aliases: list[str]
    backfill: bool
    paused: bool
    etag: str
    created_at: datetime
    updated_at: datetime
    state: str = "Starting"
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_poll_at: datetime | None = None
    last_full_sweep_at: datetime | None = None
    synced: bool = False
    watermark_ms: int | None = None
    events_emitted: int = 0
    resync_requested: bool = False
    lease_holder: str | None = None
    lease_until: datetime | None = None
    intake: str = "polling"
    database_url_sealed: str | None = None

    @property
    def name_key(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of a delivery as the operator sees it (``delivery_attempts``, or the
    delivery row's ``last_*`` columns for the latest); ``attempted_at`` in epoch seconds and
    ``response`` the JSON of what the endpoint answered."""

    attempt: int
    outcome: str | None
    http_status: int | None
    error: str | None
    attempted_at: float
    duration_ms: int | None
    response: str | None
