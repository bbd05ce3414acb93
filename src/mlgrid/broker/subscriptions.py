"""Event subscriptions as a service: create, replace, update, read, delete, validate, expire.

The service keeps three views of the subscriptions consistent:

* the database rows (``properties`` JSON without secrets, sealed secrets), the truth shared
  by every node;
* an in-memory cache of ``Subscription`` objects with their secrets opened, which the
  dispatcher asks on every delivery (``get_by_id`` must be cheap);
* the router's filter index, which holds only the active ones (validated, not expired).

A write updates all three on the node that made it; other nodes notice within
``REFRESH_INTERVAL_SECONDS`` by polling a cheap signature of the table (row count and latest
``updated_at``) and re-reading only the rows whose etag changed.

Webhook validation (``webhook_validation.py``) runs *before* anything is written, outside any
transaction (it may take up to 30 s): a failed handshake changes nothing. The write then
checks that the row is still the one it started from, so two concurrent updates cannot
overwrite each other silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import orjson

from mlgrid.auth.secretbox import SecretBox
from mlgrid.broker.names import check_name, system_topic_arm_id
from mlgrid.broker.routing import Router
from mlgrid.broker.subscription_body import parse_subscription_body
from mlgrid.broker.subscription_render import merge_secrets, render_properties, secrets_of
from mlgrid.broker.topics import Topic, TopicService
from mlgrid.broker.webhook_validation import (
    MANUAL_VALIDATION_WINDOW,
    WebhookValidator,
    manual_window_open,
    needs_validation,
)
from mlgrid.config import Settings
from mlgrid.delivery.endpoint_safety import ENDPOINT_URL_FIELD, check_hostname
from mlgrid.domain.endpoints import EndpointType, ProvisioningState
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.domain.subscription import Subscription
from mlgrid.errors import BadRequest, Conflict, NotFound, invalid
from mlgrid.etags import new_etag, require_match
from mlgrid.events.jsoncodec import dumps, loads_exact
from mlgrid.store import subscriptions as subscription_store
from mlgrid.store.clock import to_epoch
from mlgrid.store.database import Database
from mlgrid.store.faults import log_failure
from mlgrid.store.subscriptions import SubscriptionRow

__all__ = [
    "MAX_SUBSCRIPTIONS_PER_TOPIC",
    "SUBSCRIPTION_ARM_TYPE",
    "OnDeleted",
    "SubscriptionService",
    "parse_subscription_body",
]

log = logging.getLogger("mlgrid.subscriptions")

#: Destinations whose URL ``getFullUrl`` returns from their properties.
_BROKER_ENDPOINTS = (EndpointType.REDIS_STREAM, EndpointType.NATS_JETSTREAM, EndpointType.RABBITMQ)

MAX_SUBSCRIPTIONS_PER_TOPIC: Final = 500
REFRESH_INTERVAL_SECONDS: Final = 2.0
SWEEP_INTERVAL_SECONDS: Final = 5.0
#: The sweeper sleeps until the next expiry or validation deadline it read, but at most this
#: long (a change it was not told about, a clock that jumped); a subscription change wakes it
#: within ``SWEEP_INTERVAL_SECONDS``. An idle server's sweeper costs one read per minute.
SWEEP_CEILING_SECONDS: Final = 60.0
SUBSCRIPTION_ARM_TYPE: Final = "Microsoft.EventGrid/eventSubscriptions"

OnDeleted = Callable[[Subscription], Awaitable[None]]
"""Called after a subscription is deleted (by the API, by expiry or with its topic)."""


def _hash_code(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class SubscriptionService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        box: SecretBox,
        topics: TopicService,
        router: Router,
        *,
        validator: WebhookValidator | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        refresh_interval: float = REFRESH_INTERVAL_SECONDS,
        sweep_interval: float = SWEEP_INTERVAL_SECONDS,
    ) -> None:
        self._db = db
        self._settings = settings
        self._box = box
        self._topics = topics
        self._router = router
        self._clock = clock
        self._validator = validator or WebhookValidator(
            origin=urlsplit(settings.base_url).hostname or "mlgrid",
            deny_private=settings.deny_private_endpoints,
        )
        self.refresh_interval = refresh_interval
        self._sweep_interval = sweep_interval
        self._sweep_wake = asyncio.Event()
        self.on_deleted: list[OnDeleted] = []
        self._cache: dict[str, Subscription] = {}
        self._by_name: dict[tuple[str, str], str] = {}
        self._signature: tuple[int, float, float] | None = None
        #: Tells the other nodes that subscriptions changed (LISTEN/NOTIFY, set by the setup);
        #: they also notice by the slower signature poll.
        self.announce: Callable[[str], Awaitable[None]] | None = None
        # Handshakes in progress (id -> code) and manual validations that arrived during one.
        self._inflight: dict[str, str] = {}
        self._confirmed_early: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        # Held while a database read or write and the in-memory views that follow it are
        # brought together, so a refresh that read the table before a local write cannot put
        # the old state back in memory after that write.
        self._memory_lock = asyncio.Lock()

    # --- reads ------------------------------------------------------------------------------

    async def get(self, topic: Topic, name: str) -> dict[str, Any]:
        """The ARM resource of one subscription (404 when it does not exist)."""
        return self.as_json(topic, await self._require_row(topic, name))

    async def list(self, topic: Topic) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            rows = await subscription_store.list_for_topic(conn, topic.key)
        return [self.as_json(topic, row) for row in rows]

    async def find(self, topic: Topic, name: str) -> Subscription:
        """The subscription with its secrets opened, from the cache when possible (404 if none)."""
        cached_id = self._by_name.get((topic.key, name.lower()))
        if cached_id is not None and cached_id in self._cache:
            return self._cache[cached_id]
        async with self._memory_lock:
            row = await self._require_row(topic, name)
            return self._remember(self._decode(row, topic))

    async def get_by_id(self, subscription_id: str) -> Subscription | None:
        """The subscription for a delivery row: the cache, or the database on a miss (a
        subscription created on another node since the last refresh)."""
        hit = self._cache.get(subscription_id)
        if hit is not None:
            return hit
        async with self._memory_lock:
            async with self._db.read() as conn:
                row = await subscription_store.get_by_id(conn, subscription_id)
            if row is None:
                return None
            topic = await self._topics.find(row.topic_key)
            if topic is None:
                return None
            return self._remember(self._decode(row, topic))

    def queue_subscription_ids(self) -> Sequence[str]:
        """The ids of the pull (queue) subscriptions, from the cache every node keeps current:
        the pull sweeper's list, without asking the database every few seconds."""
        return [sid for sid, sub in self._cache.items() if sub.endpoint_type == EndpointType.QUEUE]

    def cached(self, subscription_id: str) -> Subscription | None:
        """The cached subscription without touching the database (``None`` on a miss)."""
        return self._cache.get(subscription_id)

    async def full_url(self, topic: Topic, name: str) -> str:
        """The write-only destination URL with its query string (``getFullUrl``)."""
        sub = await self.find(topic, name)
        if sub.endpoint_type == EndpointType.WEBHOOK and sub.endpoint_url:
            return sub.endpoint_url
        if sub.endpoint_type in _BROKER_ENDPOINTS:
            return str(sub.destination_properties.get("url", ""))
        raise BadRequest(
            f"event subscription {sub.name!r} delivers to a {sub.endpoint_type} destination, "
            "which has no URL",
            code=ErrorCode.INVALID_REQUEST,
        )

    def as_json(self, topic: Topic, row: SubscriptionRow) -> dict[str, Any]:
        """The ARM shape of a stored subscription (no secrets: they are not in ``properties``)."""
        properties: dict[str, Any] = {
            "topic": topic.resource_id,
            "provisioningState": row.provisioning_state,
        }
        properties.update(loads_exact(row.properties))
        return {
            "id": f"{self.topic_arm_id(topic)}/providers/Microsoft.EventGrid/eventSubscriptions/{row.name}",
            "name": row.name,
            "type": SUBSCRIPTION_ARM_TYPE,
            "etag": row.etag,
            "properties": properties,
        }

    def topic_arm_id(self, topic: Topic) -> str:
        if topic.kind == "system":
            return system_topic_arm_id(self._topics.subscription_id, topic.row.resource_group, topic.name)
        return topic.resource_id

    def validation_url(self, subscription_id: str, code: str) -> str:
        query = urlencode({"id": subscription_id, "code": code})
        return f"{self._settings.base_url}/eventSubscriptions/validate?{query}"

    # --- writes -----------------------------------------------------------------------------

    async def put(
        self, topic: Topic, name: str, body: object, *, if_match: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Create (``True``) or replace (``False``) a subscription; returns its ARM resource."""
        check_name(name, "eventSubscriptionName")
        row = await self._row(topic, name)
        _check_if_match(if_match, row)
        # A row whose secrets cannot be opened (sealed under another key) is still replaceable.
        existing = self._try_decode(row, topic) if row is not None else None
        if row is None:
            await self._check_limit(topic)
        sub = parse_subscription_body(body, topic=topic, name=name, existing=existing, now=self._clock())
        return await self._save(topic, sub, row, existing), row is None

    async def patch(
        self, topic: Topic, name: str, body: object, *, if_match: str | None = None
    ) -> dict[str, Any]:
        """Update: the body's top-level properties replace the stored ones, the rest stays."""
        row = await self._require_row(topic, name)
        _check_if_match(if_match, row)
        existing = self._decode(row, topic)
        sub = parse_subscription_body(
            body, topic=topic, name=name, existing=existing, patch=True, now=self._clock()
        )
        return await self._save(topic, sub, row, existing)

    async def delete(self, topic: Topic, name: str, *, if_match: str | None = None) -> None:
        async with self._memory_lock:
            async with self._db.write() as conn:
                row = await subscription_store.get(conn, topic.key, name)
                if row is None:
                    raise _not_found(topic, name)
                _check_if_match(if_match, row)
                await subscription_store.delete_by_id(conn, row.id)
            sub = self._cache.get(row.id) or self._try_decode(row, topic)
            self._forget(row.id)
            await self._announce(row.id)
        log.info("subscription deleted", extra={"action": "subscription_deleted", "subscription": row.name})
        if sub is not None:
            await self._notify_deleted(sub)

    async def _save(
        self, topic: Topic, sub: Subscription, row: SubscriptionRow | None, existing: Subscription | None
    ) -> dict[str, Any]:
        subscription_id = row.id if row is not None else str(uuid.uuid4())
        sub = replace(sub, id=subscription_id, name=row.name if row is not None else sub.name)
        if sub.endpoint_type == EndpointType.WEBHOOK:
            reason = check_hostname(urlsplit(sub.endpoint_url or "").hostname or "",
                                    self._settings.deny_private_endpoints)
            if reason is not None:
                raise invalid(ENDPOINT_URL_FIELD, f"endpoint refused: {reason}")
        state: str = ProvisioningState.SUCCEEDED
        code_hash = row.validation_code if row is not None else None
        validation_expires_at = None
        if self._settings.webhook_validation and needs_validation(sub, existing):
            state, code_hash, validation_expires_at = await self._handshake(topic, sub)
        now = self._clock()
        secrets = secrets_of(sub)
        new_row = SubscriptionRow(
            id=subscription_id,
            topic_key=topic.key,
            name=sub.name,
            endpoint_type=sub.endpoint_type,
            properties=dumps(render_properties(sub)).decode(),
            secrets_sealed=self._box.seal(orjson.dumps(secrets).decode(), context=_context(subscription_id))
            if secrets
            else None,
            provisioning_state=state,
            validation_code=code_hash,
            validation_expires_at=validation_expires_at,
            expires_at=sub.expires_at,
            etag=new_etag(),
            created_at=row.created_at if row is not None else now,
            updated_at=now,
        )
        async with self._memory_lock:
            async with self._db.write() as conn:
                current = await subscription_store.get(conn, topic.key, sub.name)
                if row is None:
                    if current is not None:
                        raise Conflict(
                            f"event subscription {sub.name!r} was created by another request meanwhile"
                        )
                    count = await subscription_store.count_for_topic(conn, topic.key)
                    if count >= MAX_SUBSCRIPTIONS_PER_TOPIC:
                        raise _limit_reached(topic)
                    await subscription_store.insert(conn, new_row)
                else:
                    if current is None or current.etag != row.etag:
                        raise Conflict(
                            f"event subscription {sub.name!r} was changed or deleted by another "
                            "request meanwhile; read it again and retry"
                        )
                    await subscription_store.update(conn, new_row)
            self._remember(replace(sub, provisioning_state=state, etag=new_row.etag))
            await self._announce(new_row.id)
        log.info(
            "subscription saved",
            extra={"action": "subscription_saved", "subscription": sub.name, "state": state},
        )
        return self.as_json(topic, new_row)

    async def _handshake(self, topic: Topic, sub: Subscription) -> tuple[str, str, datetime | None]:
        """Run the webhook handshake; (state, hashed code, end of the manual window)."""
        code = str(uuid.uuid4())
        self._inflight[sub.id] = code
        try:
            outcome = await self._validator.validate(
                sub,
                code=code,
                validation_url=self.validation_url(sub.id, code),
                topic_resource_id=topic.resource_id,
                now=self._clock(),
            )
        finally:
            self._inflight.pop(sub.id, None)
        if sub.id in self._confirmed_early:
            # The validationUrl was visited while the handshake was still waiting for its answer.
            self._confirmed_early.discard(sub.id)
            return ProvisioningState.SUCCEEDED, _hash_code(code), None
        if outcome.state == ProvisioningState.AWAITING_MANUAL_ACTION:
            expires_at = self._clock() + MANUAL_VALIDATION_WINDOW
            return ProvisioningState.AWAITING_MANUAL_ACTION, _hash_code(code), expires_at
        return ProvisioningState.SUCCEEDED, _hash_code(code), None

    async def confirm_manual_validation(self, subscription_id: str, code: str) -> dict[str, Any]:
        """``GET`` on a ``validationUrl``: validate the subscription if the window is open.

        Unknown ids and wrong codes get the same 404, so the URL reveals nothing without its
        code; a repeated visit after success answers 200 again.
        """
        inflight = self._inflight.get(subscription_id)
        if inflight is not None and hmac.compare_digest(inflight, code):
            self._confirmed_early.add(subscription_id)
            return {"id": subscription_id, "provisioningState": ProvisioningState.SUCCEEDED}
        now = self._clock()
        async with self._memory_lock:
            async with self._db.write() as conn:
                row = await subscription_store.get_by_id(conn, subscription_id)
                if row is None or row.validation_code is None or not hmac.compare_digest(
                    row.validation_code, _hash_code(code)
                ):
                    raise NotFound("no event subscription validation matches this id and code")
                if row.provisioning_state == ProvisioningState.SUCCEEDED:
                    return {"id": row.id, "name": row.name, "provisioningState": ProvisioningState.SUCCEEDED}
                if row.provisioning_state != ProvisioningState.AWAITING_MANUAL_ACTION:
                    raise BadRequest(
                        f"event subscription {row.name!r} is {row.provisioning_state}; update it to "
                        "start a new validation",
                        code=ErrorCode.VALIDATION_EXPIRED,
                    )
                expired = not manual_window_open(row.validation_expires_at, now)
                new_state = ProvisioningState.FAILED if expired else ProvisioningState.SUCCEEDED
                etag = new_etag()
                if not await subscription_store.set_state_if(conn, row.id, row.etag, new_state, etag, now):
                    raise Conflict("the event subscription changed meanwhile; open the newest validationUrl")
            await self._cache_row(replace(row, provisioning_state=new_state, etag=etag, updated_at=now))
        if expired:
            raise BadRequest(
                f"the validationUrl of event subscription {row.name!r} expired "
                f"{int(MANUAL_VALIDATION_WINDOW.total_seconds() // 60)} minutes after it was sent; "
                "the subscription is now Failed: update it to start a new validation",
                code=ErrorCode.VALIDATION_EXPIRED,
            )
        log.info("manual validation", extra={"action": "webhook_validated", "subscription": row.name})
        return {"id": row.id, "name": row.name, "provisioningState": ProvisioningState.SUCCEEDED}

    # --- start-up, other nodes, sweeping ---------------------------------------------------

    async def load_into_router(self) -> int:
        """Load every stored subscription into the cache and the active ones into the router."""
        async with self._memory_lock:
            async with self._db.read() as conn:
                signature = await subscription_store.signature(conn)
                rows = await subscription_store.list_all(conn)
            topics: dict[str, Topic | None] = {}
            for row in rows:
                await self._cache_row(row, topics)
            self._signature = signature
        log.info("subscriptions loaded", extra={"action": "subscriptions_loaded", "count": len(self._cache)})
        return len(self._cache)

    async def _announce(self, subscription_id: str) -> None:
        self.wake_sweeper()
        if self.announce is not None:
            try:
                await self.announce(subscription_id)
            except Exception as exc:  # the change is committed; the others find it by polling
                log.warning("could not notify the other nodes: %s", exc, extra={"action": "notify_failed"})

    async def refresh_one(self, subscription_id: str) -> None:
        """Another node changed this subscription (NOTIFY): read just its row."""
        async with self._memory_lock:
            async with self._db.read() as conn:
                rows = await subscription_store.get_many(conn, [subscription_id])
            row = rows.get(subscription_id)
            if row is None:
                self._forget(subscription_id)
            else:
                await self._cache_row(row)

    async def refresh(self) -> None:
        """Pick up what other nodes changed: a signature query, then only the changed rows."""
        async with self._memory_lock:
            await self._refresh_locked()

    async def _refresh_locked(self) -> None:
        async with self._db.read() as conn:
            signature = await subscription_store.signature(conn)
            if signature == self._signature:
                return
            versions = await subscription_store.list_versions(conn)
            changed = [
                sid
                for sid, etag in versions.items()
                if (hit := self._cache.get(sid)) is None or hit.etag != etag
            ]
            rows = await subscription_store.get_many(conn, changed)
        for sid in [sid for sid in self._cache if sid not in versions]:
            self._forget(sid)
        topics: dict[str, Topic | None] = {}
        for row in rows.values():
            await self._cache_row(row, topics)
        self._signature = signature

    async def sweep(self) -> float | None:
        """Fail manual validations whose window passed; delete expired subscriptions. Returns
        the next moment (epoch seconds) something is due, None if nothing is scheduled."""
        now = self._clock()
        awaiting = ProvisioningState.AWAITING_MANUAL_ACTION
        async with self._db.read() as conn:
            stale = await subscription_store.list_stale_validations(conn, awaiting, now)
            expired = await subscription_store.list_expired(conn, now)
            next_due = await subscription_store.next_sweep_due(conn, awaiting, now)
        failed = ProvisioningState.FAILED
        for row in stale:
            etag = new_etag()
            async with self._memory_lock:
                async with self._db.write() as conn:
                    changed = await subscription_store.set_state_if(conn, row.id, row.etag, failed, etag, now)
                if changed:
                    await self._cache_row(replace(row, provisioning_state=failed, etag=etag, updated_at=now))
            if changed:
                log.info("manual validation window passed",
                         extra={"action": "validation_failed", "subscription": row.name})
        for row in expired:
            async with self._memory_lock:
                async with self._db.write() as conn:
                    deleted = await subscription_store.delete_if_expired(conn, row.id, now)
                if not deleted:
                    continue  # another node deleted it and notifies
                sub = self._cache.get(row.id)
                if sub is None:
                    topic = await self._topics.find(row.topic_key)
                    sub = self._try_decode(row, topic) if topic is not None else None
                self._forget(row.id)
            log.info("expired subscription deleted",
                     extra={"action": "subscription_expired", "subscription": row.name})
            if sub is not None:
                await self._notify_deleted(sub)
        return next_due

    def wake_sweeper(self) -> None:
        """A subscription changed (here or on another node): its expiry or validation window
        may come before what the sweeper is sleeping until."""
        self._sweep_wake.set()

    async def _sweeper_pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or only ``sweep_interval`` after a wake-up if that is sooner (so a
        burst of changes costs one sweep per interval, not one each)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._sweep_wake.wait(), seconds)
            until = min(until, loop.time() + self._sweep_interval)
        self._sweep_wake.clear()
        await asyncio.sleep(max(0.0, until - loop.time()))

    async def run_refresh(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log_failure(log, self._db.health, "subscription refresh failed", exc, "refresh_failed")

    async def run_sweeper(self) -> None:
        pause = self._sweep_interval
        while True:
            await self._sweeper_pause(pause)
            try:
                next_due = await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log_failure(log, self._db.health, "subscription sweep failed", exc, "sweep_failed")
                pause = self._sweep_interval
                continue
            pause = SWEEP_CEILING_SECONDS
            if next_due is not None:
                pause = min(pause, max(0.0, next_due - to_epoch(self._clock())))

    def drop_topic(self, topic_key: str) -> None:
        """The topic was deleted with its subscriptions: forget them and tell the listeners."""
        gone = [sub for sub in self._cache.values() if sub.topic_key == topic_key]
        for sub in gone:
            self._forget(sub.id)
        self._router.remove_topic(topic_key)
        if gone and self.on_deleted:
            task = asyncio.get_running_loop().create_task(self._notify_all(gone))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- internals -------------------------------------------------------------------------

    async def _row(self, topic: Topic, name: str) -> SubscriptionRow | None:
        async with self._db.read() as conn:
            return await subscription_store.get(conn, topic.key, name)

    async def _require_row(self, topic: Topic, name: str) -> SubscriptionRow:
        row = await self._row(topic, name)
        if row is None:
            raise _not_found(topic, name)
        return row

    async def _check_limit(self, topic: Topic) -> None:
        async with self._db.read() as conn:
            count = await subscription_store.count_for_topic(conn, topic.key)
        if count >= MAX_SUBSCRIPTIONS_PER_TOPIC:
            raise _limit_reached(topic)

    def _decode(self, row: SubscriptionRow, topic: Topic) -> Subscription:
        """A stored row back into a ``Subscription``: its rendered properties with the opened
        secrets merged in, parsed by the same parser that accepted it."""
        secrets: dict[str, Any] = {}
        if row.secrets_sealed:
            secrets = orjson.loads(self._box.open(row.secrets_sealed, context=_context(row.id)))
        body = {"properties": merge_secrets(loads_exact(row.properties), secrets)}
        sub = parse_subscription_body(body, topic=topic, name=row.name, trusted=True)
        return replace(
            sub, id=row.id, name=row.name, provisioning_state=row.provisioning_state, etag=row.etag
        )

    def _try_decode(self, row: SubscriptionRow, topic: Topic) -> Subscription | None:
        try:
            return self._decode(row, topic)
        except Exception:
            log.exception("stored subscription cannot be read", extra={
                "action": "subscription_unreadable", "subscription": row.name, "subscription_id": row.id})
            return None

    async def _cache_row(self, row: SubscriptionRow, topics: dict[str, Topic | None] | None = None) -> None:
        """Decode a row and make the cache and the router follow it; unreadable rows are
        logged and left out (they cannot be delivered to anyway)."""
        topics = {} if topics is None else topics
        if row.topic_key not in topics:
            topics[row.topic_key] = await self._topics.find(row.topic_key)
        topic = topics[row.topic_key]
        if topic is None:
            self._forget(row.id)
            return
        sub = self._try_decode(row, topic)
        if sub is None:
            self._forget(row.id)
            return
        self._remember(sub)

    def _remember(self, sub: Subscription) -> Subscription:
        previous = self._cache.get(sub.id)
        if previous is not None and previous.name.lower() != sub.name.lower():
            self._by_name.pop((previous.topic_key, previous.name.lower()), None)
        self._cache[sub.id] = sub
        self._by_name[(sub.topic_key, sub.name.lower())] = sub.id
        if sub.is_active:
            self._router.upsert(
                sub.topic_key,
                sub.id,
                sub.name,
                sub.event_filter,
                sub.stored_schema,
                expires_at=sub.expires_at,
                pushed=sub.endpoint_type != EndpointType.QUEUE,
            )
        else:
            self._router.remove(sub.id)
        return sub

    def _forget(self, subscription_id: str) -> None:
        sub = self._cache.pop(subscription_id, None)
        if sub is not None:
            self._by_name.pop((sub.topic_key, sub.name.lower()), None)
        self._router.remove(subscription_id)

    async def _notify_deleted(self, sub: Subscription) -> None:
        for listener in list(self.on_deleted):
            try:
                await listener(sub)
            except Exception:
                log.exception("on_deleted listener failed", extra={
                    "action": "listener_failed", "subscription": sub.name})

    async def _notify_all(self, subs: Sequence[Subscription]) -> None:
        for sub in subs:
            await self._notify_deleted(sub)


def _context(subscription_id: str) -> str:
    """Seal secrets to their row, so sealed values cannot be swapped between rows."""
    return f"subscription/{subscription_id}"


def _check_if_match(if_match: str | None, row: SubscriptionRow | None) -> None:
    current = row.etag if row is not None else None
    require_match(if_match, current, "If-Match does not match the event subscription's current etag")


def _not_found(topic: Topic, name: str) -> NotFound:
    label = "topic" if topic.kind == "custom" else "system topic"
    return NotFound(f"event subscription {name!r} does not exist on {label} {topic.name!r}")


def _limit_reached(topic: Topic) -> BadRequest:
    return invalid(
        "name",
        f"topic {topic.name!r} already has {MAX_SUBSCRIPTIONS_PER_TOPIC} event subscriptions, "
        "the most a topic may have",
    )
