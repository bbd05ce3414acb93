"""Start-up of the web UI (``server.py`` awaits ``setup`` after the other layers).

With ``settings.ui`` off nothing is registered and every UI route answers 404. Otherwise:
the in-process API client the pages use, the live event feed task (woken by the ingestor
when a commit creates deliveries, polling otherwise), and the static files under
``/ui/static``. Shutdown closes the API client; the feed task is cancelled with the others.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from mlgrid.broker.activity import ActivityService
from mlgrid.runtime import Runtime
from mlgrid.ui.api import InternalApi
from mlgrid.ui.common import STATIC_DIR, UiState
from mlgrid.ui.feed import EventFeed


async def setup(rt: Runtime, app: FastAPI) -> None:
    if not rt.settings.ui:
        return
    activity = ActivityService(rt.db)
    state = UiState(runtime=rt, api=InternalApi(app), feed=EventFeed(activity), activity=activity)
    rt.ui = state
    rt.ingestor.add_listener(state.feed.wake)
    rt.tasks.append(asyncio.create_task(state.feed.run(), name="mlgrid-ui-feed"))
    if not any(getattr(route, "name", None) == "ui-static" for route in app.routes):
        app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    rt.closers.append(state.api.aclose)
