"""The HTTP transport of the Python SDK, the CLI and the web UI: the one place that sends a
request, turns an error answer into ``ApiError`` (the server's code, message and details),
writes and reads JSON, and follows ``nextLink`` pages.

Numbers: request bodies are written with the exact codec (a ``Decimal`` keeps every digit).
Answers are read exactly (fractions as ``Decimal``) where the numbers are the user's own data
that filters compare digit for digit - events, filters, subscriptions: ``exact=True`` - and as
``float`` where they are measurements (metrics, drift coefficients, scores). Both readings are
:func:`decode_json`'s.

The synchronous :class:`Transport` serves the SDK and the CLI; the web UI's in-process async
client (``ui/api.py``) uses the same functions for errors, JSON and paging.

Retries (:class:`RetryPolicy`, ``Client(retry=...)``): a request the server answered 503
(database away, overloaded) or 429, or one that never reached it (connection refused), is
tried again with exponential backoff and jitter, waiting at least what ``Retry-After`` asks,
within a bounded number of tries and a bounded total time. Only requests that are safe to
repeat: ``GET``/``HEAD``/``OPTIONS``/``PUT``/``DELETE``, and a ``POST`` its caller declares
idempotent (publishing events that all carry an ``id``: SPEC §3, an id the topic already
holds is accepted and not delivered again). A request whose connection could not even be
opened is always safe. Uploads of open files are never retried (the stream is spent).
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from mlgrid.events.jsoncodec import dumps

#: ``nextLink`` pages followed at the most by one listing.
MAX_PAGES = 10_000

DEFAULT_URL = "http://127.0.0.1:8780"
CA_BUNDLE_VARIABLE = "MLGRID_CA_BUNDLE"


#: Methods that may be sent twice with the effect of once (RFC 9110 §9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: Answers that say "try again later": the request did nothing.
RETRY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """How the transport retries (``Client(retry=RetryPolicy(...))``; ``RetryPolicy.none()``
    turns retries off).

    ``attempts`` tries in all; pauses of ``backoff`` seconds doubling up to ``max_backoff``
    (with up to 25 % jitter, and never shorter than the server's ``Retry-After``); no retry
    that would end after ``total`` seconds from the first try.
    """

    attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0
    total: float = 30.0

    @classmethod
    def none(cls) -> RetryPolicy:
        return cls(attempts=1)

    def pause(self, retry: int, retry_after: float | None, jitter: float) -> float:
        """Seconds before retry number ``retry`` (1 for the first)."""
        base = min(self.max_backoff, self.backoff * 2.0 ** (retry - 1)) * (1 + 0.25 * jitter)
        return float(max(base, retry_after or 0.0))


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date; None when absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, float(when.timestamp()) - (time.time() if now is None else now))


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


def decode_json(content: bytes, *, exact: bool = False) -> Any:
    """The JSON of an answer (None when empty); ``exact`` reads fractions as ``Decimal``."""
    if not content:
        return None
    return json.loads(content, parse_float=Decimal) if exact else json.loads(content)


def next_page_query(page: Any) -> dict[str, str] | None:
    """The query of a listing's ``nextLink``, or None on the last page.

    Only the query is used (the path stays the caller's), so a server that sees itself under
    another host name - behind a proxy, in a container - still pages correctly.
    """
    link = page.get("nextLink") if isinstance(page, Mapping) else None
    if not link:
        return None
    return dict(parse_qsl(urlsplit(link).query, keep_blank_values=True))


@dataclass
class Transport:
    """A connection to one server. ``token`` is sent as the bearer credential; ``headers``
    (a topic key or SAS token, for the pull consumer) are sent instead when given."""

    url: str
    token: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    verify: str | bool = True
    _client: httpx.Client | None = field(default=None, repr=False)
    headers: Mapping[str, str] | None = field(default=None, repr=False)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    _random: random.Random = field(default_factory=random.Random, repr=False)

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
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send one request (retried by :attr:`retry` when safe: module docstring); an error
        answer raises :class:`ApiError`. ``idempotent`` overrides the method's rule (True:
        a ``POST`` that may be repeated)."""
        safe = method.upper() in IDEMPOTENT_METHODS if idempotent is None else idempotent
        repeatable = safe and not files
        started = time.monotonic()
        attempt = 1
        while True:
            retry_after: float | None = None
            try:
                response = self.client.request(
                    method,
                    path,
                    json=json,
                    params={k: v for k, v in (params or {}).items() if v is not None},
                    content=content,
                    files=files,
                    data=data,
                    headers={**self.headers, **(headers or {})} if self.headers else headers,
                    timeout=timeout if timeout is not None else self.timeout,
                )
            except httpx.TransportError as exc:
                # Never connected: the server saw nothing, so any request may go again.
                if not (repeatable or (isinstance(exc, httpx.ConnectError) and not files)):
                    raise ApiError(0, "ConnectionError", f"cannot reach mlgrid at {self.url}: {exc}") from exc
                error: ApiError = ApiError(0, "ConnectionError", f"cannot reach mlgrid at {self.url}: {exc}")
                cause: BaseException | None = exc
            else:
                if response.status_code < 400:
                    return response
                error, cause = error_from_response(response), None
                if response.status_code not in RETRY_STATUSES or not repeatable:
                    raise error
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt >= self.retry.attempts:
                raise error from cause
            pause = self.retry.pause(attempt, retry_after, self._random.random())
            if time.monotonic() - started + pause > self.retry.total:
                raise error from cause
            self.sleep(pause)
            attempt += 1

    def call(self, method: str, path: str, body: Any = None, *, exact: bool = False, **kwargs: Any) -> Any:
        """One request with a JSON ``body`` (written exactly); the answer's JSON, or None."""
        if body is not None:
            kwargs["content"] = dumps(body)
            kwargs["headers"] = {"Content-Type": "application/json", **kwargs.get("headers", {})}
        return decode_json(self.request(method, path, **kwargs).content, exact=exact)

    def pages(
        self, path: str, params: Mapping[str, Any] | None = None, *, exact: bool = False
    ) -> Iterator[Any]:
        """The ``value`` items of a listing over every page (at most :data:`MAX_PAGES`)."""
        query: dict[str, Any] = dict(params or {})
        for _ in range(MAX_PAGES):
            page = self.call("GET", path, params=query, exact=exact) or {}
            yield from page.get("value", [])
            next_query = next_page_query(page)
            if next_query is None:
                return
            query = next_query


def if_match_header(if_match: str | None) -> dict[str, str]:
    """The ``If-Match`` header of a conditional request (none without an etag)."""
    return {"If-Match": f'"{if_match}"'} if if_match else {}


def error_from_response(response: httpx.Response) -> ApiError:
    """The ``ApiError`` of an error answer: the envelope's code, message and details, or the
    status and the start of the body when the answer is not mlgrid's envelope."""
    try:
        body = json.loads(response.content)
        error = body["error"]
        return ApiError(response.status_code, str(error.get("code", "")), str(error.get("message", "")),
                        list(error.get("details") or []))
    except (ValueError, KeyError, TypeError):
        return ApiError(response.status_code, f"HTTP{response.status_code}", response.text[:500])
