"""The WebHook destination: one HTTP POST per batch on the dispatcher's shared aiohttp session.

The request is built by ``webhook_request.build_webhook_request`` (exact headers and body of
SPEC §6.1); this module only sends it and turns what happened into an ``AttemptOutcome``:
a status code through ``outcome.classify_response`` (redirects are not followed, so a 3xx is
a failure), anything without a response through ``outcome.classify_error``.

Endpoint safety (SPEC §6.6) is enforced on the addresses the connection really uses: the
session's resolver refuses a name as soon as any address it resolves to is refused by
``endpoint_safety.check_address``, and IP literals (which aiohttp never resolves) are checked
by ``check_hostname`` before the request. A name cannot dodge the rule by resolving
somewhere else after a separate check, because there is no separate check.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from mlgrid import __version__
from mlgrid.delivery.destinations import Attempt
from mlgrid.delivery.endpoint_safety import check_address, check_hostname
from mlgrid.delivery.outcome import (
    AttemptOutcome,
    ErrorKind,
    classify_error,
    classify_response,
    parse_retry_after,
)
from mlgrid.delivery.webhook_request import build_webhook_request
from mlgrid.domain.subscription import Subscription

__all__ = [
    "REQUEST_TIMEOUT_SECONDS",
    "EndpointRefused",
    "SafeResolver",
    "WebhookDestination",
    "create_session",
    "mapping_dicts",
]

#: SPEC §6.2: success means 200-204 *within 30 seconds*.
REQUEST_TIMEOUT_SECONDS = 30.0
#: How much of a response body is read (and thrown away) so the connection can be reused.
_MAX_RESPONSE_BODY = 64 * 1024
#: What is kept of a failing endpoint's answer for the operator: the first bytes of its body,
#: and its headers (each value cut), so a row stays small whatever the endpoint sends.
RESPONSE_BODY_KEPT = 4 * 1024
RESPONSE_HEADERS_KEPT = 40
RESPONSE_HEADER_VALUE_KEPT = 512


class EndpointRefused(OSError):
    """A webhook host resolved to an address the endpoint-safety rules refuse."""


class SafeResolver(AbstractResolver):
    """aiohttp resolver that refuses names resolving to forbidden addresses (SPEC §6.6)."""

    def __init__(self, deny_private: bool, inner: AbstractResolver | None = None) -> None:
        self._deny_private = deny_private
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        reason = check_hostname(host, self._deny_private)
        if reason is not None:
            raise EndpointRefused(reason)
        results = await self._inner.resolve(host, port, family)
        for result in results:
            reason = check_address(result["host"], self._deny_private)
            if reason is not None:
                raise EndpointRefused(f"{host} resolves to a refused address: {reason}")
        return results

    async def close(self) -> None:
        await self._inner.close()


def create_session(deny_private: bool, *, limit: int, limit_per_host: int) -> aiohttp.ClientSession:
    """The dispatcher's one session: pooled keep-alive connections, the safe resolver, no
    redirects (set per request), the 30 s total timeout, no cookies kept between receivers."""
    connector = aiohttp.TCPConnector(
        limit=limit,
        limit_per_host=limit_per_host,
        ttl_dns_cache=10,
        resolver=SafeResolver(deny_private),
        keepalive_timeout=30,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )


USER_AGENT = f"mlgrid/{__version__}"


def mapping_dicts(subscription: Subscription) -> list[dict[str, Any]]:
    """The subscription's delivery attribute mappings in ``build_webhook_request``'s form."""
    result: list[dict[str, Any]] = []
    for mapping in subscription.delivery_attribute_mappings:
        if mapping.type.lower() == "dynamic":
            result.append(
                {"name": mapping.name, "type": "Dynamic", "properties": {"sourceField": mapping.source_field}}
            )
        else:
            result.append(
                {
                    "name": mapping.name,
                    "type": "Static",
                    "properties": {"value": mapping.value, "isSecret": mapping.is_secret},
                }
            )
    return result


def _error_outcome(exc: BaseException) -> AttemptOutcome:
    """Translate aiohttp's exceptions (the boundary) into outcome vocabulary."""
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        if isinstance(exc.os_error, EndpointRefused) or isinstance(exc.__cause__, EndpointRefused):
            return classify_error(ErrorKind.UNSAFE_ENDPOINT, str(exc.os_error))
        return classify_error(ErrorKind.DNS, detail)
    if isinstance(exc, aiohttp.ClientSSLError):
        return classify_error(ErrorKind.TLS, detail)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return classify_error(ErrorKind.TIMEOUT, f"no answer within {REQUEST_TIMEOUT_SECONDS:g} s")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return classify_error(ErrorKind.CONNECTION_REFUSED, detail)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError | ConnectionError):
        return classify_error(ErrorKind.CONNECTION_RESET, detail)
    if isinstance(exc, EndpointRefused):
        return classify_error(ErrorKind.UNSAFE_ENDPOINT, str(exc))
    return classify_error(ErrorKind.OTHER, detail)


def _unsendable(exc: BaseException) -> AttemptOutcome:
    """A request that cannot be built or that the HTTP client refuses to send (a header value
    with a control character): final, since every retry would be refused the same way."""
    return classify_error(ErrorKind.INVALID_REQUEST, f"the request cannot be sent: {exc}")


class WebhookDestination:
    """POSTs batches to ``endpointUrl``; see the module docstring."""

    def __init__(self, session: aiohttp.ClientSession, deny_private: bool) -> None:
        self._session = session
        self._deny_private = deny_private
        # Per subscription (id, etag), what does not change between requests: the parsed URL,
        # the mappings in request form and the host check's verdict.
        self._prepared: dict[tuple[str, str], tuple[URL | None, list[dict[str, Any]], str | None]] = {}

    def _prepare(self, subscription: Subscription) -> tuple[URL | None, list[dict[str, Any]], str | None]:
        key = (subscription.id, subscription.etag)
        hit = self._prepared.get(key)
        if hit is None:
            text = subscription.endpoint_url or ""
            host = urlsplit(text).hostname or ""
            refused = check_hostname(host, self._deny_private) if host else "the subscription has no URL"
            if len(self._prepared) > 10_000:
                self._prepared.clear()
            hit = (URL(text) if refused is None else None, mapping_dicts(subscription), refused)
            self._prepared[key] = hit
        return hit

    async def send(
        self, subscription: Subscription, events: Sequence[Mapping[str, Any]], attempt: Attempt
    ) -> AttemptOutcome:
        url, mappings, refused = self._prepare(subscription)
        if refused is not None or url is None:
            return classify_error(ErrorKind.UNSAFE_ENDPOINT, refused or "no endpoint URL")
        try:
            headers, body = build_webhook_request(
                events,
                delivery_schema=subscription.event_delivery_schema,
                subscription_name=subscription.name,
                delivery_count=attempt.delivery_count,
                mappings=mappings,
                signing_secret=subscription.signing_secret,
                now_ts=int(time.time()),
                batch_id=attempt.batch_id,
                max_events_per_batch=subscription.max_events_per_batch,
            )
        except (ValueError, TypeError) as exc:
            return _unsendable(exc)
        if not any(name.lower() == "user-agent" for name in headers):  # a mapping may set its own
            headers["User-Agent"] = USER_AGENT
        for name, value in attempt.trace_headers.items():  # W3C trace context of this attempt
            if not any(existing.lower() == name for existing in headers):
                headers[name] = value
        started = time.perf_counter()
        try:
            async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                status = response.status
                retry_after_header = response.headers.get("Retry-After")
                prefix = await _drain(response)
                answered = response.headers
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return replace(_error_outcome(exc), duration_ms=_elapsed_ms(started))
        except ValueError as exc:  # the client refused the request before sending it (headers)
            return replace(_unsendable(exc), duration_ms=_elapsed_ms(started))
        retry_after = None
        if retry_after_header is not None:
            retry_after = parse_retry_after(retry_after_header, datetime.now(UTC))
        outcome = classify_response(status, retry_after)
        sample = None if outcome.succeeded else response_sample(answered.items(), prefix)
        return replace(outcome, duration_ms=_elapsed_ms(started), response=sample)


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def response_sample(headers: Iterable[tuple[str, str]], body: bytes) -> str:
    """A failing endpoint's answer as the operator sees it (JSON text): its headers (at most
    ``RESPONSE_HEADERS_KEPT``, values cut) and the first ``RESPONSE_BODY_KEPT`` bytes of its
    body as text. Kept with the delivery so the UI can show why the endpoint refused."""
    kept: dict[str, str] = {}
    for name, value in headers:
        if len(kept) >= RESPONSE_HEADERS_KEPT:
            break
        kept[name] = value[:RESPONSE_HEADER_VALUE_KEPT]
    text = body[:RESPONSE_BODY_KEPT].decode("utf-8", errors="replace")
    return json.dumps({"headers": kept, "body": text, "truncated": len(body) > RESPONSE_BODY_KEPT})


async def _drain(response: aiohttp.ClientResponse) -> bytes:
    """Read a small body to the end so the pooled connection is reused, and return its first
    bytes (a little more than ``RESPONSE_BODY_KEPT``, to tell that it was cut); a large body is
    cut off (the connection is then closed instead of reused)."""
    remaining = _MAX_RESPONSE_BODY
    prefix = b""
    while remaining > 0:
        chunk = await response.content.read(min(remaining, 16 * 1024))
        if not chunk:
            return prefix
        if len(prefix) <= RESPONSE_BODY_KEPT:
            prefix += chunk[: RESPONSE_BODY_KEPT + 1 - len(prefix)]
        remaining -= len(chunk)
    response.close()
    return prefix
