"""The ``RabbitMQ`` destination: a publisher-confirmed, mandatory publish per event to
``exchange`` with ``routingKey`` at ``url``.

Each event is one persistent message (delivery mode 2) whose body is the event's JSON, with
the standard properties ``message_id`` (the event id, the de-duplication key), ``type``
(the event type), ``content_type``, ``app_id`` (``mlgrid``) and the headers of
``message.amqp_headers``.

Success means the broker confirmed the message (``basic.ack``) *and* routed it to at least one
queue: the publish is ``mandatory``, so a message no queue is bound to receive comes back
(``basic.return``, ``NO_ROUTE``) and the attempt fails instead of the event vanishing. That
failure, and a missing exchange (the broker closes the channel with ``404 NOT_FOUND``), are
retryable ``NotFound`` outcomes: the operator may declare the exchange or bind a queue, and
the events then arrive with the next retries. A negative confirmation (``basic.nack``) is a
retryable failure too. Refused credentials and access to the virtual host or exchange are
final (``Unauthorized``/``Forbidden``), like a 401/403 from a webhook.

One connection per URL with one confirming channel on it; a channel the broker closed (a
missing exchange does that) is reopened on the same connection at the next attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq.exceptions as amqp_errors
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from pamqp.commands import Basic

from mlgrid.delivery.destinations import Attempt
from mlgrid.delivery.outcome import AttemptOutcome, ErrorKind, OutcomeName, classify_error
from mlgrid.delivery.queue_destinations.base import PooledQueueDestination
from mlgrid.delivery.queue_destinations.connections import failure, final, socket_outcome, succeeded
from mlgrid.delivery.queue_destinations.message import QueueMessage, amqp_headers
from mlgrid.domain.subscription import Subscription

__all__ = ["RabbitMQDestination"]

_NO_ROUTE = 312


@dataclass
class _Link:
    """A connection and its confirming channel, reopened when the broker closed it."""

    connection: AbstractConnection
    channel: AbstractChannel | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def ready_channel(self) -> AbstractChannel:
        channel = self.channel
        if channel is not None and not channel.is_closed:
            return channel
        async with self.lock:
            if self.channel is None or self.channel.is_closed:
                try:
                    self.channel = await self.connection.channel(
                        publisher_confirms=True, on_return_raises=True
                    )
                except RuntimeError as exc:  # aiormq's "connection closed"
                    raise ConnectionResetError(f"the connection is closed: {exc}") from exc
            return self.channel

    @property
    def usable(self) -> bool:
        """Open, as far as the client knows: aio-pika's own flag only tracks ``close()``,
        so the underlying aiormq connection (closed when the socket broke) is asked too."""
        if self.connection.is_closed:
            return False
        underlay = getattr(getattr(self.connection, "transport", None), "connection", None)
        return underlay is not None and not underlay.is_closed


def _amqp_message(message: QueueMessage) -> aio_pika.Message:
    return aio_pika.Message(
        message.body,
        headers=dict(amqp_headers(message)),
        content_type=message.content_type.split(";", 1)[0],
        content_encoding="utf-8",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.id or None,
        type=message.type or None,
        app_id="mlgrid",
    )


class RabbitMQDestination(PooledQueueDestination[_Link]):
    """Publishes events to a RabbitMQ exchange; one AMQP connection per URL."""

    _client_errors = (amqp_errors.AMQPError, amqp_errors.ChannelInvalidStateError)

    async def _connect(self, url: str) -> _Link:
        connection = await aio_pika.connect(url, timeout=self._timeout)
        return _Link(connection)

    async def _disconnect(self, connection: _Link) -> None:
        await connection.connection.close()

    def _usable(self, connection: _Link) -> bool:
        return connection.usable

    async def send(
        self, subscription: Subscription, events: Sequence[Mapping[str, Any]], attempt: Attempt
    ) -> AttemptOutcome:
        props = subscription.destination_properties
        url = props.get("url")
        exchange_name = props.get("exchange")
        routing_key = props.get("routingKey") or ""
        if not isinstance(url, str) or not isinstance(exchange_name, str) or not isinstance(routing_key, str):
            return final(OutcomeName.GENERIC_ERROR, "the subscription has no RabbitMQ url and exchange")
        messages = self._messages(subscription, events, attempt)
        if not messages:
            return succeeded()

        async def publish(link: _Link) -> AttemptOutcome | None:
            channel = await link.ready_channel()
            exchange: AbstractExchange = (
                channel.default_exchange
                if exchange_name == ""
                else await channel.get_exchange(exchange_name, ensure=False)
            )
            results = await asyncio.gather(
                *(
                    exchange.publish(_amqp_message(m), routing_key, mandatory=True, timeout=self._timeout)
                    for m in messages
                ),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
                if not isinstance(result, Basic.Ack):
                    return failure(
                        OutcomeName.GENERIC_ERROR, f"the broker did not confirm the message: {result!r}"
                    )
            return None

        return await self._attempt(url, publish, lambda exc: self._outcome(exc, exchange_name, routing_key))

    def _outcome(self, exc: BaseException, exchange: str, routing_key: str) -> AttemptOutcome:
        """Translate aio-pika's exceptions (the boundary) into outcome vocabulary."""
        shown = repr(exchange) if exchange else "the default exchange"
        if isinstance(exc, amqp_errors.DeliveryError):
            frame = exc.frame
            if isinstance(frame, Basic.Return):
                if frame.reply_code == _NO_ROUTE and not exchange:
                    return failure(OutcomeName.NOT_FOUND, f"unroutable: no queue named {routing_key!r}")
                if frame.reply_code == _NO_ROUTE:
                    return failure(
                        OutcomeName.NOT_FOUND,
                        f"unroutable: no queue is bound to {shown} for routing key {routing_key!r}",
                    )
                detail = f"the broker returned the message: {frame.reply_text}"
                return failure(OutcomeName.GENERIC_ERROR, detail)
            detail = f"the broker refused the message ({type(frame).__name__})"
            return failure(OutcomeName.GENERIC_ERROR, detail)
        if isinstance(exc, amqp_errors.ChannelNotFoundEntity):
            return failure(OutcomeName.NOT_FOUND, f"the exchange {shown} does not exist: {exc}")
        if isinstance(exc, amqp_errors.ChannelAccessRefused):
            return final(OutcomeName.FORBIDDEN, f"the broker denied publishing to {shown}: {exc}")
        if isinstance(exc, amqp_errors.AuthenticationError | amqp_errors.ProbableAuthenticationError):
            return final(OutcomeName.UNAUTHORIZED, f"the broker refused the credentials: {exc}")
        if isinstance(exc, amqp_errors.ConnectionNotAllowed):
            return final(OutcomeName.FORBIDDEN, f"the broker denied access to the virtual host: {exc}")
        if isinstance(exc, amqp_errors.ChannelClosed):
            return failure(OutcomeName.GENERIC_ERROR, f"the broker closed the channel: {exc}")
        if isinstance(exc, amqp_errors.ChannelInvalidStateError):
            # Another attempt's error closed the shared channel; the next attempt reopens it.
            return failure(
                OutcomeName.GENERIC_ERROR, "the channel was closed by the broker during the attempt"
            )
        network = socket_outcome(exc, self._timeout)
        if network is not None:
            return network
        return classify_error(ErrorKind.OTHER, f"{type(exc).__name__}: {exc}")
