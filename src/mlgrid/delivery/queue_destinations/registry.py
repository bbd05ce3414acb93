"""The queue destinations of one server, keyed by ``endpointType`` for the dispatcher.

Each destination is built, and its client library (redis, nats-py, aio-pika) imported, on its
first delivery: most servers use none or one of them, and importing all three cost about half a
second of every start (``python -X importtime``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mlgrid.delivery.destinations import Attempt, Destination
from mlgrid.delivery.outcome import AttemptOutcome
from mlgrid.delivery.queue_destinations.connections import ATTEMPT_TIMEOUT_SECONDS
from mlgrid.domain.endpoints import EndpointType
from mlgrid.domain.subscription import Subscription

__all__ = ["QueueDestinations"]

class _QueueDestination(Destination, Protocol):
    async def close(self) -> None: ...


@dataclass
class _OnFirstUse:
    """A queue destination built at its first ``send`` (and never, if no subscription uses it)."""

    endpoint_type: str
    build: Callable[[], _QueueDestination]
    _built: _QueueDestination | None = field(default=None, init=False)

    async def send(
        self, subscription: Subscription, events: Sequence[Mapping[str, Any]], attempt: Attempt
    ) -> AttemptOutcome:
        if self._built is None:
            self._built = self.build()
        return await self._built.send(subscription, events, attempt)

    async def close(self) -> None:
        if self._built is not None:
            await self._built.close()


def _redis_stream(deny_private: bool, timeout: float) -> _QueueDestination:
    from mlgrid.delivery.queue_destinations.redis_stream import RedisStreamDestination

    return RedisStreamDestination(deny_private=deny_private, timeout=timeout)


def _nats_jetstream(deny_private: bool, timeout: float) -> _QueueDestination:
    from mlgrid.delivery.queue_destinations.nats_jetstream import NatsJetStreamDestination

    return NatsJetStreamDestination(deny_private=deny_private, timeout=timeout)


def _rabbitmq(deny_private: bool, timeout: float) -> _QueueDestination:
    from mlgrid.delivery.queue_destinations.rabbitmq import RabbitMQDestination

    return RabbitMQDestination(deny_private=deny_private, timeout=timeout)


@dataclass(frozen=True)
class QueueDestinations:
    """The three destinations, each built on first use, closed at shutdown."""

    redis_stream: _OnFirstUse
    nats_jetstream: _OnFirstUse
    rabbitmq: _OnFirstUse

    @classmethod
    def create(cls, *, deny_private: bool, timeout: float = ATTEMPT_TIMEOUT_SECONDS) -> QueueDestinations:
        """``deny_private`` is ``Settings.deny_private_endpoints`` (SPEC §6.6)."""
        return cls(
            redis_stream=_OnFirstUse(EndpointType.REDIS_STREAM, lambda: _redis_stream(deny_private, timeout)),
            nats_jetstream=_OnFirstUse(
                EndpointType.NATS_JETSTREAM, lambda: _nats_jetstream(deny_private, timeout)
            ),
            rabbitmq=_OnFirstUse(EndpointType.RABBITMQ, lambda: _rabbitmq(deny_private, timeout)),
        )

    def by_endpoint_type(self) -> dict[str, Destination]:
        """Entries for the dispatcher's ``destinations`` mapping."""
        return {d.endpoint_type: d for d in (self.redis_stream, self.nats_jetstream, self.rabbitmq)}

    @property
    def closers(self) -> list[Callable[[], Awaitable[None]]]:
        """What shutdown calls, after the dispatcher stopped (each closes its connections)."""
        return [self.redis_stream.close, self.nats_jetstream.close, self.rabbitmq.close]

    async def close(self) -> None:
        for close in self.closers:
            await close()
