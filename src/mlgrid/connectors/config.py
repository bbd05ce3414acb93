"""A connector's body (``PUT``/``PATCH`` ``/workspaces/{ws}/connectors/{name}``), as body models.

The models below are both the validator and the OpenAPI schema of the two routes
(``mlgrid/body.py``): every problem is a 400 naming the field (``properties.pollIntervalSeconds``)
and the reason. ``token``, ``webhookSecret`` and ``databaseUrl`` are write-only: accepted here,
sealed by the service, never returned (nor echoed in an error).

A ``PUT`` body is the whole configuration (omitted members take their defaults); a ``PATCH``
body names the members it changes, each validated the same way. A ``PATCH`` body's shape (an
object, known members) is checked before the connector is looked up, so that a malformed body
is a 400 whether or not the connector exists; its values after, as they always were (404 first).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

import httpx
from pydantic import Field

from mlgrid.body import Body, Invalid, Missing, checker, echoed, members_of, parse
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


# --- the checks of single members (each raises ``Invalid`` with the reason) ---------------


def _uri(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid("must be an http(s) URL of an MLflow tracking server")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("must be an http(s) URL of an MLflow tracking server")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise Invalid("must not carry a query, fragment or credentials (use 'token')")
    try:
        # What the HTTP client will read: a bad port, a control character or a host that is
        # not a valid (internationalised) name would otherwise fail at the first request.
        url = httpx.URL(value)
        _ = url.host, url.port
    except (httpx.InvalidURL, ValueError) as exc:  # UnicodeError (IDNA) is a ValueError
        raise Invalid(f"is not a valid URL: {exc}") from None
    return value.rstrip("/")


#: A token is sent in an HTTP header (``Authorization: Bearer ...``), which carries visible
#: ASCII and spaces only.
TOKEN_PATTERN = "^[\\x20-\\x7E]+$"
_TOKEN = re.compile(TOKEN_PATTERN)


def _secret(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_SECRET:
        raise Invalid(f"must be a non-empty string of at most {MAX_SECRET} characters, or null")
    return value


def _token(value: object) -> str | None:
    token = _secret(value)
    if token is not None and not _TOKEN.match(token):
        # Never echoed: the message names the rule, not the value.
        raise Invalid("must be printable ASCII (it is sent in an HTTP header)")
    return token


def _intake(value: object) -> str:
    if not isinstance(value, str) or value not in INTAKES:
        raise Invalid(f"must be one of {', '.join(repr(i) for i in INTAKES)}")
    return value


def database_scheme(url: str) -> str:
    """The URL's scheme without the plugin's ``mlgrid+`` prefix (``postgresql``, ``sqlite``...)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    return scheme.removeprefix("mlgrid+")


def _database_url(value: object) -> str | None:
    """MLflow's database URL. The value may hold a password, so no message repeats it."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_SECRET:
        raise Invalid(f"must be a database URL of at most {MAX_SECRET} characters, or null")
    scheme = database_scheme(value)
    if scheme not in DATABASE_SCHEMES:
        raise Invalid("must be a postgresql://... or sqlite:///... URL of the MLflow server's database")
    if scheme == "sqlite":
        if not value.split("://", 1)[1].startswith("/") or value.rstrip("/").endswith(":"):
            raise Invalid("must name a database file: sqlite:///path/to/mlflow.db")
        if ":memory:" in value:
            raise Invalid("must name a database file (an in-memory database has no outbox)")
        return value
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise Invalid("is not a valid URL (check the port and any special characters)") from None
    if not host or not parts.path.strip("/"):
        raise Invalid("must name a host and a database: postgresql://user:password@host:5432/mlflow")
    return value


def _number(low: float, high: float) -> Callable[[object], float]:
    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise Invalid(f"must be a number from {low:g} to {high:g}")
        if not low <= value <= high:
            raise Invalid(f"must be a number from {low:g} to {high:g}")
        return float(value)

    return check


def _names(value: object, *, nullable: bool) -> list[str] | None:
    if value is None and nullable:
        return None
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise Invalid(f"must be a list of at most {MAX_LIST} names" + (", or null" if nullable else ""))
    out: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise Invalid("must be a non-empty string", at=f"[{index}]")
        if item not in out:
            out.append(item)
    return out


def _experiments(value: object) -> list[str] | None:
    return _names(value, nullable=True)


def _aliases(value: object) -> tuple[str, ...]:
    names = _names(value, nullable=False) or []
    for index, name in enumerate(names):
        if not _ALIAS.match(name) or _RESERVED_ALIAS.match(name):
            raise Invalid(
                f"{name!r} is not an MLflow alias (letters, digits, '_' and '-'; not 'latest' or 'v<n>')",
                at=f"[{index}]",
            )
    return tuple(names)


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise Invalid("must be true or false")
    return value


def _kind(text: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        if value != KIND_MLFLOW:
            raise Invalid(text)
        return KIND_MLFLOW

    return check


_KIND_SCHEMA: dict[str, Any] = {"type": "string", "enum": [KIND_MLFLOW]}
_TRACKING_URI_SCHEMA: dict[str, Any] = {
    "type": "string", "format": "uri", "description": "http(s) URL of the MLflow tracking server",
}
_BOOL_SCHEMA: dict[str, Any] = {"type": "boolean"}


_NO_DEFAULT = object()


def _omitted(default: object = _NO_DEFAULT) -> Any:
    """A member a body may leave out: ``None`` in the model (not given); the schema shows
    ``default``, what a ``PUT`` that leaves it out gets."""

    def extra(schema: dict[str, Any]) -> None:
        schema.pop("default", None)
        if default is not _NO_DEFAULT:
            schema["default"] = default

    return Field(default=None, json_schema_extra=extra)


# --- the body models ------------------------------------------------------------------------


class ConnectorPatchProperties(Body):
    """``properties`` of a ``PATCH``: the members given replace the stored ones."""

    kind: Annotated[Any, *checker(_kind("cannot change"), _KIND_SCHEMA)] = _omitted(KIND_MLFLOW)
    tracking_uri: Annotated[Any, *checker(_uri, _TRACKING_URI_SCHEMA)] = _omitted()
    token: Annotated[Any, *checker(_token, {
        "type": ["string", "null"], "minLength": 1, "maxLength": MAX_SECRET, "pattern": TOKEN_PATTERN,
        "writeOnly": True,
        "description": "bearer token for MLflow; sealed at rest, never returned",
    })] = _omitted(None)
    poll_interval_seconds: Annotated[Any, *checker(_number(MIN_POLL_SECONDS, MAX_POLL_SECONDS), {
        "type": "number", "minimum": MIN_POLL_SECONDS, "maximum": MAX_POLL_SECONDS,
    })] = _omitted(DEFAULT_POLL_SECONDS)
    full_sweep_minutes: Annotated[Any, *checker(_number(MIN_SWEEP_MINUTES, MAX_SWEEP_MINUTES), {
        "type": "number", "minimum": MIN_SWEEP_MINUTES, "maximum": MAX_SWEEP_MINUTES,
        "description": "minutes between full sweeps (every run, version and alias)",
    })] = _omitted(DEFAULT_SWEEP_MINUTES)
    experiments: Annotated[Any, *checker(_experiments, {
        "type": ["array", "null"], "maxItems": MAX_LIST, "items": {"type": "string", "pattern": r"\S"},
        "description": "experiment names to follow; null: all",
    })] = _omitted(None)
    deployment_aliases: Annotated[Any, *checker(_aliases, {
        "type": "array", "maxItems": MAX_LIST,
        "items": {"type": "string", "pattern": _ALIAS.pattern,
                  "not": {"pattern": "^(?:[Ll][Aa][Tt][Ee][Ss][Tt]|[Vv][0-9]+)$"}},
        "description": "registered-model aliases whose moves emit ModelDeployed",
    })] = _omitted(list(DEFAULT_DEPLOYMENT_ALIASES))
    webhook_secret: Annotated[Any, *checker(_secret, {
        "type": ["string", "null"], "minLength": 1, "maxLength": MAX_SECRET, "writeOnly": True,
        "description": "secret of MLflow webhooks pointed at .../webhook; sealed, never returned",
    })] = _omitted(None)
    intake: Annotated[Any, *checker(_intake, {
        "type": "string", "enum": list(INTAKES),
        "description": "polling (MLflow's REST API) or outbox (the mlgrid-mlflow-outbox plugin's "
        "table in MLflow's database; needs databaseUrl)",
    })] = _omitted(INTAKE_POLLING)
    database_url: Annotated[Any, *checker(_database_url, {
        "type": ["string", "null"], "minLength": 1, "maxLength": MAX_SECRET, "writeOnly": True,
        "description": "MLflow's database (postgresql://... or sqlite:///...), for intake outbox; "
        "read/delete on the outbox table is all it needs; sealed at rest, never returned",
    })] = _omitted(None)
    backfill: Annotated[Any, *checker(_bool, {
        **_BOOL_SCHEMA, "description": "the first sync emits events for MLflow's past too",
    })] = _omitted(False)
    paused: Annotated[Any, *checker(_bool, _BOOL_SCHEMA)] = _omitted(False)

    #: The ``ConnectorSpec`` field each member sets (``kind`` sets none: there is one kind).
    _SPEC_FIELDS: ClassVar[dict[str, str]] = {
        "tracking_uri": "tracking_uri",
        "token": "token",
        "poll_interval_seconds": "poll_interval",
        "full_sweep_minutes": "full_sweep_minutes",
        "experiments": "experiments",
        "deployment_aliases": "deployment_aliases",
        "webhook_secret": "webhook_secret",
        "intake": "intake",
        "database_url": "database_url",
        "backfill": "backfill",
        "paused": "paused",
    }

    @classmethod
    def object_reason(cls) -> str:
        return "must be an object"

    @classmethod
    def unknown_reason(cls, known: list[str]) -> str:
        return "is not a connector property"

    def given(self) -> set[str]:
        """The JSON names of the members the body gave."""
        return {self.model_fields[name].alias or name for name in self.model_fields_set}

    def apply(self, spec: ConnectorSpec) -> tuple[ConnectorSpec, set[str]]:
        """``spec`` with the given members set, and their JSON names."""
        changes = {
            self._SPEC_FIELDS[name]: getattr(self, name)
            for name in self.model_fields_set
            if name in self._SPEC_FIELDS
        }
        return replace(spec, **changes), self.given()


class ConnectorPutProperties(ConnectorPatchProperties):
    """``properties`` of a ``PUT``: the whole configuration (``trackingUri`` is required)."""

    kind: Annotated[Any, *checker(_kind(f"must be {KIND_MLFLOW!r} (the only kind of connector)"),
                                  _KIND_SCHEMA)] = _omitted(KIND_MLFLOW)
    tracking_uri: Annotated[Any, *checker(_uri, _TRACKING_URI_SCHEMA)]


class _ConnectorBody(Body):
    """A connector resource as a write takes it; read-only members of a read are ignored."""

    id: Any = echoed()
    name: Any = echoed()
    type: Any = echoed()

    @classmethod
    def object_reason(cls) -> str:
        return "must be a JSON object with 'properties'"

    @classmethod
    def unknown_reason(cls, known: list[str]) -> str:
        return "is not a field of a connector"


class ConnectorPutBody(_ConnectorBody):
    properties: Annotated[ConnectorPutProperties, Missing("must be an object")]


class ConnectorPatchBody(_ConnectorBody):
    properties: Annotated[ConnectorPatchProperties, Missing("must be an object")]


def check_intake(spec: ConnectorSpec, *, stored_database_url: bool) -> None:
    """Intake ``outbox`` needs MLflow's database URL (given now, or kept from before)."""
    if spec.intake == INTAKE_OUTBOX and spec.database_url is None and not stored_database_url:
        raise invalid("properties.databaseUrl", "is required when intake is 'outbox'")


def parse_put(body: object) -> ConnectorSpec:
    """The full configuration of a ``PUT`` (omitted optional fields take their defaults)."""
    properties = parse(ConnectorPutBody, body).properties
    spec, _ = properties.apply(ConnectorSpec(tracking_uri=properties.tracking_uri))
    check_intake(spec, stored_database_url=False)
    return spec


def check_patch_shape(body: object) -> None:
    """A ``PATCH`` body's shape, by the models' own member checks, before the connector is
    looked up (a malformed body is a 400 whether or not the connector exists)."""
    members = members_of(ConnectorPatchBody, body, "")
    members_of(ConnectorPatchProperties, members.get("properties"), "properties")


def read_patch(body: object) -> ConnectorPatchProperties:
    """The members a ``PATCH`` changes (``apply`` them to the current configuration)."""
    return parse(ConnectorPatchBody, body).properties
