"""The one ``Settings`` object of a running server.

One table (``SETTINGS``) of (name, default, help) drives the ``mlgrid serve`` flags, the
``MLGRID_*`` environment variables, ``docs/configuration.md`` and validation. Settings are
built once (``Settings.from_sources``) and passed explicitly; nothing reads ``os.environ``
anywhere else. Tests pass their own mapping instead of patching the environment.
"""

from __future__ import annotations

import dataclasses
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
    kind: str = "str"  # str | int | float | bool | schedule | path

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
    SettingSpec("deny_private_endpoints", False, "Refuse webhook endpoints on loopback and private "
                "address ranges (link-local and cloud-metadata addresses are always refused).", "bool"),
    SettingSpec("webhook_validation", True, "Run the subscription validation handshake for WebHook "
                "destinations. Turn off only for development.", "bool"),
    SettingSpec("public_url", "", "Base URL under which clients reach this server (used in validation "
                "URLs and topic endpoints). Empty: http://HOST:PORT."),
    SettingSpec("subscription_id", "", "Azure-style subscription id used in resource ids. Empty: the UUID "
                "chosen when the data directory was created."),
    SettingSpec("secret_key", "", "Key that encrypts topic keys and subscription secrets at rest. Empty: "
                "read or create `<data-dir>/secret.key`. Several nodes on one database must share it."),
    SettingSpec("node_id", "", "Name of this node in delivery leases. Empty: hostname and process id."),
    SettingSpec("log_level", "info", "Log level: debug, info, warning or error."),
    SettingSpec("ui", True, "Serve the web UI at /.", "bool"),
    SettingSpec("sqlite_synchronous", "normal", "SQLite durability: normal (a committed write survives "
                "a process crash; the last ones may be lost on power loss or an OS crash) or full (every "
                "commit is flushed to disk and survives power loss; publishing costs more, see "
                "docs/performance.md)."),
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
    ui: bool = True
    sqlite_synchronous: str = "normal"

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
        values["sqlite_synchronous"] = values["sqlite_synchronous"].strip().lower()
        if values["sqlite_synchronous"] not in {"normal", "full"}:
            raise invalid("sqlite_synchronous", "must be normal or full")
        if not 0 < values["port"] < 65536:
            raise invalid("port", "must be between 1 and 65535")
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
        return f"http://{host}:{self.port}"

    @property
    def is_custom_retry_schedule(self) -> bool:
        return self.retry_schedule != DEFAULT_RETRY_SCHEDULE


def new_subscription_id() -> str:
    return str(uuid.uuid4())


def spec_for(name: str) -> SettingSpec:
    return _SPEC_BY_NAME[name]
