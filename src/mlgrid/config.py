"""The one ``Settings`` object of a running server.

One table (``SETTINGS``) of (name, default, help) drives the ``mlgrid serve`` flags, the
``MLGRID_*`` environment variables, ``docs/configuration.md`` and validation. Settings are
built once (``Settings.from_sources``) and passed explicitly; nothing reads ``os.environ``
anywhere else. Tests pass their own mapping instead of patching the environment.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlgrid.errors import invalid

DEFAULT_RETRY_SCHEDULE: tuple[float, ...] = (
    10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0, 21600.0, 43200.0,
)


@dataclass(frozen=True)
class SettingSpec:
    """One row of the settings table."""

    name: str
    default: Any
    help: str
    kind: str = "str"  # str | int | float | bool | schedule | path; a bool defaulting to None is "auto"

    @property
    def env_var(self) -> str:
        return "MLGRID_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("host", "127.0.0.1", "Address the HTTP server binds to."),
    SettingSpec("port", 8780, "Port of the HTTP server (API, publish endpoints and web UI).", "int"),
    SettingSpec("data_dir", "./.mlgrid", "Directory for the SQLite database, admin token, secret key, "
                "dead-letter blobs and workspace files.", "path"),
    SettingSpec("database_url", "", "SQLAlchemy URL of the database. Empty: a SQLite file in the data "
                "directory. postgresql://user@host/db to share one PostgreSQL between several nodes."),
    SettingSpec("retry_schedule", "", "Delivery retry delays in seconds, comma separated; the last step "
                "repeats. Empty: Azure's schedule (10s, 30s, 1m, 5m, 10m, 30m, 1h, 3h, 6h, then 12h).",
                "schedule"),
    SettingSpec("deny_private_endpoints", None, "Refuse webhook and queue endpoints on loopback and "
                "private address ranges (link-local and cloud-metadata addresses are always refused). "
                "Default `auto`: refused when the server listens on a non-loopback address (anyone who "
                "may create a subscription could otherwise make the server call its own network), "
                "allowed when it listens on loopback only (development).", "bool"),
    SettingSpec("webhook_validation", True, "Run the subscription validation handshake for WebHook "
                "destinations. Turn off only for development.", "bool"),
    SettingSpec("public_url", "", "Base URL under which clients reach this server (used in validation "
                "URLs and topic endpoints). Empty: http://HOST:PORT."),
    SettingSpec("subscription_id", "", "Azure-style subscription id used in resource ids. Empty: the UUID "
                "chosen when the data directory was created."),
    SettingSpec("secret_key", "", "Key that encrypts topic keys and subscription secrets at rest. Empty: "
                "read or create `<data-dir>/secret.key`. Several nodes on one database must share it."),
    SettingSpec("node_id", "", "Prefix of this node's id in leases and the `nodes` table (a random suffix "
                "is added at every start, so a restarted or reused process id is never taken for the old "
                "process). Empty: the host name."),
    SettingSpec("log_level", "info", "Log level: debug, info, warning or error."),
    SettingSpec("otlp_endpoint", "", "OpenTelemetry collector to export traces to over OTLP/HTTP (e.g. "
                "http://127.0.0.1:4318): spans for publish, routing, delivery attempts and workspace "
                "changes, linked by `traceparent`. Empty: no tracing, nothing exported."),
    SettingSpec("ui", True, "Serve the web UI at /.", "bool"),
    SettingSpec("unsafe_local_code", False, "Run job commands, entry scripts and models as the server's "
                "own user when no containment is available (not root, no bubblewrap). UNSAFE: that code can "
                "read the server's secrets. Without it, such a server refuses to run user code.", "bool"),
    SettingSpec("code_memory_limit_mb", 0, "Memory limit (MiB of address space, per process) of job "
                "commands and scoring processes, and the most a job may ask for (`resources.memoryMb`). "
                "0: no limit.", "int"),
    SettingSpec("job_cpu_seconds", 0, "CPU time limit (seconds, per process) of job commands, and the "
                "most a job may ask for (`resources.cpuSeconds`); a process beyond it is killed. 0: no "
                "limit.", "int"),
    SettingSpec("job_network", "api", "Network of a job that does not choose one (`network`): api (a "
                "network namespace of its own with only loopback, on which the server's API is relayed at "
                "127.0.0.1:PORT), none (the same without the API) or host (the host's network: every "
                "service the host reaches, loopback included)."),
    SettingSpec("job_code_max_mb", 300, "Largest code snapshot (MB, unpacked) a job may upload with "
                "`job submit --code`; more is refused with 413 (Azure ML's limit is also 300 MB).", "int"),
    SettingSpec("header_timeout", 10.0, "Seconds a client has to send a complete request head (request "
                "line and headers) after it connects or starts a request; then the connection is closed.",
                "float"),
    SettingSpec("body_timeout", 30.0, "Seconds a request body may go without a byte arriving (while the "
                "server is reading it); then the connection is closed.", "float"),
    SettingSpec("max_connections", 2048, "Open HTTP connections the server accepts at once; more are closed "
                "at once. Keep it below the process's file descriptor limit.", "int"),
    SettingSpec("metrics_require_token", None, "Whether GET /metrics needs a principal's bearer token (its "
                "labels name topics and subscriptions). Default `auto`: required when the server listens on "
                "a non-loopback address, open on loopback (a local Prometheus scrapes without one).", "bool"),
    SettingSpec("tls_certfile", "", "PEM certificate (chain) to serve https with; needs --tls-keyfile. "
                "Empty: plain http."),
    SettingSpec("tls_keyfile", "", "PEM private key of --tls-certfile."),
    SettingSpec("tls_self_signed", False, "Serve https with a self-signed certificate for 127.0.0.1 and "
                "localhost, generated once into `<data-dir>/tls/` (development; clients trust it with "
                "MLGRID_CA_BUNDLE=<data-dir>/tls/cert.pem).", "bool"),

    SettingSpec("blob_url", "", "Where workspace files and dead letters are stored. Empty: the data "
                "directory (`workspaces/`, `blobs/`). Otherwise Azure Blob Storage: a connection string "
                "(`DefaultEndpointsProtocol=...;AccountKey=...`), or an account URL "
                "(`https://ACCOUNT.blob.core.windows.net`, with --blob-key or a SAS token in its query). "
                "Containers are created when missing. Secret: prefer the environment variable."),
    SettingSpec("blob_key", "", "Account key for an account URL in --blob-url (never logged; prefer "
                "MLGRID_BLOB_KEY)."),
    SettingSpec("blob_container", "mlgrid", "Blob container of workspace files (artifacts, job logs, "
                "models, datasets); dead letters go to each subscription's own container. With the "
                "data directory it is `<data-dir>/workspaces`."),

    SettingSpec("advertise_url", "", "URL other nodes on the same PostgreSQL database reach this node at "
                "(scoring requests for the endpoints it serves are forwarded there). Empty: "
                "http://HOST:PORT, with 127.0.0.1 for a wildcard HOST."),
    SettingSpec("node_timeout", 8.0, "Seconds without a heartbeat after which another node declares a node "
                "dead (PostgreSQL) and frees its delivery claims and leases; every background duty is taken "
                "over within about this time.", "float"),
    SettingSpec("heartbeat_interval", 2.0, "Seconds between a node's heartbeats (PostgreSQL); must be well "
                "under --node-timeout.", "float"),
    SettingSpec("sqlite_synchronous", "normal", "SQLite durability: normal (a committed write survives "
                "a process crash; the last ones may be lost on power loss or an OS crash) or full (every "
                "commit is flushed to disk and survives power loss; publishing costs more, see "
                "docs/performance.md)."),
    SettingSpec("delivery_window", 10_000, "SQLite: pending deliveries the dispatcher holds in memory (the "
                "earliest due); the rest of the backlog waits in the database and is read a page at a time. "
                "Bounds the server's memory whatever the backlog (about 1 KB each, see docs/performance.md).",
                "int"),
)

_SPEC_BY_NAME = {spec.name: spec for spec in SETTINGS}


def parse_schedule(text: str) -> tuple[float, ...]:
    """Parse ``"0.1,0.2,0.5"`` into delays in seconds; empty means Azure's schedule."""
    if not text.strip():
        return DEFAULT_RETRY_SCHEDULE
    steps: list[float] = []
    for part in text.split(","):
        try:
            value = float(part.strip())
        except ValueError as exc:
            raise invalid("retry_schedule", f"{part!r} is not a number of seconds") from exc
        if value < 0 or value != value:
            raise invalid("retry_schedule", "delays must be non-negative numbers")
        steps.append(value)
    return tuple(steps)


def _coerce(spec: SettingSpec, value: Any) -> Any:
    automatic = spec.kind == "bool" and spec.default is None
    if automatic and (value is None or str(value).strip().lower() == "auto"):
        return None  # decided from the bind address (see ``Settings.from_sources``)
    if spec.kind == "float":
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise invalid(spec.name, f"{value!r} is not a number") from exc
        if not number > 0 or number == float("inf"):
            raise invalid(spec.name, "must be a positive number of seconds")
        return number
    if spec.kind == "int":
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise invalid(spec.name, f"{value!r} is not an integer") from exc
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off", ""}:
            return False
        raise invalid(spec.name, f"{value!r} is not a boolean")
    if spec.kind == "path":
        return Path(str(value)).expanduser()
    if spec.kind == "schedule":
        return value if isinstance(value, tuple) else parse_schedule(str(value))
    return str(value)


@dataclass(frozen=True)
class Settings:
    """Everything a server process is configured with. Immutable; pass it explicitly."""

    host: str = "127.0.0.1"
    port: int = 8780
    data_dir: Path = field(default_factory=lambda: Path("./.mlgrid"))
    database_url: str = ""
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    deny_private_endpoints: bool = False
    webhook_validation: bool = True
    public_url: str = ""
    subscription_id: str = ""
    secret_key: str = field(default="", repr=False)
    node_id: str = ""
    log_level: str = "info"
    otlp_endpoint: str = ""
    ui: bool = True
    unsafe_local_code: bool = False
    code_memory_limit_mb: int = 0
    job_cpu_seconds: int = 0
    job_network: str = "api"
    job_code_max_mb: int = 300
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 2048
    metrics_require_token: bool = False
    tls_certfile: str = ""
    tls_keyfile: str = ""
    tls_self_signed: bool = False
    blob_url: str = field(default="", repr=False)
    blob_key: str = field(default="", repr=False)
    blob_container: str = "mlgrid"
    advertise_url: str = ""
    node_timeout: float = 8.0
    heartbeat_interval: float = 2.0

    sqlite_synchronous: str = "normal"
    delivery_window: int = 10_000

    @classmethod
    def from_sources(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings: explicit overrides (CLI flags) win over ``MLGRID_*`` variables,
        which win over defaults. ``None`` in overrides means "not given"."""
        values: dict[str, Any] = {}
        env = environ or {}
        for spec in SETTINGS:
            raw: Any = spec.default
            if spec.env_var in env:
                raw = env[spec.env_var]
            if overrides and overrides.get(spec.name) is not None:
                raw = overrides[spec.name]
            values[spec.name] = _coerce(spec, raw)
        if values["log_level"] not in {"debug", "info", "warning", "error"}:
            raise invalid("log_level", "must be debug, info, warning or error")
        for name in ("code_memory_limit_mb", "job_cpu_seconds"):
            if values[name] < 0:
                raise invalid(name, "must be 0 (no limit) or a positive number")
        values["job_network"] = values["job_network"].strip().lower()
        if values["job_network"] not in {"api", "none", "host"}:
            raise invalid("job_network", "must be api, none or host")
        values["sqlite_synchronous"] = values["sqlite_synchronous"].strip().lower()
        if values["sqlite_synchronous"] not in {"normal", "full"}:
            raise invalid("sqlite_synchronous", "must be normal or full")
        if not 0 < values["port"] < 65536:
            raise invalid("port", "must be between 1 and 65535")
        container = values["blob_container"]
        if not (3 <= len(container) <= 63 and all(c.islower() or c.isdigit() or c == "-" for c in container)
                and container.isascii() and not container.startswith("-") and not container.endswith("-")
                and "--" not in container):
            raise invalid("blob_container", "must be 3-63 lower-case letters, digits and single hyphens "
                          "(Azure's container name rule)")
        if values["blob_key"] and not values["blob_url"]:
            raise invalid("blob_key", "needs --blob-url (an account URL)")
        if values["job_code_max_mb"] < 1:
            raise invalid("job_code_max_mb", "must be at least 1")
        if values["delivery_window"] < 100:
            raise invalid("delivery_window", "must be at least 100")
        if values["max_connections"] < 1:
            raise invalid("max_connections", "must be at least 1")
        if not 0 < values["heartbeat_interval"] <= values["node_timeout"] / 2:
            raise invalid("heartbeat_interval", "must be positive and at most half of node_timeout")
        exposed = not is_loopback_host(values["host"])
        for name in ("deny_private_endpoints", "metrics_require_token"):
            if values[name] is None:
                values[name] = exposed
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'mlgrid.db').resolve()}"

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::", ""} else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def resolved_advertise_url(self) -> str:
        """Where the other nodes reach this one (scoring requests are forwarded there)."""
        if self.advertise_url:
            return self.advertise_url.rstrip("/")
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::", ""} else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls_self_signed or self.tls_certfile else "http"

    @property
    def is_custom_retry_schedule(self) -> bool:
        return self.retry_schedule != DEFAULT_RETRY_SCHEDULE


def is_loopback_host(host: str) -> bool:
    """Whether binding ``host`` listens on loopback only (``0.0.0.0``, ``::`` and names other
    than ``localhost`` do not)."""
    name = host.strip().strip("[]").lower()
    if name in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def new_subscription_id() -> str:
    return str(uuid.uuid4())


def spec_for(name: str) -> SettingSpec:
    return _SPEC_BY_NAME[name]
