"""A consumer for pull (``Queue``) subscriptions that settles each event by what the code did.

Two ways to use it::

    from mlgrid.client.consumer import PullConsumer, RejectEvent

    consumer = PullConsumer("http://127.0.0.1:8780", "orders", "workers", key="...")

    # 1. Iterate: an event is acknowledged when the loop body finishes with it and asks for the
    #    next one; it is released (received again later) when the body raises.
    for event in consumer:
        handle(event)

    # 2. A handler: acknowledged on return, rejected (dead-lettered) on ``RejectEvent``,
    #    released on any other exception.
    def handle(event):
        if event["data"] is None:
            raise RejectEvent("no data")
        ...

    consumer.run(handle)

Leaving a ``for`` loop with ``break`` releases the event being processed, like an exception
(Python does not tell a generator which of the two ended the loop, and releasing never loses
an event); call ``consumer.stop()`` in the body instead to finish after that event, which is
then acknowledged. Settlements are batched: one request per received batch and outcome.

Credentials: ``key=`` (a topic key), ``sas=`` (a SAS token) or ``token=`` (a bearer token of a
principal with DataReceiver, or Reader and above). ``system_topic=True`` reads a workspace's
system topic (``topic`` is then the workspace name). An https server is verified against
``ca_bundle=`` or ``MLGRID_CA_BUNDLE`` (else the system's trust store).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from mlgrid.client.http import ApiError, Transport, resolve_verify

__all__ = ["PullConsumer", "ReceivedEvent", "RejectEvent", "SettleResult"]

log = logging.getLogger("mlgrid.client.consumer")


class RejectEvent(Exception):
    """Raise from a handler to reject the event: it is dead-lettered, not received again."""


@dataclass(frozen=True)
class ReceivedEvent(Mapping[str, Any]):
    """A received event: reads like the event dict (``event["id"]``), plus its lock."""

    event: dict[str, Any]
    lock_token: str
    delivery_count: int

    def __getitem__(self, key: str) -> Any:
        return self.event[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.event)

    def __len__(self) -> int:
        return len(self.event)


@dataclass
class SettleResult:
    succeeded: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)


class PullConsumer:
    def __init__(
        self,
        url: str,
        topic: str,
        subscription: str,
        *,
        key: str | None = None,
        sas: str | None = None,
        token: str | None = None,
        system_topic: bool = False,
        max_events: int = 10,
        max_wait_time: int = 30,
        release_delay: int = 0,
        timeout: float | None = None,
        client: httpx.Client | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        if sum(x is not None for x in (key, sas, token)) != 1:
            raise ValueError("give exactly one of key=, sas= or token=")
        headers: dict[str, str] = {}
        if key is not None:
            headers["aeg-sas-key"] = key
        elif sas is not None:
            headers["aeg-sas-token"] = sas
        else:
            headers["Authorization"] = f"Bearer {token}"
        parent = "systemTopics" if system_topic else "topics"
        self._path = f"/{parent}/{quote(topic, safe='')}/eventsubscriptions/{quote(subscription, safe='')}"
        self.max_events = max_events
        self.max_wait_time = max_wait_time
        self.release_delay = release_delay
        read_timeout = timeout if timeout is not None else max_wait_time + 30.0
        self._own_client = client is None
        self._http = Transport(
            url.rstrip("/"), timeout=read_timeout, verify=resolve_verify(ca_bundle), _client=client,
            headers=headers,
        )
        self._stopped = False

    # -- the raw operations ---------------------------------------------------------------------

    def _post(self, operation: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        return self._http.call("POST", f"{self._path}:{operation}", body, params=params)

    def receive(self, max_events: int | None = None, max_wait_time: int | None = None) -> list[ReceivedEvent]:
        """Lock and return up to ``max_events`` events, waiting up to ``max_wait_time`` s for one."""
        body = self._post(
            "receive",
            {
                "maxEvents": max_events or self.max_events,
                "maxWaitTime": self.max_wait_time if max_wait_time is None else max_wait_time,
            },
        )
        return [
            ReceivedEvent(
                event=item["event"],
                lock_token=item["brokerProperties"]["lockToken"],
                delivery_count=item["brokerProperties"]["deliveryCount"],
            )
            for item in body.get("value", [])
        ]

    def _settle(
        self, operation: str, tokens: list[str], params: dict[str, Any] | None = None
    ) -> SettleResult:
        if not tokens:
            return SettleResult()
        body = self._post(operation, params, {"lockTokens": tokens})
        result = SettleResult(body.get("succeededLockTokens", []), body.get("failedLockTokens", []))
        for failed in result.failed:
            log.warning(
                "%s of lock token %s failed: %s", operation, failed.get("lockToken"), failed.get("error")
            )
        return result

    def acknowledge(self, tokens: list[str]) -> SettleResult:
        return self._settle("acknowledge", tokens)

    def release(self, tokens: list[str], delay: int | None = None) -> SettleResult:
        delay = self.release_delay if delay is None else delay
        return self._settle("release", tokens, {"releaseDelayInSeconds": delay} if delay else None)

    def reject(self, tokens: list[str]) -> SettleResult:
        return self._settle("reject", tokens)

    def renew_locks(self, tokens: list[str]) -> SettleResult:
        return self._settle("renewLock", tokens)

    # -- iteration ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish after the event being processed (it is acknowledged); no more receives."""
        self._stopped = True

    def __iter__(self) -> Iterator[ReceivedEvent]:
        self._stopped = False
        while not self._stopped:
            batch = self.receive()
            done: list[str] = []
            try:
                for item in batch:
                    yield item
                    # The body finished with ``item`` and asked for the next one.
                    done.append(item.lock_token)
                    if self._stopped:
                        break
            finally:
                self._settle_quietly(done, [item.lock_token for item in batch[len(done):]])

    def _settle_quietly(self, acks: list[str], releases: list[str]) -> None:
        """Settle after the loop ended, without hiding why it ended behind a network error."""
        try:
            self.acknowledge(acks)
            self.release(releases)
        except ApiError:
            log.exception("settling received events failed; unsettled ones come back when their lock expires")

    def run(
        self,
        handler: Callable[[ReceivedEvent], Any],
        *,
        stop_when_idle: bool = False,
        max_events: int | None = None,
    ) -> int:
        """Call ``handler`` for each event until ``stop()`` (or, with ``stop_when_idle``, until a
        receive comes back empty, or ``max_events`` were handled). Returns how many were handled.

        Returning acknowledges the event; ``RejectEvent`` rejects it (dead letter); any other
        exception releases it (logged), to be received again.
        """
        self._stopped = False
        handled = 0
        while not self._stopped:
            wanted = self.max_events if max_events is None else min(self.max_events, max_events - handled)
            if wanted <= 0:
                break
            batch = self.receive(max_events=wanted)
            if not batch and stop_when_idle:
                break
            acks: list[str] = []
            rejects: list[str] = []
            releases: list[str] = []
            try:
                for item in batch:
                    try:
                        handler(item)
                    except RejectEvent:
                        rejects.append(item.lock_token)
                    except Exception:
                        log.exception("handler failed for event %s; releasing it", item.event.get("id"))
                        releases.append(item.lock_token)
                    else:
                        acks.append(item.lock_token)
                    handled += 1
                    if self._stopped:
                        break
            finally:
                settled = set(acks) | set(rejects) | set(releases)
                releases.extend(item.lock_token for item in batch if item.lock_token not in settled)
                self.acknowledge(acks)
                self.reject(rejects)
                self.release(releases)
        return handled

    def close(self) -> None:
        if self._own_client:
            self._http.close()

    def __enter__(self) -> PullConsumer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
