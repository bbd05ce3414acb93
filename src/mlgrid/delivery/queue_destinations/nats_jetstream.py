"""The ``NatsJetStream`` destination: a JetStream publish per event to ``subject`` at ``url``,
each awaiting the stream's acknowledgement.

The message body is the event's JSON; the headers are those of ``message.nats_headers``, with
``Nats-Msg-Id`` set to the event id. JetStream drops a message whose id it already stored
within the stream's duplicate window (two minutes by default), so a retry after a lost
acknowledgement does not store the event twice; beyond the window, consumers see the same
id again (at-least-once delivery, SPEC §11).

Success means JetStream acknowledged the message (stored, or recognised as a duplicate). A
subject that no stream captures is answered at once by the server ("no responders") and is a
retryable ``NotFound`` failure: the operator may create the stream, and the events then
arrive with the next retries.

The connection does not reconnect by itself (``allow_reconnect=False``): a dropped connection
is closed, and the pool opens a new one for the next attempt, so an attempt never waits in a
reconnect loop it cannot see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import nats
import nats.errors as nats_errors
import nats.js.errors as js_errors
from nats.aio.client import Client as NatsClient

from mlgrid.broker.subscription_model import Subscription
from mlgrid.delivery.destinations import Attempt
from mlgrid.delivery.outcome import AttemptOutcome, ErrorKind, OutcomeName, classify_error
from mlgrid.delivery.queue_destinations.connections import (
    ATTEMPT_TIMEOUT_SECONDS,
    IDLE_SECONDS,
    ConnectionPool,
    EndpointRefused,
    check_endpoint,
    failure,
    final,
    scrubbed,
    socket_outcome,
    succeeded,
)
from mlgrid.delivery.queue_destinations.message import build_queue_messages, nats_headers

__all__ = ["NatsJetStreamDestination"]

#: JetStream's error code for a message larger than the stream's ``max_msg_size``.
_MESSAGE_TOO_LARGE = 10054

_CONNECTION_LOST = (
    nats_errors.ConnectionClosedError,
    nats_errors.StaleConnectionError,
    nats_errors.OutboundBufferLimitError,
    nats_errors.ConnectionReconnectingError,
    nats_errors.ConnectionDrainingError,
    nats_errors.NoServersError,
)


async def _close(client: NatsClient) -> None:
    try:
        await client.close()
    except Exception:  # closing a broken client must not hide the error that broke it
        return


class NatsJetStreamDestination:
    """Publishes events to JetStream; one NATS connection per URL."""

    def __init__(
        self,
        *,
        deny_private: bool,
        timeout: float = ATTEMPT_TIMEOUT_SECONDS,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self._deny_private = deny_private
        self._timeout = timeout
        self._pool: ConnectionPool[NatsClient] = ConnectionPool(
            self._open, _close, lambda client: client.is_connected, idle_seconds=idle_seconds
        )

    async def _open(self, url: str) -> NatsClient:
        await check_endpoint(url, self._deny_private)
        errors: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            # nats-py reports the reason of a failed connect here and then raises a bare
            # NoServersError; keep the reason so the outcome can name it.
            errors.append(exc)
            del errors[:-1]

        try:
            client: NatsClient = await nats.connect(
                servers=[url],
                allow_reconnect=False,
                connect_timeout=self._timeout,  # type: ignore[arg-type]
                # nats-py's connect loop gives up on a server only after it exceeded this
                # many attempts; with 1 and no wait it tries twice, then raises.
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                error_cb=on_error,
                name="mlgrid",
            )
        except nats_errors.NoServersError as exc:
            if errors:
                raise errors[-1] from exc
            raise
        return client

    async def send(
        self, subscription: Subscription, events: Sequence[Mapping[str, Any]], attempt: Attempt
    ) -> AttemptOutcome:
        url = subscription.destination_properties.get("url")
        subject = subscription.destination_properties.get("subject")
        if not isinstance(url, str) or not isinstance(subject, str):
            return final(OutcomeName.GENERIC_ERROR, "the subscription has no NATS url and subject")
        messages = build_queue_messages(
            events,
            delivery_schema=subscription.event_delivery_schema,
            subscription_name=subscription.name,
            delivery_count=attempt.delivery_count,
            batch_id=attempt.batch_id,
        )
        if not messages:
            return succeeded()
        client: NatsClient | None = None
        try:
            async with asyncio.timeout(self._timeout), self._pool.lease(url) as client:
                stream = client.jetstream(timeout=self._timeout)
                # Published back to back on one connection, so they reach the stream in order;
                # every acknowledgement is awaited.
                results = await asyncio.gather(
                    *(
                        stream.publish(subject, m.body, timeout=self._timeout, headers=nats_headers(m))
                        for m in messages
                    ),
                    return_exceptions=True,
                )
                for result in results:
                    if isinstance(result, BaseException):
                        raise result
        except (TimeoutError, nats_errors.Error, OSError, EndpointRefused) as exc:
            outcome = scrubbed(self._outcome(exc, subject), url)
            if client is not None and outcome.name in (OutcomeName.TIMED_OUT, OutcomeName.SOCKET_ERROR):
                await self._pool.discard(url, client)
            return outcome
        return succeeded()

    def _outcome(self, exc: BaseException, subject: str) -> AttemptOutcome:
        """Translate nats-py's exceptions (the boundary) into outcome vocabulary."""
        if isinstance(exc, js_errors.NoStreamResponseError):
            return failure(
                OutcomeName.NOT_FOUND,
                f"no JetStream stream captures the subject {subject!r} (create one, or fix the subject)",
            )
        if isinstance(exc, nats_errors.MaxPayloadError):
            return final(
                OutcomeName.PAYLOAD_TOO_LARGE, f"the message is larger than the server allows: {exc}"
            )
        if isinstance(exc, js_errors.ServiceUnavailableError):
            return failure(OutcomeName.BUSY, f"JetStream is unavailable: {exc.description or exc}")
        if isinstance(exc, js_errors.APIError):
            if exc.err_code == _MESSAGE_TOO_LARGE:
                return final(
                    OutcomeName.PAYLOAD_TOO_LARGE,
                    f"the stream refused the message as too large: {exc.description}",
                )
            return failure(
                OutcomeName.GENERIC_ERROR, f"JetStream refused the message: {exc.description or exc}"
            )
        if isinstance(exc, nats_errors.AuthorizationError):
            return final(OutcomeName.UNAUTHORIZED, f"NATS refused the credentials: {exc}")
        if isinstance(exc, TimeoutError):  # nats-py's TimeoutError is one too
            return classify_error(
                ErrorKind.TIMEOUT, f"no acknowledgement from JetStream within {self._timeout:g} s"
            )
        network = socket_outcome(exc, self._timeout)
        if network is not None:
            return network
        if isinstance(exc, _CONNECTION_LOST):
            return classify_error(ErrorKind.CONNECTION_RESET, f"NATS connection failed: {type(exc).__name__}")
        return classify_error(ErrorKind.OTHER, f"{type(exc).__name__}: {exc}")

    @property
    def open_connections(self) -> int:
        """Pooled broker connections: one per distinct URL in use."""
        return len(self._pool)

    async def close(self) -> None:
        """Close every connection (at shutdown, after the dispatcher stopped)."""
        await self._pool.close()
