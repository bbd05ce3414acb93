"""The ``RedisStream`` destination: one XADD per event to ``stream`` at ``url``.

Each event becomes one stream entry whose fields are those of ``message.redis_fields``
(``event`` holds the JSON; ``id``, ``type``, ``subject``, ``source``, ``time``,
``subscription``, ``deliveryCount``, ``contentType`` the metadata). The entry id is chosen
by Redis (``*``), so entries keep the order in which attempts reached the server.

The stream is created by the first XADD, as Redis always does; nothing is trimmed (capping
the stream is the operator's choice, e.g. with their own ``XTRIM``). Several events of one
attempt are sent in one MULTI/EXEC, so they arrive together and next to each other.

Success means Redis answered the XADD. Redis has no de-duplication of its own: a retried
attempt whose first answer was lost appends the event again, with the same ``id`` field,
which consumers use to drop duplicates (at-least-once delivery, SPEC §11).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from mlgrid.delivery.destinations import Attempt
from mlgrid.delivery.outcome import AttemptOutcome, ErrorKind, OutcomeName, classify_error
from mlgrid.delivery.queue_destinations.base import PooledQueueDestination
from mlgrid.delivery.queue_destinations.connections import failure, final, socket_outcome, succeeded
from mlgrid.delivery.queue_destinations.message import redis_fields
from mlgrid.domain.subscription import Subscription

__all__ = ["RedisStreamDestination"]


class RedisStreamDestination(PooledQueueDestination[Redis]):
    """Appends events to Redis streams; one ``redis.asyncio.Redis`` client per URL."""

    _client_errors = (redis_errors.RedisError,)

    async def _connect(self, url: str) -> Redis:
        # The client keeps its own small pool of sockets and reconnects by itself; one
        # immediate retry covers a pooled socket the server closed while it was idle.
        client: Redis = Redis.from_url(
            url,
            socket_connect_timeout=self._timeout,
            socket_timeout=self._timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis_errors.ConnectionError,)),
        )
        return client

    async def _disconnect(self, connection: Redis) -> None:
        await connection.aclose()

    async def send(
        self, subscription: Subscription, events: Sequence[Mapping[str, Any]], attempt: Attempt
    ) -> AttemptOutcome:
        url = subscription.destination_properties.get("url")
        stream = subscription.destination_properties.get("stream")
        if not isinstance(url, str) or not isinstance(stream, str):
            return final(OutcomeName.GENERIC_ERROR, "the subscription has no Redis url and stream")
        messages = self._messages(subscription, events, attempt)
        if not messages:
            return succeeded()

        async def publish(client: Redis) -> None:
            entries: list[dict[Any, Any]] = [redis_fields(m) for m in messages]
            if len(entries) == 1:
                await client.xadd(stream, entries[0])
            else:
                async with client.pipeline(transaction=True) as pipe:
                    for fields in entries:
                        pipe.xadd(stream, fields)
                    await pipe.execute()

        return await self._attempt(url, publish, lambda exc: self._outcome(exc, stream))

    def _outcome(self, exc: BaseException, stream: str) -> AttemptOutcome:
        """Translate redis-py's exceptions (the boundary) into outcome vocabulary."""
        if isinstance(exc, redis_errors.AuthenticationError | redis_errors.AuthorizationError):
            return final(OutcomeName.UNAUTHORIZED, f"Redis refused the credentials: {exc}")
        if isinstance(exc, redis_errors.NoPermissionError):
            return final(OutcomeName.FORBIDDEN, f"Redis denied XADD to {stream!r}: {exc}")
        if isinstance(exc, redis_errors.TimeoutError):
            return classify_error(ErrorKind.TIMEOUT, f"Redis did not answer within {self._timeout:g} s")
        if isinstance(exc, redis_errors.ResponseError):
            text = str(exc)
            if text.startswith("WRONGTYPE"):
                detail = f"the key {stream!r} holds a value that is not a stream"
                return failure(OutcomeName.GENERIC_ERROR, detail)
            if text.startswith("NOAUTH"):
                return final(OutcomeName.UNAUTHORIZED, f"Redis requires a password: {text}")
            busy = text.startswith(("LOADING", "BUSY", "TRYAGAIN"))
            if busy or isinstance(exc, redis_errors.OutOfMemoryError):
                return failure(OutcomeName.BUSY, f"Redis is busy: {text}")
            return failure(OutcomeName.GENERIC_ERROR, f"Redis answered with an error: {text}")
        if isinstance(exc, redis_errors.BusyLoadingError):
            return failure(OutcomeName.BUSY, f"Redis is loading its data set: {exc}")
        network = socket_outcome(exc, self._timeout)
        if network is not None:
            return network
        if isinstance(exc, redis_errors.ConnectionError):
            return classify_error(ErrorKind.CONNECTION_RESET, f"Redis connection failed: {exc}")
        return classify_error(ErrorKind.OTHER, f"{type(exc).__name__}: {exc}")
