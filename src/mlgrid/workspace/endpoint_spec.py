"""The body of ``PUT /workspaces/{ws}/endpoints/{name}``, parsed into values (no IO).

::

    {"properties": {"computeType": "Local", "models": ["churn:3"], "entryScript": null,
                    "tags": {}, "properties": {}, "startupTimeoutSeconds": 120}}

Every rejection is a 400 naming the JSON path (``properties.computeType``,
``properties.models[1]``), and unknown fields are refused so a typo does not deploy something
else than what was meant. Whether the named models exist is the service's check (it needs the
database); this module only checks their shape.

``entryScript`` (the Azure ML convention: a Python file with ``init()`` and ``run(raw_data)``)
takes three forms:

* ``"score.py"`` — a relative path of a file inside one of the deployed models (a directory
  model registered together with its scoring script);
* ``{"fileName": "score.py", "source": "<python code>"}`` — the script itself (what the SDK
  sends for a local file);
* a string containing a line break — the script's source, for hand-written requests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any

from pydantic import ConfigDict, ValidationError, model_validator

from mlgrid.body import Body, Invalid, Missing, case_insensitive, checked, checker, echoed, parse
from mlgrid.errors import invalid
from mlgrid.workspace.validation import _no_unknown, parse_properties, parse_tags

LOCAL = "Local"
COMPUTE_TYPES = (LOCAL,)
MAX_MODELS = 32
MAX_SCRIPT_BYTES = 1024 * 1024
MAX_SCRIPT_PATH = 1024
DEFAULT_STARTUP_TIMEOUT = 120.0
MAX_STARTUP_TIMEOUT = 3600.0
DEFAULT_SCRIPT_NAME = "score.py"

_MODEL_ID = re.compile(r"^([A-Za-z0-9_-]{3,64}):([0-9]{1,9})$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\.py$")


@dataclass(frozen=True)
class ModelRef:
    """One ``name:version`` of ``properties.models``, as written (the service canonicalises the
    name's case from the registry)."""

    name: str
    version: int

    @property
    def model_id(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class EntryScript:
    """A scoring script: a file of a deployed model (``path``) or inline ``source``.

    ``raw`` is the value as the request gave it; it is stored and returned unchanged so a GET
    body can be sent back as a PUT body.
    """

    raw: Any
    path: str | None = None
    source: str | None = None
    file_name: str = DEFAULT_SCRIPT_NAME

    @property
    def inline(self) -> bool:
        return self.source is not None


@dataclass(frozen=True)
class EndpointSpec:
    compute_type: str
    models: tuple[ModelRef, ...]
    entry_script: EntryScript | None
    tags: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT


def parse_compute_type(value: object, path: str = "properties.computeType") -> str:
    if value is None:
        return LOCAL
    if not isinstance(value, str) or value.lower() not in {c.lower() for c in COMPUTE_TYPES}:
        shown = repr(value)[:64]
        raise invalid(
            path,
            f"{shown} is not supported: this server deploys to 'Local' (a scoring process on the "
            "server's machine); ACI and AKS are Azure services",
        )
    return LOCAL


def parse_model_id(value: object, path: str) -> ModelRef:
    if not isinstance(value, str):
        raise invalid(path, "must be a string 'name:version'")
    match = _MODEL_ID.match(value)
    if match is None or int(match.group(2)) < 1:
        raise invalid(path, f"{value[:140]!r} is not a model id 'name:version' (e.g. 'churn:3')")
    return ModelRef(match.group(1), int(match.group(2)))


def parse_models(value: object, path: str = "properties.models") -> tuple[ModelRef, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid(path, "must be a list of 'name:version' strings")
    if len(value) > MAX_MODELS:
        raise invalid(path, f"at most {MAX_MODELS} models per endpoint")
    refs: list[ModelRef] = []
    seen: set[tuple[str, int]] = set()
    for index, item in enumerate(value):
        ref = parse_model_id(item, f"{path}[{index}]")
        key = (ref.name.lower(), ref.version)
        if key in seen:
            raise invalid(f"{path}[{index}]", f"{ref.model_id!r} is listed twice")
        seen.add(key)
        refs.append(ref)
    return tuple(refs)


def check_script_path(value: str, path: str) -> str:
    """A relative path of a ``.py`` file inside a model: no absolute paths, no ``..``."""
    if not value or len(value) > MAX_SCRIPT_PATH:
        raise invalid(path, f"must be 1-{MAX_SCRIPT_PATH} characters")
    if value.startswith("/") or "\\" in value or "\x00" in value:
        raise invalid(path, f"{value[:140]!r} must be a relative path with '/' separators")
    parts = value.split("/")
    if any(part in {"", ".", ".."} for part in parts):
        raise invalid(path, f"{value[:140]!r} must not contain empty, '.' or '..' segments")
    if not value.endswith(".py"):
        raise invalid(path, f"{value[:140]!r} must be a Python file (.py)")
    return value


def _source(value: object, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid(path, "must be the script's Python source, a non-empty string")
    if len(value.encode("utf-8", errors="surrogatepass")) > MAX_SCRIPT_BYTES:
        raise invalid(path, f"must be at most {MAX_SCRIPT_BYTES} bytes")
    if "\x00" in value:
        raise invalid(path, "must not contain NUL characters")
    return value


def parse_entry_script(value: object, path: str = "properties.entryScript") -> EntryScript | None:
    if value is None:
        return None
    if isinstance(value, str):
        if "\n" in value:
            return EntryScript(raw=value, source=_source(value, path))
        script_path = check_script_path(value, path)
        return EntryScript(raw=value, path=script_path, file_name=script_path.rsplit("/", 1)[-1])
    if isinstance(value, Mapping):
        _no_unknown(value, {"fileName", "source"}, path + ".")
        source = _source(value.get("source"), path + ".source")
        file_name = value.get("fileName", DEFAULT_SCRIPT_NAME)
        if file_name is None:
            file_name = DEFAULT_SCRIPT_NAME
        if not isinstance(file_name, str) or not _FILE_NAME.match(file_name):
            raise invalid(
                path + ".fileName", "must be a plain Python file name (letters, digits, '_', '-', '.'; .py)"
            )
        return EntryScript(raw=dict(value), source=source, file_name=file_name)
    raise invalid(
        path, 'must be null, a path of a .py file inside a deployed model, or {"fileName", "source"}'
    )


def parse_startup_timeout(value: object, path: str = "properties.startupTimeoutSeconds") -> float:
    if value is None:
        return DEFAULT_STARTUP_TIMEOUT
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise invalid(path, "must be a number of seconds")
    seconds = float(value)
    if not 1 <= seconds <= MAX_STARTUP_TIMEOUT:
        raise invalid(path, f"must be between 1 and {MAX_STARTUP_TIMEOUT:g} seconds")
    return seconds


def _rule(check: Callable[[Any], Any], schema: dict[str, Any]) -> tuple[Any, ...]:
    """A field checked by one of the helpers above (which name their own absolute path)."""
    return checker(lambda value: checked(lambda: check(value)), schema)


_NOTHING_TO_DEPLOY = "deploy at least one model ('name:version') or give an entryScript"
_SCRIPT_OBJECT: dict[str, Any] = {
    "type": "object", "required": ["source"], "additionalProperties": False,
    "properties": {"fileName": {"type": ["string", "null"], "pattern": _FILE_NAME.pattern},
                   "source": {"type": "string", "minLength": 1}},
}


class EndpointProperties(Body):
    compute_type: Annotated[Any, *_rule(parse_compute_type, {
        "type": ["string", "null"], "pattern": case_insensitive(COMPUTE_TYPES), "default": LOCAL})] = None
    models: Annotated[Any, *_rule(parse_models, {
        "type": ["array", "null"], "maxItems": MAX_MODELS,
        "items": {"type": "string", "pattern": "^[A-Za-z0-9_-]{3,64}:[0-9]+$"},
        "description": "registered model versions 'name:version'",
    })] = None
    entry_script: Annotated[Any, *_rule(parse_entry_script, {
        "description": "null; a .py file inside a deployed model ('score.py'); or the "
        "script itself as {'fileName': 'score.py', 'source': '...'}",
        "oneOf": [{"type": "null"}, {"type": "string"}, _SCRIPT_OBJECT],
    })] = None
    tags: Annotated[Any, *_rule(lambda v: parse_tags(v, "properties.tags"), {
        "type": ["object", "null"]})] = None
    properties: Annotated[Any, *_rule(lambda v: parse_properties(v, "properties.properties"), {
        "type": ["object", "null"], "additionalProperties": {"type": "string"}})] = None
    startup_timeout_seconds: Annotated[Any, *_rule(parse_startup_timeout, {
        "type": ["number", "null"], "minimum": 1, "maximum": MAX_STARTUP_TIMEOUT,
        "default": DEFAULT_STARTUP_TIMEOUT,
        "description": "how long the scoring process may take to answer its health check",
    })] = None

    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["models"], "properties": {"models": {"minItems": 1}}},
        {"required": ["entryScript"], "properties": {"entryScript": {"type": ["string", "object"]}}},
    ]})

    @classmethod
    def canonical_members(cls, value: object) -> dict[str, Any]:
        # Every member is checked, an absent one as null: the helpers fill in the defaults.
        members = super().canonical_members(value)
        return {f.alias or name: None for name, f in cls.model_fields.items()} | members

    @model_validator(mode="wrap")
    @classmethod
    def _something_to_deploy(cls, value: object, handler: Callable[[object], Any]) -> Any:
        """Nothing to deploy is told before the members after ``entryScript`` are, as it always was."""
        try:
            parsed = handler(value)
        except ValidationError as exc:
            if (isinstance(value, Mapping) and value.get("entryScript") is None
                    and value.get("models") in (None, []) and _only_late_members(exc)):
                raise Invalid(_NOTHING_TO_DEPLOY, at="models") from None
            raise
        if not parsed.models and parsed.entry_script is None:
            raise Invalid(_NOTHING_TO_DEPLOY, at="models")
        return parsed


_LATE_MEMBERS = ("properties.tags", "properties.properties", "properties.startupTimeoutSeconds")


def _only_late_members(exc: ValidationError) -> bool:
    """Every error is of a member checked after "something to deploy" (the helpers name their
    absolute path in ``field``; an unknown member or a non-object has none)."""
    return all(str((e.get("ctx") or {}).get("field") or "").startswith(_LATE_MEMBERS) for e in exc.errors())


class EndpointBody(Body):
    """The body of ``PUT .../onlineEndpoints/{name}``: Azure ML's endpoint resource shape; only
    ``properties`` is read."""

    properties: Annotated[EndpointProperties, Missing("must be a JSON object")]
    location: Any = echoed()
    tags: Any = echoed()
    name: Any = echoed()
    id: Any = echoed()
    type: Any = echoed()


def parse_endpoint_body(body: object) -> EndpointSpec:
    """The deployment a ``PUT`` asks for; a 400 naming the field for anything malformed."""
    if body is None:
        raise invalid("properties", 'is required: {"properties": {"computeType": "Local", "models": [...]}}')
    props = parse(EndpointBody, body).properties
    return EndpointSpec(props.compute_type, props.models, props.entry_script, props.tags,
                        props.properties, props.startup_timeout_seconds)
