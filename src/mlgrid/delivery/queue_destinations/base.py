"""The attempt skeleton the three queue destinations share.

Every queue destination does the same around its broker-specific publish: build one message
per event, lease the pooled connection for the URL, publish under one deadline that covers
connecting too (SPEC §6.2), translate the client library's exception into an outcome with the
URL's password masked, and drop the connection after a timeout or a socket error so the next
attempt opens a fresh one. Keeping that here means the three agree on it by construction;
each subclass supplies only how to open, close and judge a connection, how to publish, and how
to name its library's errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from mlgrid.delivery.destinations import Attempt
from mlgrid.delivery.outcome import AttemptOutcome, OutcomeName
from mlgrid.delivery.queue_destinations.connections import (
    ATTEMPT_TIMEOUT_SECONDS,
    IDLE_SECONDS,
    ConnectionPool,
    EndpointRefused,
    check_endpoint,
    scrubbed,
    succeeded,
)
from mlgrid.delivery.queue_destinations.message import QueueMessage, build_queue_messages
from mlgrid.domain.subscription import Subscription

__all__ = ["PooledQueueDestination"]

C = TypeVar("C")

#: Outcomes after which the pooled connection is not trusted again.
_BROKEN_CONNECTION = (OutcomeName.TIMED_OUT, OutcomeName.SOCKET_ERROR)


class PooledQueueDestination(Generic[C]):
    """Base of a destination that keeps one pooled connection of type ``C`` per URL.

    Subclasses set ``_client_errors`` (the exceptions their client library raises; timeouts,
    ``OSError`` and ``EndpointRefused`` are always caught) and implement ``_connect`` and
    ``_disconnect``; ``_usable`` defaults to trusting the client.
    """

    #: Exceptions of one attempt that become an outcome instead of propagating.
    _client_errors: tuple[type[BaseException], ...] = ()

    def __init__(
        self,
        *,
        deny_private: bool,
        timeout: float = ATTEMPT_TIMEOUT_SECONDS,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self._deny_private = deny_private
        self._timeout = timeout
        self._caught: tuple[type[BaseException], ...] = (
            TimeoutError,
            OSError,
            EndpointRefused,
            *self._client_errors,
        )
        self._pool: ConnectionPool[C] = ConnectionPool(
            self._open, self._close_quietly, self._usable, idle_seconds=idle_seconds
        )

    async def _connect(self, url: str) -> C:
        """Open a client connection to ``url`` (the endpoint check has passed)."""
        raise NotImplementedError

    async def _disconnect(self, connection: C) -> None:
        """Close ``connection``; may raise, the caller ignores it."""
        raise NotImplementedError

    def _usable(self, connection: C) -> bool:
        """Whether a pooled connection can still be used."""
        return True

    async def _open(self, url: str) -> C:
        await check_endpoint(url, self._deny_private)
        return await self._connect(url)

    async def _close_quietly(self, connection: C) -> None:
        try:
            await self._disconnect(connection)
        except Exception:  # closing a broken connection must not hide the error that broke it
            return

    @staticmethod
    def _messages(
        subscription: Subscription, events: Sequence[Mapping[str, Any]], attempt: Attempt
    ) -> list[QueueMessage]:
        """One broker message per event, in the subscription's delivery schema."""
        return build_queue_messages(
            events,
            delivery_schema=subscription.event_delivery_schema,
            subscription_name=subscription.name,
            delivery_count=attempt.delivery_count,
            batch_id=attempt.batch_id,
        )

    async def _attempt(
        self,
        url: str,
        publish: Callable[[C], Awaitable[AttemptOutcome | None]],
        outcome: Callable[[BaseException], AttemptOutcome],
    ) -> AttemptOutcome:
        """Run ``publish`` on the pooled connection for ``url`` within the attempt deadline.

        ``publish`` returns ``None`` when the broker took every message, or the outcome of a
        refusal it saw without an exception. An exception is turned into an outcome by
        ``outcome``; after a timeout or socket error the connection leaves the pool.
        """
        connection: C | None = None
        try:
            async with asyncio.timeout(self._timeout), self._pool.lease(url) as connection:
                refused = await publish(connection)
                if refused is not None:
                    return refused
        except self._caught as exc:
            result = scrubbed(outcome(exc), url)
            if connection is not None and result.name in _BROKEN_CONNECTION:
                await self._pool.discard(url, connection)
            return result
        return succeeded()

    @property
    def open_connections(self) -> int:
        """Pooled broker connections: one per distinct URL in use."""
        return len(self._pool)

    async def close(self) -> None:
        """Close every connection (at shutdown, after the dispatcher stopped)."""
        await self._pool.close()
