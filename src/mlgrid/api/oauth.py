"""An OAuth 2.0 token endpoint (client credentials) with OpenID discovery, for Azure's SDKs.

``azure.identity.ClientSecretCredential(tenant_id, client_id=<principal>,
client_secret=<token>, authority="https://<mlgrid host:port>", disable_instance_discovery=True)``
asks MSAL for a token: MSAL reads ``{authority}/{tenant}/v2.0/.well-known/openid-configuration``,
then POSTs ``grant_type=client_credentials`` with the client id, the secret and Azure's scope
(``https://eventgrid.azure.net/.default``, ``https://management.azure.com/.default``) to the
``token_endpoint`` it names. The answer's ``access_token`` is an mlgrid bearer token, which every
route accepts.

* The client is an mlgrid principal: ``client_id`` is its name and ``client_secret`` its token
  (checked together, so a token alone under another name is refused). The access token handed
  back is that same token: mlgrid tokens are already bearer tokens, revoked by replacing the
  principal's token, and a second kind of token would be one more secret to store and revoke.
* mlgrid has one tenant: any tenant segment in the path is accepted and echoed in the issuer.
* Errors follow RFC 6749 §5.2 (``{"error": "invalid_client", "error_description": ...}``),
  not mlgrid's envelope, because OAuth clients read that shape; the token endpoint is public
  (it is where credentials are presented) and answers ``Cache-Control: no-store``.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import parse_qs, unquote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mlgrid.api.deps import read_limited, runtime

router = APIRouter(tags=["oauth"])

TOKEN_LIFETIME_SECONDS = 3600
MAX_FORM_BYTES = 16 * 1024
# Audiences whose ``/.default`` scope Azure clients ask for; mlgrid serves both planes.
ACCEPTED_RESOURCES = (
    "https://eventgrid.azure.net",
    "https://management.azure.com",
    "https://management.core.windows.net",
)
# Scopes MSAL adds on its own; they ask for nothing a client-credentials token carries.
_IGNORED_SCOPES = frozenset({"openid", "profile", "offline_access"})
_AUDIENCE = "(?:" + "|".join(re.escape(r) for r in ACCEPTED_RESOURCES) + r")/*/\.default"
_IGNORED = "(?:" + "|".join(sorted(_IGNORED_SCOPES)) + ")"
#: What ``scope_problem`` accepts, for the schema: at least one served audience.
_SCOPE_PATTERN = rf"^\s*(?:{_IGNORED}\s+)*{_AUDIENCE}(?:\s+(?:{_AUDIENCE}|{_IGNORED}))*\s*$"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

_TENANT_PARAMETER = {
    "parameters": [{"name": "tenant", "in": "path", "required": True, "schema": {"type": "string"},
                    "description": "any tenant id or name: mlgrid has one tenant"}]
}
_TOKEN_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object",
            "required": ["grant_type", "client_id", "client_secret", "scope"],
            "properties": {
                "grant_type": {"type": "string", "enum": ["client_credentials"]},
                "client_id": {"type": "string", "description": "the principal's name"},
                "client_secret": {"type": "string", "description": "the principal's token"},
                "scope": {"type": "string", "example": "https://eventgrid.azure.net/.default",
                          "pattern": _SCOPE_PATTERN,
                          "description": "space-separated; one of the served audiences' /.default "
                          "(openid, profile, offline_access are ignored)"},
            },
        }}},
    }
}


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="mlgrid"'
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers=headers)


def scope_problem(scope: str) -> str | None:
    """Why ``scope`` (space-separated, as sent) cannot be granted, or None when it can."""
    wanted = [s for s in scope.split() if s not in _IGNORED_SCOPES]
    if not wanted:
        return "scope is required, e.g. https://eventgrid.azure.net/.default"
    for item in wanted:
        resource = item.removesuffix("/.default").rstrip("/")
        if not item.endswith("/.default") or resource not in ACCEPTED_RESOURCES:
            accepted = ", ".join(f"{r}/.default" for r in ACCEPTED_RESOURCES)
            return f"scope {item!r} is not served here; use one of {accepted}"
    return None


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (unquote(client_id), unquote(secret)) if sep else None


@router.get("/{tenant}/v2.0/.well-known/openid-configuration", summary="OpenID discovery document",
            openapi_extra=_TENANT_PARAMETER)
async def openid_configuration(request: Request) -> JSONResponse:
    base = runtime(request).settings.base_url
    tenant = request.path_params["tenant"]
    body: dict[str, Any] = {
        "issuer": f"{base}/{tenant}/v2.0",
        "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
        # Required by MSAL's parser; mlgrid has no interactive sign-in, so it is never served.
        "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "response_types_supported": ["token"],
        "scopes_supported": [f"{r}/.default" for r in ACCEPTED_RESOURCES],
        "tenant_region_scope": None,
    }
    return JSONResponse(body)


@router.post("/{tenant}/oauth2/v2.0/token", summary="OAuth 2.0 token (client credentials)",
             openapi_extra=_TENANT_PARAMETER | _TOKEN_BODY,
             responses={200: {"description": "access_token, token_type Bearer, expires_in"},
                        400: {"description": "RFC 6749 error: invalid_request, unsupported_grant_type, "
                                             "invalid_scope"},
                        401: {"description": "RFC 6749 error: invalid_client"}})
async def token(request: Request) -> JSONResponse:
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return _oauth_error(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
    try:
        raw = await read_limited(request, MAX_FORM_BYTES, "the form")
        form = {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
    except UnicodeDecodeError:
        return _oauth_error(400, "invalid_request", "the form is not UTF-8")
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type",
                            f"grant_type {form.get('grant_type')!r}: only client_credentials is supported")
    basic = _basic_credentials(request.headers.get("authorization"))
    client_id, secret = basic if basic is not None else (form.get("client_id"), form.get("client_secret"))
    if not client_id or not secret:
        return _oauth_error(401, "invalid_client", "client_id (the principal's name) and client_secret "
                                                   "(its token) are required")
    problem = scope_problem(form.get("scope", ""))
    if problem is not None:
        return _oauth_error(400, "invalid_scope", problem)
    principal = await runtime(request).access.principal_for_token(secret)
    if principal is None or principal.name.lower() != client_id.lower():
        return _oauth_error(401, "invalid_client",
                            f"client_secret is not the token of principal {client_id!r}")
    body = {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME_SECONDS,
            "ext_expires_in": TOKEN_LIFETIME_SECONDS, "access_token": secret}
    return JSONResponse(body, headers=_NO_STORE)
