"""SQLAlchemy Core tables of the broker.

Times are stored as float seconds since the epoch (UTC) in both databases: it is exact enough
(microseconds), sorts and compares natively, and avoids SQLite's lack of time zones. The
rows are turned into frozen dataclasses with timezone-aware datetimes in ``store/records.py``.
Event bodies are stored as JSON text, exactly as serialised at ingest, so numbers keep every
digit the publisher sent.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BIGINT autoincrement keys: INTEGER PRIMARY KEY on SQLite (the rowid), BIGSERIAL-like elsewhere.
BigId = BigInteger().with_variant(Integer, "sqlite")

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

principals = Table(
    "principals",
    metadata,
    Column("name_key", String(64), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("token_hash", String(128), nullable=False, unique=True),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
)

role_assignments = Table(
    "role_assignments",
    metadata,
    Column("scope_kind", String(16), primary_key=True),  # "topic" | "workspace"
    Column("scope_key", String(64), primary_key=True),
    Column("principal_key", String(64), primary_key=True),
    Column("role", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
)

topics = Table(
    "topics",
    metadata,
    Column("name_key", String(64), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # "custom" | "system"
    Column("resource_group", String(90), nullable=False),
    Column("input_schema", String(32), nullable=False),
    Column("input_schema_mapping", Text, nullable=True),
    Column("retention_days", Integer, nullable=False),
    Column("key1_sealed", Text, nullable=False),
    Column("key2_sealed", Text, nullable=False),
    Column("etag", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("topic_key", String(64), nullable=False),
    Column("event_id", String(256), nullable=False),
    Column("event_type", String(256), nullable=False),
    Column("subject", Text, nullable=False),
    Column("published_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    # W3C trace context of the workspace change that emitted the event (migration 0020); NULL
    # when tracing is off and for published events (a CloudEvent carries its own).
    Column("traceparent", String(128), nullable=True),
    UniqueConstraint("topic_key", "event_id"),
    # Listing, replay and retention read one topic's events by (published_at, seq): keyset
    # pages and bounded delete batches are each one range of this index (migration 0019).
    Index("ix_events_topic_published_seq", "topic_key", "published_at", "seq"),
    # Never reuse a seq after deletes: caches and cursors key on it.
    sqlite_autoincrement=True,
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("topic_key", String(64), nullable=False),
    Column("name_key", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("endpoint_type", String(32), nullable=False),
    Column("properties", Text, nullable=False),  # ARM properties without secrets
    Column("secrets_sealed", Text, nullable=True),  # sealed JSON: endpointUrl, header values, ...
    Column("provisioning_state", String(32), nullable=False),
    Column("validation_code", String(64), nullable=True),
    Column("validation_expires_at", Float, nullable=True),
    Column("expires_at", Float, nullable=True),
    Column("etag", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("topic_key", "name_key"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_seq", BigInteger, ForeignKey("events.seq", ondelete="CASCADE"), nullable=False),
    Column("subscription_id", String(36), nullable=False),
    # pending | delivered | deadLettered | dropped
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    # Attempts counted when they start (before the request goes out); ``attempts`` counts those
    # that finished. A delivery resumed after a crash continues from the larger.
    Column("attempts_started", Integer, nullable=False, default=0, server_default="0"),
    Column("next_attempt_at", Float, nullable=False),
    Column("claimed_by", String(128), nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("lock_token", String(64), nullable=True),
    Column("last_outcome", String(64), nullable=True),
    Column("last_http_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_attempt_at", Float, nullable=True),
    Column("final_reason", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    # The last attempt as the operator sees it: how long it took, and (when it failed) what
    # the endpoint answered, bounded (headers and the first 4 KB of the body, as JSON).
    Column("last_duration_ms", Integer, nullable=True),
    Column("last_response", Text, nullable=True),
    Index("ix_deliveries_due", "state", "next_attempt_at"),
    # A subscription's deliveries, paged by id, with or without a state (migration 0019).
    Index("ix_deliveries_subscription_state_id", "subscription_id", "state", "id"),
    Index("ix_deliveries_subscription_id", "subscription_id", "id"),
    # One subscription's backlog in due order: the SQLite dispatcher reloads a subscription
    # whose work it had left in the store while the subscription's endpoint was saturated.
    Index("ix_deliveries_subscription_due", "subscription_id", "state", "next_attempt_at"),
    Index("ix_deliveries_event", "event_seq"),
    Index("ix_deliveries_lock_token", "lock_token"),
    sqlite_autoincrement=True,
)

# Every attempt of a delivery that was followed by another (a failure that was retried); the
# delivery row's last_* columns hold the latest attempt. At most MAX_ATTEMPT_HISTORY per delivery.
delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("delivery_id", BigId, ForeignKey("deliveries.id", ondelete="CASCADE"), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("outcome", String(64), nullable=True),
    Column("http_status", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("attempted_at", Float, nullable=False),
    Column("duration_ms", Integer, nullable=True),
    Column("response", Text, nullable=True),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("subscription_id", String(36), nullable=False),
    Column("delivery_id", BigInteger, nullable=True),
    Column("event_id", String(256), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("record", Text, nullable=False),
    Column("blob_path", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("redelivered_at", Float, nullable=True),
    Index("ix_dead_letters_subscription_created_id", "subscription_id", "created_at", "id"),
)

# --- The ML workspace (SPEC §9). Files (artifacts, model files, dataset files) live under
# <data-dir>/workspaces/<workspace>/...; these tables hold their metadata.

workspaces = Table(
    "workspaces",
    metadata,
    Column("name_key", String(64), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("resource_group", String(90), nullable=False),
    Column("run_status_changed_events", String(16), nullable=False),  # "failed" | "all"
    Column("etag", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

experiments = Table(
    "experiments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("workspace_key", String(64), nullable=False),
    Column("name_key", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("workspace_key", "name_key"),
)

runs = Table(
    "runs",
    metadata,
    Column("workspace_key", String(64), primary_key=True),
    Column("id", String(128), primary_key=True),
    Column("experiment_id", String(36), nullable=False),
    Column("status", String(32), nullable=False),
    Column("run_type", String(128), nullable=True),
    Column("tags", Text, nullable=False),  # JSON object
    Column("properties", Text, nullable=False),  # JSON object of strings
    Column("error", Text, nullable=True),
    Column("etag", String(64), nullable=False),
    Column("version", Integer, nullable=False),  # compare-and-swap counter, +1 per change
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("start_time", Float, nullable=True),
    Column("end_time", Float, nullable=True),
    # Submitted jobs only: what runs, where, on which node, and how it ended.
    Column("job_command", Text, nullable=True),
    Column("job_working_directory", Text, nullable=True),
    Column("job_pid", Integer, nullable=True),
    Column("job_exit_code", Integer, nullable=True),
    Column("job_node", String(255), nullable=True),
    Column("job_heartbeat_at", Float, nullable=True),
    Index("ix_runs_workspace_experiment", "workspace_key", "experiment_id", "created_at"),
    Index("ix_runs_workspace_created", "workspace_key", "created_at"),
    Index("ix_runs_status", "status"),
)

run_metrics = Table(
    "run_metrics",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("workspace_key", String(64), nullable=False),
    Column("run_id", String(128), nullable=False),
    Column("name", String(255), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("value", Text, nullable=False),  # the number's exact decimal text
    Column("time", Float, nullable=False),
    Index("ix_run_metrics_run", "workspace_key", "run_id", "name", "step"),
)

run_artifacts = Table(
    "run_artifacts",
    metadata,
    Column("workspace_key", String(64), primary_key=True),
    Column("run_id", String(128), primary_key=True),
    Column("path", String(1024), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
)

models = Table(
    "models",
    metadata,
    Column("workspace_key", String(64), primary_key=True),
    Column("name_key", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("name", String(64), nullable=False),
    Column("tags", Text, nullable=False),
    Column("properties", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("run_id", String(128), nullable=True),
    Column("artifact_path", String(1024), nullable=True),
    Column("is_directory", Boolean, nullable=False),
    Column("files", Text, nullable=False),  # JSON list of {"path", "size", "sha256"}
    Column("etag", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
)

datasets = Table(
    "datasets",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("workspace_key", String(64), nullable=False),
    Column("name_key", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("file_format", String(16), nullable=False),  # "csv" | "parquet"
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("columns", Text, nullable=False),  # JSON list of {"name", "dtype"}
    Column("row_count", BigInteger, nullable=False),
    Column("timestamp_column", String(255), nullable=True),
    Column("description", Text, nullable=False),
    Column("etag", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("workspace_key", "name_key", "version"),
)

workspace_counters = Table(
    "workspace_counters",
    metadata,
    # Per-object counters: event Sequencers ("run", "model", "endpoint", "datadrift") and
    # version numbers ("model-version", "dataset-version"). Incremented with one upsert, so
    # the row lock orders concurrent writers on PostgreSQL.
    Column("workspace_key", String(64), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("object_key", String(255), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

endpoints = Table(
    "endpoints",
    metadata,
    # Model deployments (SPEC §9): the requested definition (``models`` ... ``startup_timeout``,
    # bumped ``generation`` per PUT) and, in ``active_*``, the deployment that serves now; a
    # failed redeploy leaves the previous one serving. See ``workspace/endpoints.py``.
    Column("workspace_key", String(64), primary_key=True),
    Column("name_key", String(64), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("compute_type", String(32), nullable=False),
    Column("models", Text, nullable=False),  # JSON list of "name:version"
    Column("entry_script", Text, nullable=True),  # JSON: the entryScript as given
    Column("tags", Text, nullable=False),
    Column("properties", Text, nullable=False),
    Column("startup_timeout", Float, nullable=False),
    Column("state", String(16), nullable=False),  # Deploying | Healthy | Unhealthy | Failed
    Column("generation", Integer, nullable=False),
    Column("deployment_id", String(36), nullable=False),  # of the latest requested deployment
    Column("active_deployment_id", String(36), nullable=True),
    Column("active_models", Text, nullable=True),
    Column("active_entry_script", Text, nullable=True),
    Column("scoring_port", Integer, nullable=True),
    Column("scoring_uri", String(255), nullable=True),
    Column("pid", Integer, nullable=True),
    Column("node", String(255), nullable=True),
    Column("error", Text, nullable=True),
    Column("etag", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("deployed_at", Float, nullable=True),
)

drift_monitors = Table(
    "drift_monitors",
    metadata,
    # Data-drift monitors (SPEC §9). ``id`` is the events' DataDriftId; ``schedule_since`` is
    # the scheduler's persisted progress: every window ending at or before it has been dealt
    # with (null until the scheduler's first pass). See ``workspace/drift_monitors.py``.
    Column("id", String(36), primary_key=True),
    Column("workspace_key", String(64), nullable=False),
    Column("name_key", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("baseline_dataset_id", String(36), nullable=False),
    Column("target_dataset_id", String(36), nullable=False),
    Column("features", Text, nullable=True),  # JSON list of column names; null = all usable
    Column("frequency", String(8), nullable=False),  # Day | Week | Month
    Column("latency_hours", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    # null: decide by ``threshold`` alone (monitors created before 0008 keep that rule)
    Column("false_alarm_rate", Float, nullable=True),
    Column("schedule_enabled", Boolean, nullable=False),
    Column("schedule_since", Float, nullable=True),
    Column("etag", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("workspace_key", "name_key"),
    Index("ix_drift_monitors_schedule_enabled", "schedule_enabled"),
)

drift_runs = Table(
    "drift_runs",
    metadata,
    # One analysed window of a monitor. The unique (monitor, window) key is what makes a
    # window analysed once, also when two nodes' schedulers race on PostgreSQL.
    Column("id", String(160), primary_key=True),
    Column("monitor_id", String(36), nullable=False),
    Column("workspace_key", String(64), nullable=False),
    Column("window_start", Float, nullable=False),
    Column("window_end", Float, nullable=False),
    Column("coefficient", Float, nullable=True),
    Column("reason", Text, nullable=True),
    Column("threshold", Float, nullable=False),  # the threshold the window was judged with
    Column("feature_contributions", Text, nullable=False),  # JSON
    Column("feature_metrics", Text, nullable=False),  # JSON
    Column("row_counts", Text, nullable=False),  # JSON
    Column("skipped_features", Text, nullable=False),  # JSON
    Column("rows_compared", Integer, nullable=False),
    Column("baseline_dataset_id", String(36), nullable=False),
    Column("target_dataset_id", String(36), nullable=False),
    Column("monitor_etag", String(64), nullable=False),
    Column("trigger", String(16), nullable=False),  # backfill | schedule
    Column("event_published", Boolean, nullable=False),
    Column("event_id", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
    # The calibrated decision (0008): AUROC, p-values, the rate the window was judged with,
    # the ranked per-feature tests (JSON list) and the one-sentence explanation.
    Column("auroc", Float, nullable=True),
    Column("p_value", Float, nullable=True),
    Column("classifier_p_value", Float, nullable=True),
    Column("false_alarm_rate", Float, nullable=True),
    Column("feature_tests", Text, nullable=False, server_default="[]"),
    Column("explanation", Text, nullable=True),
    Column("null_rows", Integer, nullable=False, server_default="0"),
    Column("null_draws", Integer, nullable=False, server_default="0"),
    UniqueConstraint("monitor_id", "window_start", "window_end"),
    Index("ix_drift_runs_workspace", "workspace_key"),
)

# --- Connectors: sources outside mlgrid (an MLflow tracking server) whose state becomes the
# workspace's events. See ``connectors/``.

connectors = Table(
    "connectors",
    metadata,
    # Configuration (token and webhook secret sealed like topic keys), health, and the lease
    # that makes exactly one node poll a connector (``lease_holder`` until ``lease_until``).
    Column("id", String(36), primary_key=True),
    Column("workspace_key", String(64), nullable=False),
    Column("name_key", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # "MLflow"
    Column("tracking_uri", Text, nullable=False),
    Column("token_sealed", Text, nullable=True),
    Column("webhook_secret_sealed", Text, nullable=True),
    # "polling" (MLflow's REST API) or "outbox" (the plugin's table in MLflow's database, whose
    # URL is sealed like the token; the full sweep stays on as a safety net).
    Column("intake", String(16), nullable=False, server_default="polling"),
    Column("database_url_sealed", Text, nullable=True),
    Column("poll_interval", Float, nullable=False),
    Column("full_sweep_minutes", Float, nullable=False),
    Column("experiments", Text, nullable=True),  # JSON list of names; null = all
    Column("deployment_aliases", Text, nullable=False),  # JSON list
    Column("backfill", Boolean, nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("etag", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("state", String(16), nullable=False),  # Starting | Running | Paused | Failing
    Column("last_error", Text, nullable=True),
    Column("last_error_at", Float, nullable=True),
    Column("last_poll_at", Float, nullable=True),  # last successful poll
    Column("last_full_sweep_at", Float, nullable=True),
    Column("synced", Boolean, nullable=False),  # the first sync (silent unless backfill) is done
    Column("watermark_ms", BigInteger, nullable=True),  # newest MLflow start/end time seen
    Column("events_emitted", BigInteger, nullable=False),
    Column("resync_requested", Boolean, nullable=False),
    Column("lease_holder", String(128), nullable=True),
    Column("lease_until", Float, nullable=True),
    UniqueConstraint("workspace_key", "name_key"),
)

connector_objects = Table(
    "connector_objects",
    metadata,
    # What a connector last saw of each MLflow object (``connectors/observation.py``
    # ``ObjectState``); written in the transaction that emits the object's events.
    Column("connector_id", String(36), primary_key=True),
    Column("object_key", String(600), primary_key=True),
    Column("kind", String(16), nullable=False),  # run | version | alias
    Column("value", Text, nullable=True),
    Column("transitions", Integer, nullable=False),
    Column("emitted", Integer, nullable=False),
    Column("is_open", Boolean, nullable=False),  # a run still RUNNING or SCHEDULED
    Column("updated_at", Float, nullable=False),
    # The last MLflow outbox row applied to the object (intake outbox): a batch drained again
    # after a crash before its DELETE is skipped row by row (per object, ids follow commits).
    Column("outbox_id", BigInteger, nullable=True),
    Index("ix_connector_objects_open", "connector_id", "is_open"),
)

connector_webhook_deliveries = Table(
    "connector_webhook_deliveries",
    metadata,
    # MLflow webhook delivery ids already acted on (MLflow retries resend the same id).
    Column("connector_id", String(36), primary_key=True),
    Column("delivery_id", String(64), primary_key=True),
    Column("received_at", Float, nullable=False),
)

# --- Nodes and leases: several nodes on one PostgreSQL database. See ``store/leases.py``.

nodes = Table(
    "nodes",
    metadata,
    # One row per running server process (a fresh random ``id`` at every start, so a reused
    # PID is never mistaken for the old process). ``last_seen`` is renewed by the heartbeat;
    # a row older than the node timeout is deleted by another node, which then frees the
    # dead node's claims and leases.
    Column("id", String(64), primary_key=True),
    Column("advertise_url", Text, nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
)

leases = Table(
    "leases",
    metadata,
    # Exactly one holder per background duty or scoring endpoint. ``holder`` is a live node
    # (its row exists) or NULL; ``token`` grows by one at every change of holder, and every
    # write made under the lease checks (holder, token) in its own transaction (fencing).
    Column("name", String(255), primary_key=True),
    Column("holder", String(64), nullable=True),
    Column("token", BigInteger, nullable=False),
    Column("acquired_at", Float, nullable=True),
)
