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

from mlgrid.delivery.destinations import Attempt
from mlgrid.delivery.outcome import AttemptOutcome, ErrorKind, OutcomeName, classify_error
from mlgrid.delivery.queue_destinations.base import PooledQueueDestination
from mlgrid.delivery.queue_destinations.connections import failure, final, socket_outcome, succeeded
from mlgrid.delivery.queue_destinations.message import nats_headers
from mlgrid.domain.subscription import Subscription

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


class NatsJetStreamDestination(PooledQueueDestination[NatsClient]):
    """Publishes events to JetStream; one NATS connection per URL."""

    _client_errors = (nats_errors.Error,)

    def _usable(self, connection: NatsClient) -> bool:
        return bool(connection.is_connected)

    async def _disconnect(self, connection: NatsClient) -> None:
        await connection.close()

    async def _connect(self, url: str) -> NatsClient:
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
        messages = self._messages(subscription, events, attempt)
        if not messages:
            return succeeded()

        async def publish(client: NatsClient) -> None:
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

        return await self._attempt(url, publish, lambda exc: self._outcome(exc, subject))

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
