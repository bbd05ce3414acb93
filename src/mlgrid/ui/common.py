"""What every UI page shares: the UI's services, template rendering, and the page wrapper.

``page`` turns the ways a page can fail into answers a person can act on: no valid token
cookie → the login form (and back afterwards); an API error → the error page with the API's
own status, code and message (a 403 says which role is missing); a cross-site form post →
403. Pages are served with a strict Content-Security-Policy: only this server's own scripts,
styles and images, nothing inline but SVG.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ParamSpec

import orjson
from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlgrid import __version__
from mlgrid.auth.roles import Principal
from mlgrid.broker.activity import ActivityService
from mlgrid.errors import MlgridError
from mlgrid.events.jsoncodec import loads_exact
from mlgrid.events.timestamps import format_timestamp, parse_timestamp
from mlgrid.runtime import Runtime
from mlgrid.ui.api import ApiFailure, InternalApi
from mlgrid.ui.feed import EventFeed
from mlgrid.ui.session import CrossSiteRequest, LoginRequired, Session, current_session, login_redirect
from mlgrid.ui.stream import QueueViewers

UI_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = UI_DIR / "templates"
STATIC_DIR = UI_DIR / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _pretty_json(value: Any) -> str:
    """Indented JSON; JSON text is re-read exactly so numbers keep every digit."""
    if isinstance(value, (str, bytes)):
        try:
            value = loads_exact(value)
        except MlgridError:
            return value if isinstance(value, str) else value.decode(errors="replace")

    def default(obj: Any) -> Any:
        if isinstance(obj, Decimal):
            return orjson.Fragment(str(obj))
        return str(obj)

    return orjson.dumps(value, default=default, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()


def _when(value: Any) -> Markup:
    """A ``<time>`` element: ISO text the page's script shows as local and relative time."""
    if value is None or value == "":
        return Markup('<span class="muted">—</span>')
    moment = value if isinstance(value, datetime) else parse_timestamp(str(value))
    if moment is None:
        return Markup("<span>{}</span>").format(str(value))
    iso = format_timestamp(moment)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso, iso, iso.replace("T", " ")[:19])


def _short(value: Any, length: int = 12) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= length else text[: length - 1] + "…"


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def _state_class(value: Any) -> str:
    """A CSS class for a state word (delivery states, run statuses, endpoint states)."""
    text = str(value or "").lower()
    good = {"delivered", "completed", "healthy", "succeeded", "closed", "ok"}
    bad = {"deadlettered", "dropped", "failed", "failing", "unhealthy", "open", "canceled", "drift"}
    warn = {"pending", "running", "deploying", "half-open", "retrying", "queued", "preparing",
            "awaitingmanualaction", "finalizing", "cancelrequested", "notstarted", "starting"}
    if text in good:
        return "good"
    if text in bad:
        return "bad"
    if text in warn:
        return "warn"
    return "neutral"


def build_templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty_json"] = _pretty_json
    env.filters["when"] = _when
    env.filters["short"] = _short
    env.filters["number"] = _number
    env.filters["state_class"] = _state_class
    env.globals["version"] = __version__
    return env


@dataclass
class UiState:
    """The UI's services on one server (``rt.ui``)."""

    runtime: Runtime
    api: InternalApi
    feed: EventFeed
    activity: ActivityService
    templates: Environment = field(default_factory=build_templates)
    queues: QueueViewers = field(default_factory=QueueViewers)

    def render(
        self,
        name: str,
        *,
        principal: Principal | None = None,
        status_code: int = 200,
        request: Request | None = None,
        **context: Any,
    ) -> HTMLResponse:
        notice = request.query_params.get("notice") if request is not None else None
        html = self.templates.get_template(name).render(
            principal=principal, notice=notice, path=request.url.path if request else "", **context
        )
        return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def ui_state(request: Request) -> UiState:
    """The UI's services; 404 (as an unknown route) when the server runs with the UI off."""
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    state = None if rt is None else rt.ui
    if state is None:
        raise StarletteHTTPException(404)
    found: UiState = state
    return found


async def session_of(request: Request) -> Session:
    state = ui_state(request)
    return await current_session(request, state.runtime, state.api)


P = ParamSpec("P")


def page(handler: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
    """Wrap a page handler (which takes ``request``) with the UI's error answers."""

    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        request = kwargs.get("request")
        assert isinstance(request, Request), "page handlers take request as a keyword argument"
        try:
            return await handler(*args, **kwargs)
        except LoginRequired:
            return login_redirect(request)
        except CrossSiteRequest:
            return error_page(request, 403, "Forbidden", "This form was posted from another site.")
        except ApiFailure as exc:
            if exc.status == 401:
                return login_redirect(request)
            return error_page(request, exc.status, exc.code, exc.message)
        except MlgridError as exc:
            if exc.status == 401:
                return login_redirect(request)
            return error_page(request, exc.status, exc.code, exc.message)

    return wrapper


def error_page(request: Request, status: int, code: str, message: str) -> Response:
    state = ui_state(request)
    return state.render(
        "error.html", request=request, status_code=status, status=status, code=code, message=message,
        principal=None,
    )
