"""Helpers that put request-body schemas into the OpenAPI document.

Bodies are parsed by hand (numbers must stay exact and errors must name Azure's field paths),
so FastAPI cannot infer their schemas; routes declare them with ``openapi_extra``.
"""

from __future__ import annotations

from typing import Any


def body_schema(schema: dict[str, Any], content_types: tuple[str, ...] = ("application/json",),
                required: bool = True) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": required,
            "content": {ct: {"schema": schema} for ct in content_types},
        }
    }
