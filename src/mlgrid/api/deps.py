"""Request-scoped helpers shared by the routers: the runtime, the caller, JSON bodies."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from mlgrid.auth.roles import Principal
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from mlgrid.etags import parse_if_match
from mlgrid.events.jsoncodec import loads_exact
from mlgrid.runtime import Runtime

MAX_MANAGEMENT_BODY = 4 * 1024 * 1024


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def caller(request: Request) -> Principal:
    """The authenticated principal (401 when there is none)."""
    return await runtime(request).access.authenticate(request.headers.get("authorization"))


async def read_limited(request: Request, limit: int, what: str = "request") -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"{what} is {declared} bytes; the limit is {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"{what} is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request, *, required: bool = True) -> Any:
    """Parse a management body exactly (numbers as int/Decimal); empty → None when optional."""
    raw = await read_limited(request, MAX_MANAGEMENT_BODY)
    if not raw.strip():
        if required:
            raise BadRequest("request body is required", code=ErrorCode.INVALID_REQUEST)
        return None
    content_type = (request.headers.get("content-type") or "application/json").split(";")[0].strip().lower()
    if content_type not in {"application/json", "text/json"} and not content_type.endswith("+json"):
        raise UnsupportedMediaType(f"content type {content_type!r} is not JSON")
    return loads_exact(raw)


def if_match(request: Request) -> str | None:
    """The ``If-Match`` tag of a write, or None for no check (``etags.py`` holds the rule)."""
    return parse_if_match(request.headers.get("if-match"))
