"""The event catalog page: every event type with its JSON Schema, a sample and the
subscriptions that receive it — the API's ``GET /eventCatalog`` called as the signed-in
principal (so it shows what that principal may read), also offered as ``/asyncapi.json``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from mlgrid.ui.common import page, session_of, ui_state

router = APIRouter(include_in_schema=False)

KIND_LABELS = {"ml": "ML workspace event", "system": "Event Grid system event", "custom": "custom topic"}


@router.get("/ui/catalog")
@page
async def catalog_page(request: Request) -> Response:
    session = await session_of(request)
    entries = (await session.api.get("/eventCatalog"))["value"]
    return ui_state(request).render(
        "catalog.html", request=request, principal=session.principal, nav="catalog",
        entries=entries, kinds=KIND_LABELS,
    )


@router.get("/ui/asyncapi.json")
@page
async def asyncapi_download(request: Request) -> Response:
    """The API's ``/asyncapi.json`` for the signed-in principal (the browser holds a session,
    not the bearer token the API route asks for)."""
    session = await session_of(request)
    return JSONResponse(await session.api.get("/asyncapi.json"), headers={"Cache-Control": "no-store"})
