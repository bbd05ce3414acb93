"""The web UI's view of the REST API: the same app, called in-process as the signed-in principal.

Pages are built from the very routes the SDK and the CLI use, with the viewer's token as the
bearer credential. So the UI shows exactly what the API would show that principal, every
permission check is the API's own (one RBAC, not two), and a page for a part of the API that
this server does not have yet (a route answering "no such route") says so instead of failing.
The calls never leave the process: httpx's ASGI transport hands them to the app directly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from mlgrid.client.http import MAX_PAGES, decode_json, error_from_response, next_page_query
from mlgrid.events.jsoncodec import dumps

MISSING_ROUTE_MESSAGES = frozenset({"no such route", "method not allowed on this route"})
INTERNAL_BASE_URL = "http://mlgrid.internal"


class InternalRequestsFilter(logging.Filter):
    """Drops httpx's INFO line for each in-process call of the UI ("HTTP Request: GET
    http://mlgrid.internal/..."): a page makes several, and they drowned the server's log.
    Warnings and errors, and requests to anywhere else, pass. ``mlgrid serve`` installs it
    on the ``httpx`` logger when it sets up logging."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(str(arg).startswith(INTERNAL_BASE_URL) for arg in args)


def seg(value: str) -> str:
    """One path segment, quoted so a crafted name cannot address another route."""
    return quote(value, safe="")


class ApiFailure(Exception):
    """An error answer of the API, with its status, code and message (SPEC §3 envelope)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @property
    def missing_route(self) -> bool:
        """The server has no such route (a part of the API this build does not serve)."""
        return self.status in (404, 405) and self.message in MISSING_ROUTE_MESSAGES


def _failure(response: httpx.Response) -> ApiFailure:
    error = error_from_response(response)
    return ApiFailure(error.status, error.code, error.message)


class InternalApi:
    """One in-process HTTP client for the app; ``as_principal`` binds a token to it."""

    def __init__(self, app: Any) -> None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self._client = httpx.AsyncClient(transport=transport, base_url=INTERNAL_BASE_URL, timeout=None)

    def as_principal(self, token: str) -> ApiSession:
        return ApiSession(self._client, token)

    async def aclose(self) -> None:
        await self._client.aclose()


class ApiSession:
    """API calls authorised with one principal's bearer token."""

    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self._client = client
        self._headers = {"Authorization": f"Bearer {token}"}

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
    ) -> httpx.Response:
        headers = dict(self._headers)
        if content_type:
            headers["Content-Type"] = content_type
        body = dumps(json) if json is not None else content
        if json is not None:
            headers["Content-Type"] = "application/json"
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        response = await self._client.request(method, path, params=clean, content=body, headers=headers)
        if response.status_code >= 400:
            raise _failure(response)
        return response

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return decode_json((await self.call("GET", path, params=params)).content)

    async def post(self, path: str, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        return decode_json((await self.call("POST", path, json=json, params=params)).content)

    async def optional(self, path: str, params: Mapping[str, Any] | None = None) -> Any | None:
        """GET, or ``None`` when the server has no such route (an API not built yet)."""
        try:
            return await self.get(path, params)
        except ApiFailure as exc:
            if exc.missing_route:
                return None
            raise

    async def items(self, path: str, params: Mapping[str, Any] | None = None, limit: int = 500) -> list[Any]:
        """The ``value`` items of a list, following ``nextLink`` until ``limit`` items."""
        found: list[Any] = []
        body = await self.get(path, params)
        for _ in range(MAX_PAGES):
            found.extend((body or {}).get("value", []))
            query = next_page_query(body)
            if query is None or len(found) >= limit:
                break
            body = await self.get(path, query)
        return found[:limit]
