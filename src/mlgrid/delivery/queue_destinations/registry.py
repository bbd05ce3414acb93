"""The queue destinations of one server, keyed by ``endpointType`` for the dispatcher."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mlgrid.delivery.destinations import Destination
from mlgrid.delivery.queue_destinations.connections import ATTEMPT_TIMEOUT_SECONDS
from mlgrid.delivery.queue_destinations.nats_jetstream import NatsJetStreamDestination
from mlgrid.delivery.queue_destinations.rabbitmq import RabbitMQDestination
from mlgrid.delivery.queue_destinations.redis_stream import RedisStreamDestination
from mlgrid.domain.endpoints import EndpointType

__all__ = ["QueueDestinations"]


@dataclass(frozen=True)
class QueueDestinations:
    """The three destinations, built once per server and closed at shutdown."""

    redis_stream: RedisStreamDestination
    nats_jetstream: NatsJetStreamDestination
    rabbitmq: RabbitMQDestination

    @classmethod
    def create(cls, *, deny_private: bool, timeout: float = ATTEMPT_TIMEOUT_SECONDS) -> QueueDestinations:
        """``deny_private`` is ``Settings.deny_private_endpoints`` (SPEC §6.6)."""
        return cls(
            redis_stream=RedisStreamDestination(deny_private=deny_private, timeout=timeout),
            nats_jetstream=NatsJetStreamDestination(deny_private=deny_private, timeout=timeout),
            rabbitmq=RabbitMQDestination(deny_private=deny_private, timeout=timeout),
        )

    def by_endpoint_type(self) -> dict[str, Destination]:
        """Entries for the dispatcher's ``destinations`` mapping."""
        return {
            EndpointType.REDIS_STREAM: self.redis_stream,
            EndpointType.NATS_JETSTREAM: self.nats_jetstream,
            EndpointType.RABBITMQ: self.rabbitmq,
        }

    @property
    def closers(self) -> list[Callable[[], Awaitable[None]]]:
        """What shutdown calls, after the dispatcher stopped (each closes its connections)."""
        return [self.redis_stream.close, self.nats_jetstream.close, self.rabbitmq.close]

    async def close(self) -> None:
        for close in self.closers:
            await close()
