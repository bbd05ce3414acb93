"""A request the HTTP client refuses to send is a final outcome, not a retry for 24 hours.

Header values are checked when a subscription is created (control characters are refused),
but a stored value from before that rule, or any other request the client refuses, must
still end at once: the same request would be refused on every attempt. The destination runs
against a real receiver on loopback, which must see nothing of the refused request.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from mlgrid.delivery.destinations import Attempt
from mlgrid.delivery.outcome import OutcomeName
from mlgrid.delivery.webhook import WebhookDestination, create_session
from mlgrid.domain.endpoints import EndpointType
from mlgrid.domain.event_filter import EventFilter
from mlgrid.domain.subscription import DeliveryAttributeMapping, Subscription


def _subscription(url: str, header_value: str) -> Subscription:
    return Subscription(
        id=f"s-{header_value!r}",
        name="unsafe",
        topic_key="t",
        topic_name="t",
        topic_kind="custom",
        stored_schema="EventGridSchema",
        input_schema="EventGridSchema",
        endpoint_type=EndpointType.WEBHOOK,
        event_filter=EventFilter(),
        event_delivery_schema="EventGridSchema",
        endpoint_url=url,
        delivery_attribute_mappings=(DeliveryAttributeMapping("X-Team", "Static", value=header_value),),
    )


def test_a_header_value_the_client_refuses_is_a_final_outcome_and_nothing_is_sent() -> None:
    async def scenario() -> None:
        received: list[str] = []

        async def hook(request: web.Request) -> web.Response:
            received.append(request.headers.get("X-Team", ""))
            return web.Response(status=200)

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        session = create_session(False, limit=4, limit_per_host=4)
        try:
            destination = WebhookDestination(session, deny_private=False)
            url = f"http://127.0.0.1:{port}/hook"
            event = {"id": "e1", "eventType": "T", "data": {}}
            refused = await destination.send(_subscription(url, "ml\x0bteam"), [event], Attempt(0, "b1"))
            fine = await destination.send(_subscription(url, "ml team"), [event], Attempt(0, "b2"))
        finally:
            await session.close()
            await runner.cleanup()
        assert not refused.succeeded and not refused.retryable
        assert refused.name == OutcomeName.INVALID_REQUEST
        assert "cannot be sent" in refused.detail
        assert fine.succeeded
        assert received == ["ml team"]

    asyncio.run(scenario())
