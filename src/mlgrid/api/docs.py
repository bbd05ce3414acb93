"""Helpers that put request-body schemas into the OpenAPI document.

Routes read their bodies themselves (numbers must stay exact, errors must name Azure's field
paths, and a 400 - not FastAPI's 422 - answers a bad body), so FastAPI cannot infer their
schemas; routes declare them with ``openapi_extra``. A body declared as a ``mlgrid.body.Body``
model gives its schema from the same model that validates it.
"""

from __future__ import annotations

from typing import Any

from mlgrid.body import Body, openapi_schema


def body_schema(schema: dict[str, Any] | type[Body], content_types: tuple[str, ...] = ("application/json",),
                required: bool = True) -> dict[str, Any]:
    if isinstance(schema, type):
        schema = openapi_schema(schema)
    if not required:
        # An optional body may also be JSON's null, which reads as no body.
        schema = {"anyOf": [schema, {"type": "null"}]}
    return {
        "requestBody": {
            "required": required,
            "content": {ct: {"schema": schema} for ct in content_types},
        }
    }


def file_response(*media_types: str) -> dict[int | str, dict[str, Any]]:
    """``responses`` of a route whose 200 is a file of one of ``media_types`` (not JSON)."""
    return {200: {"description": "the file", "content": {
        media_type: {"schema": {"type": "string", "format": "binary"}} for media_type in media_types
    }}}


#: ``responses`` of a write that answers 201 when it creates and 200 when it replaces.
CREATED_OR_REPLACED: dict[int | str, dict[str, Any]] = {
    200: {"description": "replaced"}, 201: {"description": "created"},
}
