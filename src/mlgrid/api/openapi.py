"""The OpenAPI document as the API really answers (SPEC §3, §10).

FastAPI documents each route's success and its own 422; mlgrid never answers 422 (a bad
request is a 400 in the error envelope, ``api/errors.py``) and answers errors FastAPI cannot
see. :func:`install` wraps ``app.openapi`` so that the generated document:

* drops the 422 and FastAPI's validation-error schemas;
* declares, on every operation, the error responses its route can give, each with the error
  envelope (``#/components/schemas/Error``): 400 when it reads parameters or a body, 401 and
  403 unless it is open to anyone (:data:`OPEN_OPERATIONS`), 404 when the path addresses
  something, 409 and 412 on writes, 413 and 415 when it reads a body, 503 always (a database
  fault answers 503 with ``Retry-After`` anywhere);
* gives every path parameter the rule the server enforces on it (names: 3-64 characters of
  ``[A-Za-z0-9_-]``; versions: digits; resource groups: Azure's rule).

``tests/integration/test_openapi.py`` walks the document and checks these declarations.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI

from mlgrid.api.pull import DEFAULT_MAX_WAIT_SECONDS
from mlgrid.body import DATE_TIME_SCHEMA, case_insensitive
from mlgrid.broker.names import NAME_PATTERN, RESOURCE_GROUP_SCHEMA_PATTERN
from mlgrid.delivery.pull import MAX_EVENTS_PER_RECEIVE, MAX_WAIT_SECONDS
from mlgrid.domain.deliveries import DELIVERY_STATES
from mlgrid.workspace.lifecycle import STATUSES

#: Operations anyone may call (no ``Authorization``): they never answer 401/403.
OPEN_OPERATIONS: Final = frozenset({
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/eventSubscriptions/validate"),
    ("get", "/{tenant}/v2.0/.well-known/openid-configuration"),
    ("post", "/{tenant}/oauth2/v2.0/token"),
    ("get", "/metadata/endpoints"),
})
#: Operations whose errors are not the envelope: OAuth's token endpoint answers RFC 6749's
#: ``{"error", "error_description"}`` and declares its own responses.
OWN_ERRORS: Final = frozenset({("post", "/{tenant}/oauth2/v2.0/token")})

WRITES: Final = frozenset({"put", "post", "patch", "delete"})

ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "SPEC §3's error envelope",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "an ErrorCode (domain/error_codes.py)"},
                "message": {"type": "string", "description": "names the field path when a field is wrong"},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "target": {"type": "string", "description": "the field path or event index"},
                        },
                    },
                },
            },
        }
    },
}
_ERROR_REF: Final = {"$ref": "#/components/schemas/Error"}
ERROR_DESCRIPTIONS: Final[dict[str, str]] = {
    "400": "Bad request: a parameter or a body field is invalid (the message names it)",
    "401": "No credentials, or credentials that identify no one",
    "403": "The caller lacks the role this operation needs",
    "404": "The addressed resource does not exist",
    "409": "The resource's state forbids the operation (or it already exists)",
    "412": "If-Match does not match the current etag",
    "413": "The body is over the size limit",
    "415": "The body is not JSON (or not the declared media type)",
    "503": "The database is unavailable; retry after Retry-After seconds",
}

_NAME: Final[dict[str, Any]] = {
    "type": "string", "minLength": 3, "maxLength": 64, "pattern": NAME_PATTERN.pattern,
}
#: The rule of each path parameter, by its name in the route.
PATH_PARAMETER_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    **{name: _NAME for name in (
        "topic", "parent", "subscription", "workspace", "principal", "experiment", "name",
        "topicName", "systemTopicName", "workspaceName", "eventSubscriptionName",
    )},
    "version": {"type": "string", "pattern": "^[0-9]{1,9}$", "minLength": 1, "maxLength": 9},
    "resourceGroupName": {
        "type": "string", "minLength": 1, "maxLength": 90, "pattern": RESOURCE_GROUP_SCHEMA_PATTERN,
    },
}


DATE_TIME: Final = DATE_TIME_SCHEMA
#: A query parameter given empty is the same as one not given.
_EMPTY: Final[dict[str, Any]] = {"type": "string", "maxLength": 0}
_OPTIONAL_DATE_TIME: Final[dict[str, Any]] = {"anyOf": [DATE_TIME, _EMPTY]}
_STATUS = case_insensitive(STATUSES).removeprefix("^").removesuffix("$")
#: The rule of each query parameter the server checks, by its name (the same name means the
#: same thing on every route that takes it).
QUERY_PARAMETER_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "since": _OPTIONAL_DATE_TIME,
    "until": _OPTIONAL_DATE_TIME,
    "start": _OPTIONAL_DATE_TIME,
    "end": _OPTIONAL_DATE_TIME,
    "status": {
        "type": "string",
        "pattern": rf"^(?:\s*{_STATUS}\s*(?:,\s*{_STATUS}\s*)*)?$",
        "description": "one run status or several, comma separated (any letter case)",
    },
    "state": {
        "type": "string",
        "pattern": "^" + case_insensitive(DELIVERY_STATES).removeprefix("^").removesuffix("$") + "?$",
        "description": "one delivery state (any letter case)",
    },
    "skipToken": {"type": "string", "pattern": "^[A-Za-z0-9_-]*$",
                  "description": "the opaque paging token of a nextLink"},
}
#: Query parameters a route reads itself (not through FastAPI), so FastAPI cannot list them.
EXTRA_QUERY_PARAMETERS: Final[dict[str, list[dict[str, Any]]]] = {
    ":receive": [
        {"name": "maxEvents", "in": "query", "required": False, "description": "events to receive",
         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_EVENTS_PER_RECEIVE, "default": 1}},
        {"name": "maxWaitTime", "in": "query", "required": False,
         "description": "seconds to wait for the first event (long poll)",
         "schema": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS,
                    "default": DEFAULT_MAX_WAIT_SECONDS}},
    ],
}


def expected_errors(method: str, path: str, operation: dict[str, Any]) -> set[str]:
    """The error statuses an operation can answer, from what it reads (see the module doc)."""
    statuses = {"503"}
    if operation.get("parameters") or operation.get("requestBody"):
        statuses.add("400")
    if (method, path) not in OPEN_OPERATIONS:
        statuses |= {"401", "403"}
    if "{" in path:
        statuses.add("404")
    if method in WRITES and (method, path) not in OPEN_OPERATIONS:
        statuses.add("409")
        if method != "post":
            statuses.add("412")
    if operation.get("requestBody"):
        statuses |= {"413", "415"}
    return statuses


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the error responses and parameter rules declared (in place)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR_SCHEMA
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            responses.pop("422", None)
            for suffix, extra in EXTRA_QUERY_PARAMETERS.items():
                if path.endswith(suffix):
                    operation["parameters"] = [*operation.get("parameters", []), *extra]
            for parameter in operation.get("parameters", []):
                tables = {"path": PATH_PARAMETER_SCHEMAS, "query": QUERY_PARAMETER_SCHEMAS}
                table = tables.get(parameter.get("in", ""))
                rule = None if table is None else table.get(parameter.get("name", ""))
                if rule is not None:
                    description = parameter["schema"].get("description")
                    parameter["schema"] = dict(rule)
                    if description and "description" not in rule:
                        parameter["schema"]["description"] = description
            if (method, path) in OWN_ERRORS:
                continue
            for status in sorted(expected_errors(method, path, operation)):
                responses.setdefault(status, {"description": ERROR_DESCRIPTIONS[status]})
                responses[status]["content"] = {"application/json": {"schema": _ERROR_REF}}
    if not schemas:
        document["components"].pop("schemas")
    return document


def install(app: FastAPI) -> None:
    """Make ``app.openapi`` (and so ``/openapi.json``) return the completed document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
