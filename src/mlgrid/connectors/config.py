"""Validating a connector's body (``PUT``/``PATCH`` ``/workspaces/{ws}/connectors/{name}``).

Every problem is a 400 naming the field (``properties.pollIntervalSeconds``) and the reason.
``token`` and ``webhookSecret`` are write-only: accepted here, sealed by the service, never
returned. A ``PATCH`` body is validated the same way, field by field, over the current values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import ConfigDict

from mlgrid.body import Body, Invalid, Missing, checked, checker, echoed, members_of, parse
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


def _uri(value: object) -> str:
    field = "properties.trackingUri"
    if not isinstance(value, str) or not value:
        raise invalid(field, "must be an http(s) URL of an MLflow tracking server")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid(field, "must be an http(s) URL of an MLflow tracking server")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise invalid(field, "must not carry a query, fragment or credentials (use 'token')")
    return value.rstrip("/")


def _secret(value: object, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_SECRET:
        raise invalid(field, f"must be a non-empty string of at most {MAX_SECRET} characters, or null")
    return value


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


def _rule(check: Callable[[Any], Any], schema: dict[str, Any]) -> tuple[Any, ...]:
    """A member checked by one of the helpers above (which name their own absolute path)."""
    return checker(lambda value: checked(lambda: check(value)), schema)


def _put_kind(value: object) -> str:
    if value != KIND_MLFLOW:
        raise Invalid(f"must be {KIND_MLFLOW!r} (the only kind of connector)")
    return KIND_MLFLOW


def _same_kind(value: object) -> str:
    if value != KIND_MLFLOW:
        raise Invalid("cannot change")
    return KIND_MLFLOW


_KIND_SCHEMA: dict[str, Any] = {"type": "string", "enum": [KIND_MLFLOW], "default": KIND_MLFLOW}
_URI_SCHEMA: dict[str, Any] = {
    "type": "string", "format": "uri", "description": "http(s) URL of the MLflow tracking server",
}
#: A PUT without ``trackingUri``: told so in its turn (after ``kind``), as it always was.
_ABSENT = object()


def _put_uri(value: object) -> str:
    if value is _ABSENT:
        raise Invalid("is required")
    return checked(lambda: _uri(value))


def _names_of(field: str) -> Callable[[Any], list[str] | None]:
    return lambda value: _names(value, field, nullable=True)


class ConnectorProperties(Body):
    """The ``properties`` of a connector ``PATCH`` (each given member is set); a ``PUT`` reads
    :class:`ConnectorPutProperties`. Unknown members are named in the body's order."""

    kind: Annotated[Any, *checker(_same_kind, _KIND_SCHEMA)] = None
    tracking_uri: Annotated[Any, *_rule(_uri, _URI_SCHEMA)] = None
    token: Annotated[Any, *_rule(lambda v: _secret(v, "properties.token"), {
        "type": ["string", "null"], "minLength": 1, "maxLength": MAX_SECRET, "writeOnly": True,
        "description": "bearer token for MLflow; sealed at rest, never returned",
    })] = None
    webhook_secret: Annotated[Any, *_rule(lambda v: _secret(v, "properties.webhookSecret"), {
        "type": ["string", "null"], "minLength": 1, "maxLength": MAX_SECRET, "writeOnly": True,
        "description": "secret of MLflow webhooks pointed at .../webhook; sealed, never returned",
    })] = None
    poll_interval_seconds: Annotated[Any, *_rule(
        lambda v: _number(v, "properties.pollIntervalSeconds", MIN_POLL_SECONDS, MAX_POLL_SECONDS), {
            "type": "number", "minimum": MIN_POLL_SECONDS, "maximum": MAX_POLL_SECONDS,
            "default": DEFAULT_POLL_SECONDS,
        })] = None
    full_sweep_minutes: Annotated[Any, *_rule(
        lambda v: _number(v, "properties.fullSweepMinutes", MIN_SWEEP_MINUTES, MAX_SWEEP_MINUTES), {
            "type": "number", "minimum": MIN_SWEEP_MINUTES, "maximum": MAX_SWEEP_MINUTES,
            "default": DEFAULT_SWEEP_MINUTES,
            "description": "minutes between full sweeps (every run, version and alias)",
        })] = None
    experiments: Annotated[Any, *_rule(_names_of("properties.experiments"), {
        "type": ["array", "null"], "maxItems": MAX_LIST, "items": {"type": "string", "minLength": 1},
        "description": "experiment names to follow; null: all",
    })] = None
    deployment_aliases: Annotated[Any, *_rule(_aliases, {
        "type": "array", "maxItems": MAX_LIST, "items": {"type": "string", "pattern": _ALIAS.pattern},
        "default": list(DEFAULT_DEPLOYMENT_ALIASES),
        "description": "registered-model aliases whose moves emit ModelDeployed",
    })] = None
    backfill: Annotated[Any, *_rule(lambda v: _bool(v, "properties.backfill"), {
        "type": "boolean", "default": False,
        "description": "the first sync emits events for MLflow's past too",
    })] = None
    paused: Annotated[Any, *_rule(lambda v: _bool(v, "properties.paused"), {
        "type": "boolean", "default": False})] = None

    @classmethod
    def object_reason(cls) -> str:
        return "must be an object"

    @classmethod
    def unknown_reason(cls, known: list[str]) -> str:
        return "is not a connector property"

    @classmethod
    def canonical_members(cls, value: object) -> dict[str, Any]:
        if isinstance(value, Mapping):
            known = [f.alias or name for name, f in cls.model_fields.items()]
            for key in value:
                if key not in known:
                    raise Invalid(cls.unknown_reason(known), at=str(key))
        return super().canonical_members(value)

    def changes(self) -> dict[str, Any]:
        """The ``ConnectorSpec`` fields the given members set."""
        given = self.model_fields_set - {"kind"}
        names = {"poll_interval_seconds": "poll_interval"}
        return {names.get(name, name): getattr(self, name) for name in given}


class ConnectorPutProperties(ConnectorProperties):
    """The ``properties`` of a connector ``PUT``: ``trackingUri`` is required."""

    model_config = ConfigDict(json_schema_extra={"required": ["trackingUri"]})

    kind: Annotated[Any, *checker(_put_kind, _KIND_SCHEMA)] = None
    tracking_uri: Annotated[Any, *checker(_put_uri, _URI_SCHEMA)] = None

    @classmethod
    def canonical_members(cls, value: object) -> dict[str, Any]:
        return {"trackingUri": _ABSENT} | super().canonical_members(value)


class _ConnectorBody(Body):
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
    """The body of ``PUT .../connectors/{name}``."""

    properties: Annotated[ConnectorPutProperties, Missing("must be an object")]


class ConnectorPatchBody(_ConnectorBody):
    """The body of ``PATCH .../connectors/{name}``."""

    properties: Annotated[ConnectorProperties, Missing("must be an object")]


def parse_put(body: object) -> ConnectorSpec:
    """The full configuration of a ``PUT`` (omitted optional fields take their defaults)."""
    properties = parse(ConnectorPutBody, body).properties
    return replace(ConnectorSpec(tracking_uri=properties.tracking_uri), **properties.changes())


def check_patch_shape(body: object) -> None:
    """A ``PATCH`` body's shape, checked before the connector is looked up (a malformed body
    is a 400 whether or not the connector exists); its values are checked after."""
    members = members_of(ConnectorPatchBody, body, "")
    members_of(ConnectorProperties, members.get("properties"), "properties")


def parse_patch(body: object, current: ConnectorSpec) -> tuple[ConnectorSpec, set[str]]:
    """The configuration after a ``PATCH``, and the names of the properties it set."""
    properties = parse(ConnectorPatchBody, body).properties
    given = {ConnectorProperties.model_fields[name].alias or name for name in properties.model_fields_set}
    return replace(current, **properties.changes()), given
