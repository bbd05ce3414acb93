"""The event catalog (``GET /eventCatalog``) and the same as an AsyncAPI 3 document
(``GET /asyncapi.json``): every event type mlgrid emits or has seen on the topics the caller
may read, with its JSON Schema, a sample and the subscriptions that receive it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mlgrid import __version__
from mlgrid.api.deps import caller, runtime
from mlgrid.api.responses import ExactJSONResponse
from mlgrid.api.topics import scope_of
from mlgrid.auth.roles import Action
from mlgrid.broker.catalog import EventCatalog
from mlgrid.broker.topics import Topic
from mlgrid.events import catalog

router = APIRouter(tags=["event catalog"])


async def readable_topics(request: Request) -> list[Topic]:
    """The custom and system topics whose events and subscriptions the caller may read."""
    rt = runtime(request)
    principal = await caller(request)
    found = []
    for kind in ("system", "custom"):
        for topic in await rt.topics.list(kind):
            if await rt.access.allowed(principal, scope_of(topic), Action.READ_SUBSCRIPTIONS):
                found.append(topic)
    return found


async def catalog_entries(request: Request) -> list[catalog.CatalogEntry]:
    rt = runtime(request)
    return await EventCatalog(rt.db, rt.subscriptions).entries(await readable_topics(request))


# Responses are built here (not returned as dicts) so numbers in samples stay exact: FastAPI's
# encoder would turn a Decimal into a float, or a string.
@router.get("/eventCatalog", summary="Every event type with its JSON Schema, a sample and its subscriptions")
async def event_catalog(request: Request) -> Response:
    return ExactJSONResponse({"value": [entry.as_json() for entry in await catalog_entries(request)]})


@router.get("/asyncapi.json", summary="The event catalog as an AsyncAPI 3.0 document")
async def asyncapi_document(request: Request) -> Response:
    rt = runtime(request)
    document = catalog.asyncapi(await catalog_entries(request), rt.settings.base_url, __version__)
    return ExactJSONResponse(document)
