"""The UI's in-process API calls are not logged at INFO; other httpx requests still are."""

from __future__ import annotations

import logging

import httpx
import pytest

from mlgrid.ui.api import INTERNAL_BASE_URL, InternalRequestsFilter


async def _ok(scope: dict[str, object], receive: object, send: object) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"{}"})  # type: ignore[operator]


async def test_internal_requests_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("httpx")
    quiet = InternalRequestsFilter()
    logger.addFilter(quiet)
    try:
        transport = httpx.ASGITransport(app=_ok)
        async with httpx.AsyncClient(transport=transport) as client:
            with caplog.at_level(logging.INFO, logger="httpx"):
                await client.get(f"{INTERNAL_BASE_URL}/topics")
                await client.get("http://elsewhere.test/topics")
    finally:
        logger.removeFilter(quiet)
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert len(lines) == 1 and "elsewhere.test" in lines[0]


def test_warnings_about_internal_requests_pass() -> None:
    record = logging.LogRecord("httpx", logging.WARNING, __file__, 1, "%s", (f"{INTERNAL_BASE_URL}/x",), None)
    assert InternalRequestsFilter().filter(record)
