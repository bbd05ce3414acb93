"""Validating a connector's body (``PUT``/``PATCH`` ``/workspaces/{ws}/connectors/{name}``).

Every problem is a 400 naming the field (``properties.pollIntervalSeconds``) and the reason.
``token``, ``webhookSecret`` and ``databaseUrl`` are write-only: accepted here, sealed by the
service, never returned (nor echoed in an error).
A ``PATCH`` body is validated the same way, field by field, over the current values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx

from mlgrid.errors import invalid

KIND_MLFLOW = "MLflow"
MIN_POLL_SECONDS = 1.0
MAX_POLL_SECONDS = 3600.0
DEFAULT_POLL_SECONDS = 10.0
MIN_SWEEP_MINUTES = 1.0
MAX_SWEEP_MINUTES = 7 * 24 * 60.0
DEFAULT_SWEEP_MINUTES = 60.0
DEFAULT_DEPLOYMENT_ALIASES = ("champion",)
MAX_LIST = 100
MAX_SECRET = 4096
INTAKE_POLLING = "polling"
INTAKE_OUTBOX = "outbox"
INTAKES = (INTAKE_POLLING, INTAKE_OUTBOX)
#: Schemes of MLflow's database URL (``mlgrid+...`` is the plugin's own spelling of the same).
DATABASE_SCHEMES = frozenset({"postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2",
                              "postgresql+asyncpg", "sqlite"})
# MLflow's own alias rule: letters, digits, "_" and "-"; "latest" and "v<digits>" are reserved.
_ALIAS = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")
_RESERVED_ALIAS = re.compile(r"^(latest|v\d+)$", re.IGNORECASE)

FIELDS = frozenset(
    {
        "kind",
        "trackingUri",
        "token",
        "pollIntervalSeconds",
        "fullSweepMinutes",
        "experiments",
        "deploymentAliases",
        "webhookSecret",
        "intake",
        "databaseUrl",
        "backfill",
        "paused",
    }
)


@dataclass(frozen=True)
class ConnectorSpec:
    """A connector's configuration; ``token``/``webhook_secret`` are plaintext here (``None``:
    none; the service keeps the sealed value when a PATCH leaves them out)."""

    tracking_uri: str
    token: str | None = None
    webhook_secret: str | None = None
    poll_interval: float = DEFAULT_POLL_SECONDS
    full_sweep_minutes: float = DEFAULT_SWEEP_MINUTES
    experiments: list[str] | None = None
    deployment_aliases: tuple[str, ...] = DEFAULT_DEPLOYMENT_ALIASES
    backfill: bool = False
    paused: bool = False
    intake: str = INTAKE_POLLING
    database_url: str | None = None
    """MLflow's database (intake ``outbox``), plaintext here; sealed at rest."""


def _properties(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object with 'properties'")
    unknown = set(body) - {"properties", "name", "id", "type"}
    if unknown:
        raise invalid(sorted(unknown)[0], "is not a field of a connector")
    properties = body.get("properties")
    if not isinstance(properties, dict):
        raise invalid("properties", "must be an object")
    for name in properties:
        if name not in FIELDS:
            raise invalid(f"properties.{name}", "is not a connector property")
    return properties


def _uri(value: object) -> str:
    field = "properties.trackingUri"
    if not isinstance(value, str) or not value:
        raise invalid(field, "must be an http(s) URL of an MLflow tracking server")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid(field, "must be an http(s) URL of an MLflow tracking server")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise invalid(field, "must not carry a query, fragment or credentials (use 'token')")
    try:
        # What the HTTP client will read: a bad port, a control character or a host that is
        # not a valid (internationalised) name would otherwise fail at the first request.
        url = httpx.URL(value)
        _ = url.host, url.port
    except (httpx.InvalidURL, ValueError) as exc:  # UnicodeError (IDNA) is a ValueError
        raise invalid(field, f"is not a valid URL: {exc}") from None
    return value.rstrip("/")


#: A token is sent in an HTTP header (``Authorization: Bearer ...``), which carries visible
#: ASCII and spaces only.
TOKEN_PATTERN = "^[\\x20-\\x7E]+$"
_TOKEN = re.compile(TOKEN_PATTERN)


def _secret(value: object, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_SECRET:
        raise invalid(field, f"must be a non-empty string of at most {MAX_SECRET} characters, or null")
    return value


def _token(value: object) -> str | None:
    token = _secret(value, "properties.token")
    if token is not None and not _TOKEN.match(token):
        # Never echoed: the message names the rule, not the value.
        raise invalid("properties.token", "must be printable ASCII (it is sent in an HTTP header)")
    return token


def _intake(value: object) -> str:
    if value not in INTAKES:
        raise invalid("properties.intake", f"must be one of {', '.join(repr(i) for i in INTAKES)}")
    assert isinstance(value, str)
    return value


def database_scheme(url: str) -> str:
    """The URL's scheme without the plugin's ``mlgrid+`` prefix (``postgresql``, ``sqlite``...)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    return scheme.removeprefix("mlgrid+")


def _database_url(value: object) -> str | None:
    """MLflow's database URL. The value may hold a password, so no message repeats it."""
    field = "properties.databaseUrl"
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_SECRET:
        raise invalid(field, f"must be a database URL of at most {MAX_SECRET} characters, or null")
    scheme = database_scheme(value)
    if scheme not in DATABASE_SCHEMES:
        raise invalid(
            field, "must be a postgresql://... or sqlite:///... URL of the MLflow server's database"
        )
    if scheme == "sqlite":
        if not value.split("://", 1)[1].startswith("/") or value.rstrip("/").endswith(":"):
            raise invalid(field, "must name a database file: sqlite:///path/to/mlflow.db")
        if ":memory:" in value:
            raise invalid(field, "must name a database file (an in-memory database has no outbox)")
        return value
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise invalid(field, "is not a valid URL (check the port and any special characters)") from None
    if not host or not parts.path.strip("/"):
        raise invalid(field, "must name a host and a database: postgresql://user:password@host:5432/mlflow")
    return value


def check_intake(spec: ConnectorSpec, *, stored_database_url: bool) -> None:
    """Intake ``outbox`` needs MLflow's database URL (given now, or kept from before)."""
    if spec.intake == INTAKE_OUTBOX and spec.database_url is None and not stored_database_url:
        raise invalid("properties.databaseUrl", "is required when intake is 'outbox'")


def _number(value: object, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)) or not low <= value <= high:
        raise invalid(field, f"must be a number from {low:g} to {high:g}")
    return float(value)


def _names(value: object, field: str, *, nullable: bool) -> list[str] | None:
    if value is None and nullable:
        return None
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise invalid(
            field, f"must be a list of at most {MAX_LIST} names" + (", or null" if nullable else "")
        )
    out: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise invalid(f"{field}[{index}]", "must be a non-empty string")
        if item not in out:
            out.append(item)
    return out


def _aliases(value: object) -> tuple[str, ...]:
    field = "properties.deploymentAliases"
    names = _names(value, field, nullable=False) or []
    for index, name in enumerate(names):
        if not _ALIAS.match(name) or _RESERVED_ALIAS.match(name):
            raise invalid(
                f"{field}[{index}]",
                f"{name!r} is not an MLflow alias (letters, digits, '_' and '-'; not 'latest' or 'v<n>')",
            )
    return tuple(names)


def _bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(field, "must be true or false")
    return value


def parse_put(body: object) -> ConnectorSpec:
    """The full configuration of a ``PUT`` (omitted optional fields take their defaults)."""
    properties = _properties(body)
    kind = properties.get("kind", KIND_MLFLOW)
    if kind != KIND_MLFLOW:
        raise invalid("properties.kind", f"must be {KIND_MLFLOW!r} (the only kind of connector)")
    if "trackingUri" not in properties:
        raise invalid("properties.trackingUri", "is required")
    spec = apply_patch(ConnectorSpec(tracking_uri=_uri(properties["trackingUri"])), properties)
    check_intake(spec, stored_database_url=False)
    return spec


def check_patch_shape(body: object) -> None:
    """A ``PATCH`` body's shape, checked before the connector is looked up (a malformed body
    is a 400 whether or not the connector exists)."""
    _properties(body)


def parse_patch(body: object, current: ConnectorSpec) -> tuple[ConnectorSpec, set[str]]:
    """The configuration after a ``PATCH``, and the names of the properties it set."""
    properties = _properties(body)
    if "kind" in properties and properties["kind"] != KIND_MLFLOW:
        raise invalid("properties.kind", "cannot change")
    return apply_patch(current, properties), set(properties)


def apply_patch(spec: ConnectorSpec, properties: dict[str, Any]) -> ConnectorSpec:
    changes: dict[str, Any] = {}
    if "trackingUri" in properties:
        changes["tracking_uri"] = _uri(properties["trackingUri"])
    if "token" in properties:
        changes["token"] = _token(properties["token"])
    if "webhookSecret" in properties:
        changes["webhook_secret"] = _secret(properties["webhookSecret"], "properties.webhookSecret")
    if "pollIntervalSeconds" in properties:
        changes["poll_interval"] = _number(
            properties["pollIntervalSeconds"],
            "properties.pollIntervalSeconds",
            MIN_POLL_SECONDS,
            MAX_POLL_SECONDS,
        )
    if "fullSweepMinutes" in properties:
        changes["full_sweep_minutes"] = _number(
            properties["fullSweepMinutes"],
            "properties.fullSweepMinutes",
            MIN_SWEEP_MINUTES,
            MAX_SWEEP_MINUTES,
        )
    if "experiments" in properties:
        changes["experiments"] = _names(properties["experiments"], "properties.experiments", nullable=True)
    if "deploymentAliases" in properties:
        changes["deployment_aliases"] = _aliases(properties["deploymentAliases"])
    if "intake" in properties:
        changes["intake"] = _intake(properties["intake"])
    if "databaseUrl" in properties:
        changes["database_url"] = _database_url(properties["databaseUrl"])
    if "backfill" in properties:
        changes["backfill"] = _bool(properties["backfill"], "properties.backfill")
    if "paused" in properties:
        changes["paused"] = _bool(properties["paused"], "properties.paused")
    return replace(spec, **changes)
