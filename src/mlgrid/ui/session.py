"""Signing in to the web UI with a token, and who is looking at a page.

The token a principal signs in with is kept in a cookie the page's scripts cannot read
(``HttpOnly``) and the browser never sends on a request started by another site
(``SameSite=Strict``), so a foreign page can neither steal it nor make the UI act with it.
Every page turns the cookie back into the principal through the same token check as the API
(``AccessService.principal_for_token``) and calls the API with it as a bearer token.
Forms that change something additionally refuse a request whose ``Origin`` is another site.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from mlgrid.auth.roles import Principal
from mlgrid.runtime import Runtime
from mlgrid.ui.api import ApiSession, InternalApi

COOKIE = "mlgrid_ui_token"
LOGIN_PATH = "/ui/login"


@dataclass(frozen=True)
class Session:
    """The signed-in principal of one request and the API as that principal."""

    principal: Principal
    api: ApiSession


class LoginRequired(Exception):
    """No valid token cookie: the page redirects to the login form."""


class CrossSiteRequest(Exception):
    """A state-changing form posted from another origin."""


async def current_session(request: Request, rt: Runtime, api: InternalApi) -> Session:
    token = request.cookies.get(COOKIE)
    if not token:
        raise LoginRequired
    principal = await rt.access.principal_for_token(token)
    if principal is None:
        raise LoginRequired
    return Session(principal, api.as_principal(token))


def check_same_origin(request: Request) -> None:
    """Refuse a form post whose ``Origin`` (or ``Referer``) names another host."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return
    host = request.headers.get("host", "")
    if urlsplit(origin).netloc.lower() != host.lower():
        raise CrossSiteRequest


def safe_next(target: str | None) -> str:
    """A local path to go to after signing in; anything else (another site) becomes ``/``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_redirect(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{LOGIN_PATH}?next={quote(here, safe='')}", status_code=303)


def set_token_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def clear_token_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
