"""The HTTP transport of the Python SDK and the CLI: one place that turns server errors into
``ApiError`` carrying the server's error code, message and details."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mlgrid.events.jsoncodec import dumps

DEFAULT_URL = "http://127.0.0.1:8780"
CA_BUNDLE_VARIABLE = "MLGRID_CA_BUNDLE"


class ApiError(Exception):
    """An error answer from the server (4xx/5xx) or an unreachable server (status 0)."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(f"{code}: {message}" if code else message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


def resolve_connection(
    url: str | None = None, token: str | None = None, environ: Mapping[str, str] | None = None
) -> tuple[str, str | None]:
    """URL and token: explicit values, then ``MLGRID_URL``/``MLGRID_TOKEN``, then the local
    server's defaults (``http://127.0.0.1:8780`` and ``<data-dir>/admin.token``)."""
    env = os.environ if environ is None else environ
    resolved_url = (url or env.get("MLGRID_URL") or DEFAULT_URL).rstrip("/")
    resolved_token = token or env.get("MLGRID_TOKEN")
    if not resolved_token:
        token_file = Path(env.get("MLGRID_DATA_DIR", "./.mlgrid")) / "admin.token"
        if token_file.is_file():
            resolved_token = token_file.read_text().strip()
    return resolved_url, resolved_token


def resolve_verify(ca_bundle: str | None = None, environ: Mapping[str, str] | None = None) -> str | bool:
    """How https servers are verified: against ``ca_bundle``, else ``MLGRID_CA_BUNDLE`` (a PEM
    file, e.g. the ``tls/cert.pem`` of a server started with ``--tls-self-signed``), else the
    system's trust store. Verification is never turned off."""
    env = os.environ if environ is None else environ
    bundle = ca_bundle or env.get(CA_BUNDLE_VARIABLE)
    if not bundle:
        return True
    if not Path(bundle).is_file():
        raise ApiError(0, "ConfigurationError", f"{CA_BUNDLE_VARIABLE}: {bundle!r} is not a readable file")
    return bundle


@dataclass
class Transport:
    url: str
    token: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    verify: str | bool = True
    _client: httpx.Client | None = field(default=None, repr=False)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            self._client = httpx.Client(
                base_url=self.url, headers=headers, timeout=self.timeout, verify=self.verify
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        files: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        try:
            response = self.client.request(
                method,
                path,
                json=json,
                params={k: v for k, v in (params or {}).items() if v is not None},
                content=content,
                files=files,
                data=data,
                headers=headers,
                timeout=timeout if timeout is not None else self.timeout,
            )
        except httpx.TransportError as exc:
            raise ApiError(0, "ConnectionError", f"cannot reach mlgrid at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if not response.content:
            return None
        return response.json()


def request_json(http: Transport, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
    """One request of the SDK's resources: the body is written with the exact JSON codec
    (``Decimal`` stays exact); the answer is decoded JSON, or None when empty."""
    if body is not None:
        kwargs["content"] = dumps(body)
        kwargs["headers"] = {"Content-Type": "application/json", **kwargs.get("headers", {})}
    response = http.request(method, path, **kwargs)
    return response.json() if response.content else None


def all_pages(http: Transport, path: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every item of a listing, following ``nextLink`` (bounded: 10,000 pages)."""
    items: list[dict[str, Any]] = []
    page = request_json(http, "GET", path, params=dict(params or {}))
    for _ in range(10_000):
        items.extend(page.get("value", []))
        next_link = page.get("nextLink")
        if not next_link:
            break
        page = request_json(http, "GET", next_link)
    return items


def if_match_header(if_match: str | None) -> dict[str, str]:
    """The ``If-Match`` header of a conditional request (none without an etag)."""
    return {"If-Match": f'"{if_match}"'} if if_match else {}


def error_from_response(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
        error = body["error"]
        return ApiError(response.status_code, str(error.get("code", "")), str(error.get("message", "")),
                        list(error.get("details") or []))
    except (ValueError, KeyError, TypeError):
        return ApiError(response.status_code, f"HTTP{response.status_code}", response.text[:500])
