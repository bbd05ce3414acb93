"""Request bodies declared once: a pydantic v2 model is both the validator and the schema.

A body model (a subclass of :class:`Body`) says what a body may hold; :func:`parse` checks a
body that ``events/jsoncodec.loads_exact`` decoded (numbers are ``int`` or ``Decimal``) and
:func:`openapi_schema` is what the OpenAPI document shows for it, so the two cannot drift.

Errors keep mlgrid's shape (SPEC §3): a 400 ``InvalidField`` whose message starts with the
JSON path of the field (``properties.retentionInDays``, ``metrics[2].value``) followed by the
reason, never pydantic's own wording or a 422. The reason comes from, in order:

* a :func:`reason` on the field (``Annotated[int, Field(ge=1), reason("must be ...")]``): any
  failure of that field reads so, whatever pydantic's error type was;
* a :class:`Invalid` raised by a validator of the model, with an optional sub-path (``at``);
* an ``InvalidField`` raised by a domain check called from a validator (its own path wins);
* otherwise a short default per pydantic error type (``is required``, ``must be a string``).

Models are strict (no coercion: ``"1"`` is not ``1``, ``true`` is not ``1``) and refuse
unknown members, naming the first one in sorted order, as the hand-written parsers did; a
model whose body always ignored unknown members keeps doing so with ``extra="ignore"``.
Read-only members that clients echo back (``id``, ``name``, ...) are declared as fields that
the parser ignores, so the schema lists them as well.

The publish path does not use this: it keeps its measured hand-written parser
(``events/publish.py``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import ErrorDetail, InvalidField

__all__ = [
    "DATE_TIME_SCHEMA",
    "ECHOED",
    "ArmBody",
    "Body",
    "Invalid",
    "Missing",
    "case_insensitive",
    "checked",
    "checker",
    "echoed",
    "integral",
    "members_of",
    "one_of",
    "openapi_schema",
    "optional_text",
    "parse",
    "reason",
    "relay",
    "whole",
]

BodyT = TypeVar("BodyT", bound="Body")

_MLGRID = "mlgrid"
#: The reason shown for a pydantic error type when the field declares none.
_DEFAULT_REASONS: dict[str, str] = {
    "missing": "is required",
    "extra_forbidden": "unknown field",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "list_type": "must be an array",
    "decimal_type": "must be a number",
    "float_type": "must be a number",
}


def Invalid(reason: str, *, at: str | None = None, field: str = "") -> PydanticCustomError:
    """The error a validator of a body model raises: ``reason`` for the model's own path plus
    ``at`` (``"inputSchemaMapping"``, ``"[2].name"``), or for the absolute ``field`` path."""
    return PydanticCustomError(_MLGRID, "{reason}", {"reason": reason, "at": at, "field": field})


@dataclass(frozen=True)
class Reason(WrapValidator):
    """``Annotated`` metadata: any failure of this field - a missing one included - is
    reported as ``text``. Made by :func:`reason`."""

    text: str = ""


def reason(text: str) -> Reason:
    """``Annotated`` metadata: any failure of this field is reported as ``text``."""

    def wrap(value: object, handler: ValidatorFunctionWrapHandler) -> object:
        try:
            return handler(value)
        except ValidationError as exc:
            if any(e["type"] == _MLGRID for e in exc.errors()):
                raise  # a more precise reason from a nested validator
            raise Invalid(text) from None

    return Reason(wrap, text=text)


@dataclass(frozen=True)
class Missing:
    """``Annotated`` metadata: what a missing required field is told (default ``is required``)."""

    text: str


def _missing_reason(field: FieldInfo) -> str:
    for item in field.metadata:
        if isinstance(item, Reason | Missing):
            return item.text
    return "is required"


def checker(check: Callable[[Any], Any], schema: dict[str, Any]) -> tuple[Any, ...]:
    """``Annotated`` metadata for a value checked by ``check`` (which raises :func:`Invalid`
    with the exact wording, or returns the value to keep) and shown as ``schema``: for rules
    whose messages differ by failure (type vs length) and so cannot be one :func:`reason`.
    Use as ``Annotated[Any, *checker(check, schema)]``; keep both next to each other."""
    return (AfterValidator(check), WithJsonSchema(schema))


def optional_text(limit: int) -> tuple[Any, ...]:
    """A string of at most ``limit`` characters, or null (``must be a string or null``)."""

    def check(value: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise Invalid("must be a string or null")
        if len(value) > limit:
            raise Invalid(f"must be at most {limit} characters")
        return value

    return checker(check, {"type": ["string", "null"], "maxLength": limit})


def case_insensitive(choices: tuple[str, ...] | list[str]) -> str:
    """A JSON Schema ``pattern`` that matches any of ``choices`` in any letter case (ECMA
    regexes have no case-insensitive flag)."""
    def letters(word: str) -> str:
        return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)

    return "^(?:" + "|".join(letters(c) for c in choices) + ")$"


T = TypeVar("T")


def checked(check: Callable[[], T]) -> T:
    """Run a domain check that raises ``InvalidField`` with its own (absolute) path, from
    inside a model validator, so that its error is reported like the others."""
    try:
        return check()
    except InvalidField as exc:
        field = exc.field_name
        text = exc.message
        prefix = f"{field}: "
        raise Invalid(text[len(prefix):] if text.startswith(prefix) else text, field=field) from None


def whole(value: object) -> object:
    """``value`` as an ``int`` when it is a finite exact decimal with no fraction (``5.0``,
    ``1E+3``), else unchanged. JSON Schema's ``integer`` is a number whose value is whole,
    however it is written, so every member the schema calls an integer takes one (issue 16)."""
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return value


#: ``Annotated`` metadata for an ``int`` member: ``5.0`` is read as ``5`` (see :func:`whole`).
integral = BeforeValidator(whole)


def one_of(choices: tuple[str, ...], text: str = "") -> tuple[Any, ...]:
    """``Annotated`` metadata for a string that must be one of ``choices`` (exact spelling);
    the schema says ``enum``. Use as ``Annotated[str, *one_of(INPUT_SCHEMAS)]``."""
    message = text or f"must be one of {', '.join(choices)}"

    def check(value: str) -> str:
        if value not in choices:
            raise Invalid(message)
        return value

    return (Field(json_schema_extra={"enum": list(choices)}), AfterValidator(check), reason(message))


#: An RFC 3339 date-time as ``events/timestamps.parse_timestamp`` reads it: upper-case ``T``
#: and ``Z``, no leap second (``format`` alone admits both).
DATE_TIME_SCHEMA: dict[str, Any] = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:[0-5]\d(\.\d+)?(Z|[+-]\d{2}:\d{2})$",
}

ECHOED = "Read-only in a response; accepted and ignored so that a read can be sent back."


def echoed() -> Any:
    """A member a response carries and a body may echo back: declared (so the schema lists it
    and the closed-object check lets it through) and ignored."""
    return Field(default=None, description=ECHOED)


class Body(BaseModel):
    """Root of every request-body model: strict, closed, camelCase JSON names."""

    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=False
    )

    #: ARM ignores the case of member names: a model that says so takes ``Destination`` for
    #: ``destination`` (and refuses a name given twice in two spellings).
    names_ignore_case: ClassVar[bool] = False

    @classmethod
    def object_reason(cls) -> str:
        """What a value that is not a JSON object is told; a model may say more."""
        return "must be a JSON object"

    @classmethod
    def unknown_reason(cls, known: list[str]) -> str:
        """What an unknown member is told; a model may override it."""
        return f"unknown field; expected one of {', '.join(sorted(known))}"

    @model_validator(mode="wrap")
    @classmethod
    def _closed_object(cls, value: object, handler: Callable[[object], Any]) -> Any:
        if isinstance(value, cls):
            return handler(value)
        members = cls.canonical_members(value)
        for name, field in cls.model_fields.items():
            if field.is_required() and (field.alias or name) not in members:
                raise Invalid(_missing_reason(field), at=field.alias or name)
        return handler(members)

    @classmethod
    def canonical_members(cls, value: object) -> dict[str, Any]:
        """``value``'s members under the model's names, or :func:`Invalid` for a value that is
        not an object, an unknown member (dropped instead when the model says
        ``extra="ignore"``) (the first in sorted order, or in the body's order
        when names ignore case) or a member given twice."""
        if not isinstance(value, Mapping):
            raise Invalid(cls.object_reason())
        known = [f.alias or name for name, f in cls.model_fields.items()]
        if cls.model_config.get("extra") == "ignore":
            # An open object (a body that always ignored what it does not read).
            return {name: item for name, item in value.items() if name in known}
        if not cls.names_ignore_case:
            unknown = sorted(str(k) for k in value if k not in known)
            if unknown:
                raise Invalid(cls.unknown_reason(known), at=unknown[0])
            return dict(value)
        by_lower = {name.lower(): name for name in known}
        members: dict[str, Any] = {}
        for name, item in value.items():
            canonical = by_lower.get(name.lower()) if isinstance(name, str) else None
            if canonical is None:
                raise Invalid(cls.unknown_reason(known), at=str(name))
            if canonical in members:
                raise Invalid("given more than once (property names ignore case)", at=str(name))
            members[canonical] = item
        return members


class ArmBody(Body):
    """An object of an ARM resource (Azure's shapes): member names ignore case, and an unknown
    one is told the expected names in declaration order."""

    names_ignore_case: ClassVar[bool] = True

    @classmethod
    def unknown_reason(cls, known: list[str]) -> str:
        return f"unknown property; expected one of {', '.join(known)}"


def members_of(model: type[Body], raw: object, path: str) -> dict[str, Any]:
    """:meth:`Body.canonical_members` outside validation: an ``InvalidField`` under ``path``."""
    try:
        return model.canonical_members(raw)
    except PydanticCustomError as exc:
        ctx = exc.context or {}
        field = _join(path, ctx.get("at")) or "body"
        raise InvalidField(message=f"{field}: {ctx.get('reason', exc.message())}", field_name=field) from None


def relay(exc: ValidationError, at: str) -> PydanticCustomError:
    """The first error of a nested model's validation, as the outer model's error under ``at``
    (a model that validates a member itself, e.g. by a type named in a sibling member)."""
    first = exc.errors(include_url=False)[0]
    inner = _path_of(first)
    return Invalid(_reason_of(first), at=at if inner == "body" else _join(at, inner))


def _join(path: str, part: str | None) -> str:
    if part is None:
        return path
    if part.startswith("["):
        return path + part
    return f"{path}.{part}" if path else part


def _path_of(error: ErrorDetails) -> str:
    ctx = error.get("ctx") or {}
    if ctx.get("field"):
        return str(ctx["field"])
    path = ""
    for part in error["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" in part or part in ("function-wrap", "function-after", "function-before"):
            continue  # pydantic's names of union members and validator wrappers
        else:
            path = _join(path, part)
    at = ctx.get("at")
    if at is None:
        return path or "body"
    return _join(path, str(at))


def _reason_of(error: ErrorDetails) -> str:
    if error["type"] == _MLGRID:
        return str((error.get("ctx") or {})["reason"])
    if error["type"] == "literal_error":
        return f"must be one of {(error.get('ctx') or {}).get('expected', '')}".replace("'", "")
    return _DEFAULT_REASONS.get(error["type"], error["msg"])


def as_invalid(exc: ValidationError, root: str = "") -> InvalidField:
    """The 400 for a failed body: the first error in the message, every error in ``details``."""
    details: list[ErrorDetail] = []
    for error in exc.errors(include_url=False):
        path = _path_of(error)
        if root:
            path = root if path == "body" else _join(root, path)  # "body" is the value itself
        details.append(ErrorDetail(ErrorCode.INVALID_REQUEST, f"{path}: {_reason_of(error)}", path))
    first = details[0]
    return InvalidField(message=first.message, details=details, field_name=first.target or "")


def parse(
    model: type[BodyT], raw: object, *, root: str = "", context: Mapping[str, Any] | None = None
) -> BodyT:
    """``raw`` (an exactly decoded JSON value) as ``model``, or the ``InvalidField`` saying why not.

    ``root`` prefixes every path (a body nested in a bigger document); ``context`` is handed to
    the validators (``ValidationInfo.context``), for rules that depend on more than the body
    (a subscription filter's keys depend on the topic's input schema)."""
    try:
        return model.model_validate(raw, context=None if context is None else dict(context))
    except ValidationError as exc:
        raise as_invalid(exc, root) from None


def openapi_schema(model: type[Body]) -> dict[str, Any]:
    """The model's JSON Schema for the OpenAPI document, with its ``$defs`` inlined (each
    operation's schema stands alone; none of these models is recursive)."""
    schema = model.model_json_schema(mode="validation")
    defs: dict[str, Any] = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: v for k, v in node.items() if not (k == "title" and isinstance(v, str))}
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return {**inline(copy.deepcopy(defs[ref.removeprefix("#/$defs/")])), **inline(rest)}
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    result: dict[str, Any] = inline(schema)
    return result

