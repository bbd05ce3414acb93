"""The subscription validation handshake for WebHook destinations (SPEC §4.1).

Before mlgrid posts events to a URL, the owner of that URL must agree, as with Azure Event
Grid; otherwise anyone able to create a subscription could aim a stream of events at a
stranger's server.

* Event Grid and custom schemas: one ``POST`` of Azure's ``SubscriptionValidationEvent``
  (``aeg-event-type: SubscriptionValidation``). A ``200`` whose JSON body holds
  ``{"validationResponse": <the code>}`` validates the subscription at once. A ``200``
  without it leaves it ``AwaitingManualAction``: someone must ``GET`` the ``validationUrl``
  of the event within ``MANUAL_VALIDATION_WINDOW``. Anything else fails the request.
* CloudEvents delivery schema: the CloudEvents Web Hook abuse protection — an ``OPTIONS``
  request with ``WebHook-Request-Origin``; the receiver consents by answering 2xx with
  ``WebHook-Allowed-Origin`` equal to that origin or ``*``.

Every request is checked against the endpoint-safety rule (SPEC §6.6) on the addresses the
host name *resolves to*, and the connection is pinned to those checked addresses, so a name
cannot resolve somewhere harmless for the check and to a metadata service for the request.
Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from mlgrid.delivery.endpoint_safety import ENDPOINT_URL_FIELD, check_address, check_hostname
from mlgrid.delivery.webhook_request import build_webhook_request
from mlgrid.domain.endpoints import EndpointType, ProvisioningState
from mlgrid.domain.schemas import EventSchema
from mlgrid.domain.subscription import Subscription
from mlgrid.errors import MlgridError, WebhookValidationFailed, invalid
from mlgrid.events.jsoncodec import loads_exact
from mlgrid.events.timestamps import format_timestamp

log = logging.getLogger("mlgrid.subscriptions.validation")

VALIDATION_EVENT_TYPE: Final = "Microsoft.EventGrid.SubscriptionValidationEvent"
VALIDATION_TIMEOUT_SECONDS: Final = 30.0
MANUAL_VALIDATION_WINDOW: Final = timedelta(minutes=5)
"""How long the ``validationUrl`` of a manual handshake stays good (Azure: 5 minutes)."""
MAX_RESPONSE_BYTES: Final = 64 * 1024
REQUEST_RATE: Final = "120"


@dataclass(frozen=True)
class ValidationOutcome:
    """What the handshake decided: ``Succeeded`` or ``AwaitingManualAction``."""

    state: str
    detail: str = ""


def needs_validation(new: Subscription, old: Subscription | None) -> bool:
    """Whether saving ``new`` over ``old`` requires a handshake.

    On creation and whenever the endpoint changes, including a change of handshake kind
    (Event Grid vs CloudEvents) or an old subscription that never completed validation.
    """
    if new.endpoint_type != EndpointType.WEBHOOK:
        return False
    if (
        old is None
        or old.endpoint_type != EndpointType.WEBHOOK
        or old.provisioning_state != ProvisioningState.SUCCEEDED
    ):
        return True
    return old.endpoint_url != new.endpoint_url or _is_cloud_events(old) != _is_cloud_events(new)


def manual_window_open(validation_expires_at: datetime | None, now: datetime) -> bool:
    """Whether a manual validation may still complete at ``now``."""
    return validation_expires_at is not None and now < validation_expires_at


def _is_cloud_events(sub: Subscription) -> bool:
    return sub.event_delivery_schema == EventSchema.CLOUD_EVENTS


def validation_event(code: str, validation_url: str, topic_resource_id: str, now: datetime) -> dict[str, Any]:
    """Azure's ``SubscriptionValidationEvent``, field for field."""
    return {
        "id": str(uuid.uuid4()),
        "topic": topic_resource_id,
        "subject": "",
        "data": {"validationCode": code, "validationUrl": validation_url},
        "eventType": VALIDATION_EVENT_TYPE,
        "eventTime": format_timestamp(now),
        "metadataVersion": "1",
        "dataVersion": "1",
    }


class _PinnedResolver(AbstractResolver):
    """Answers with the addresses already resolved and checked, nothing else."""

    def __init__(self, addresses: list[ResolveResult]) -> None:
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [dict(a, port=port or a["port"]) for a in self._addresses]  # type: ignore[misc]

    async def close(self) -> None:
        return None


async def resolve_checked(url: str, deny_private: bool) -> list[ResolveResult]:
    """Resolve the URL's host and refuse it (400 naming ``endpointUrl``) if any address is
    one the endpoint-safety rule forbids. An IP literal resolves to itself."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    reason = check_hostname(host, deny_private)
    if reason is not None:
        raise invalid(ENDPOINT_URL_FIELD, f"endpoint refused: {reason}")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise WebhookValidationFailed(
            f"webhook validation failed: the host {host!r} of {ENDPOINT_URL_FIELD} could not be "
            f"resolved ({exc})"
        ) from exc
    results: list[ResolveResult] = []
    for family, _type, proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        reason = check_address(address, deny_private)
        if reason is not None:
            raise invalid(ENDPOINT_URL_FIELD, f"endpoint refused: {host} resolves to {reason}")
        results.append(
            ResolveResult(hostname=host, host=address, port=port, family=family, proto=proto,
                          flags=socket.AI_NUMERICHOST)
        )
    if not results:
        raise WebhookValidationFailed(f"webhook validation failed: {host!r} resolved to no address")
    return results


class WebhookValidator:
    """Runs the handshake; one instance per server (it holds no connection between calls)."""

    def __init__(
        self, *, origin: str, deny_private: bool, timeout: float = VALIDATION_TIMEOUT_SECONDS
    ) -> None:
        self.origin = origin
        self._deny_private = deny_private
        self._timeout = timeout

    async def validate(
        self,
        sub: Subscription,
        *,
        code: str,
        validation_url: str,
        topic_resource_id: str,
        now: datetime,
    ) -> ValidationOutcome:
        """Run the handshake for ``sub`` (a WebHook); raise ``WebhookValidationFailed`` if the
        endpoint does not agree and ``InvalidField`` if it may not be contacted at all."""
        url = sub.endpoint_url or ""
        addresses = await resolve_checked(url, self._deny_private)
        started = time.monotonic()
        try:
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=_PinnedResolver(addresses), force_close=True),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                auto_decompress=True,
            ) as session:
                if _is_cloud_events(sub):
                    outcome = await self._options(session, url)
                else:
                    outcome = await self._post(
                        session, sub, url, code, validation_url, topic_resource_id, now
                    )
        except MlgridError:
            raise
        except TimeoutError as exc:
            raise WebhookValidationFailed(
                f"webhook validation failed: no answer from the endpoint within {self._timeout:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise WebhookValidationFailed(
                f"webhook validation failed: could not reach the endpoint ({type(exc).__name__}: {exc})"
            ) from exc
        log.info(
            "webhook validation for %s: %s",
            sub.name,
            outcome.state,
            extra={"action": "webhook_validated", "subscription": sub.name, "state": outcome.state,
                   "seconds": round(time.monotonic() - started, 3)},
        )
        return outcome

    async def _post(
        self,
        session: aiohttp.ClientSession,
        sub: Subscription,
        url: str,
        code: str,
        validation_url: str,
        topic_resource_id: str,
        now: datetime,
    ) -> ValidationOutcome:
        event = validation_event(code, validation_url, topic_resource_id, now)
        # The delivery attribute headers go with the handshake too: an endpoint guarded by a
        # static key (an API gateway's subscription key, a function key) cannot answer it
        # otherwise. Where that would let a subscription's author send chosen headers to
        # internal services, private endpoints are refused (the default off loopback).
        mappings = [
            {"name": m.name, "type": m.type,
             "properties": {"value": m.value} if m.type == "Static" else {"sourceField": m.source_field}}
            for m in sub.delivery_attribute_mappings
        ]
        headers, body = build_webhook_request(
            [event],
            delivery_schema=EventSchema.EVENT_GRID,
            subscription_name=sub.name,
            delivery_count=0,
            mappings=mappings,
            signing_secret=sub.signing_secret,
            now_ts=int(now.timestamp()),
        )
        headers["aeg-event-type"] = "SubscriptionValidation"
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
            raw = await _read_limited(response)
            status = response.status
        if status != 200:
            raise WebhookValidationFailed(
                f"webhook validation failed: the endpoint answered HTTP {status} to the "
                "SubscriptionValidationEvent; it must answer 200 with "
                "{\"validationResponse\": <validationCode>}"
            )
        answer = _validation_response(raw)
        if answer is None:
            return ValidationOutcome(
                ProvisioningState.AWAITING_MANUAL_ACTION,
                "the endpoint answered 200 without a validationResponse: GET the validationUrl",
            )
        if answer != code:
            raise WebhookValidationFailed(
                "webhook validation failed: the validationResponse does not match the validationCode sent"
            )
        return ValidationOutcome(ProvisioningState.SUCCEEDED)

    async def _options(self, session: aiohttp.ClientSession, url: str) -> ValidationOutcome:
        headers = {"WebHook-Request-Origin": self.origin, "WebHook-Request-Rate": REQUEST_RATE}
        async with session.options(url, headers=headers, allow_redirects=False) as response:
            await _read_limited(response)
            status = response.status
            allowed = response.headers.get("WebHook-Allowed-Origin")
        if not 200 <= status <= 204:
            raise WebhookValidationFailed(
                f"webhook validation failed: the endpoint answered HTTP {status} to the CloudEvents "
                "abuse-protection OPTIONS request"
            )
        granted = [o.strip() for o in (allowed or "").split(",")]
        if "*" not in granted and self.origin.lower() not in (o.lower() for o in granted):
            raise WebhookValidationFailed(
                f"webhook validation failed: the endpoint did not allow the origin {self.origin!r} "
                "(WebHook-Allowed-Origin must be that origin or *)"
            )
        return ValidationOutcome(ProvisioningState.SUCCEEDED)


async def _read_limited(response: aiohttp.ClientResponse) -> bytes:
    """The body, up to ``MAX_RESPONSE_BYTES`` (a validation answer is a few bytes; more is
    ignored rather than buffered)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(16 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_RESPONSE_BYTES:
            break
    return b"".join(chunks)[:MAX_RESPONSE_BYTES]


def _validation_response(raw: bytes) -> str | None:
    """The ``validationResponse`` of a 200 body, or ``None`` when the body carries none."""
    if not raw.strip():
        return None
    try:
        body = loads_exact(raw)
    except MlgridError:
        return None
    if not isinstance(body, dict):
        return None
    for key, value in body.items():
        if isinstance(key, str) and key.lower() == "validationresponse":
            return value if isinstance(value, str) else str(value)
    return None
