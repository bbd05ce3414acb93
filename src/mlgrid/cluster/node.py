"""This process as a node of a cluster: its id, its heartbeat, and the duties it holds leases for.

Every background duty that must run on exactly one node (the drift scheduler, the job sweeper,
retention, each MLflow connector, each scoring endpoint) is registered here with ``duty(name,
body)``. The node keeps wanting the lease of every registered duty; when it gets one (its
heartbeat took it, ``store/leases.tick``) it runs ``body(lease)`` as a task, and it cancels
that task when the lease is lost. ``body`` makes its writes under the lease with ``fence``,
so a body that has not noticed the loss yet (a node that was paused, or cut off from the
database) cannot write: its ``fence`` raises ``LeaseLost``, and the task ends.

A node whose heartbeat finds its own row gone was declared dead by another node, which has
freed its claims and leases: it drops every lease, registers again under a new id (so no
write of its previous life can pass a fence or a delivery claim check) and carries on. A
node that cannot reach the database for longer than the timeout stops its duties the same
way: the others may have taken them.

SQLite is one process (``shared`` is False): every duty's lease is held at once, with token
0, and ``fence`` checks nothing.

LISTEN/NOTIFY (``store/listen.py``): the node listens on one channel; a payload is
``kind:sender`` or ``kind:sender:subject`` (a subscription id, say). ``lease`` (a lease was
freed) makes the node tick now; other
kinds go to the callbacks registered with ``on_notice`` (new unclaimed deliveries, changed
subscriptions, changed keys). A node ignores what it sent itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.errors import LeaseLost
from mlgrid.store import leases as lease_store
from mlgrid.store.database import Database
from mlgrid.store.listen import Listener

log = logging.getLogger("mlgrid.cluster")

#: Notification kinds.
LEASE_FREED = "lease"
DUE = "due"
SUBSCRIPTIONS = "subs"
KEYS = "keys"
CONNECTORS = "connectors"

#: Pause after a duty's body failed (not a lost lease) before it may run again.
DUTY_RETRY_SECONDS = 2.0
#: While the listening connection is up, a pooled connection is pinged before use only after
#: this long unused (``store/database.PoolPings``): the listening connection's loss (or a failed
#: heartbeat) makes every pooled connection be pinged once anyway.
TRUSTED_IDLE_SECONDS = 300.0


@dataclass(frozen=True)
class Lease:
    """A lease this node holds: what ``fence`` checks."""

    name: str
    holder: str
    token: int


DutyBody = Callable[[Lease], Awaitable[None]]


def new_node_id(prefix: str) -> str:
    """A fresh id for one life of this process: ``<prefix or host>-<random>``."""
    return f"{prefix or socket.gethostname()}-{uuid.uuid4().hex[:10]}"


class Node:
    def __init__(
        self,
        db: Database,
        *,
        prefix: str = "",
        advertise_url: str = "",
        timeout: float = 8.0,
        heartbeat: float = 2.0,
        database_url: str = "",
    ) -> None:
        self.db = db
        self.shared = not db.is_sqlite
        self.prefix = prefix
        self.advertise_url = advertise_url
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.id = new_node_id(prefix)
        self._database_url = database_url
        self._duties: dict[str, DutyBody] = {}
        self._held: dict[str, Lease] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._resting: dict[str, float] = {}  # duty → monotonic time it may run again
        self._unensured: set[str] = set()
        self._notice: dict[str, list[Callable[[str], None]]] = {}
        self._on_rejoin: list[Callable[[str, str], None]] = []
        self._on_released: list[Callable[[], None]] = []
        self._wake = asyncio.Event()
        self._last_ok = time.monotonic()
        #: Consecutive failed heartbeats (logged once per outage).
        self._failed_beats = 0
        self._loop_task: asyncio.Task[None] | None = None
        self._listener: Listener | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self.ticks = 0

    # --- registration --------------------------------------------------------------------

    def duty(self, name: str, body: DutyBody) -> None:
        """Run ``body`` on whichever one node holds the lease ``name`` (this one, if it gets it)."""
        self._duties[name] = body
        if not self.shared:
            self._gain(name, 0)
            return
        self._unensured.add(name)
        self.wake()

    def adopt(self, name: str, token: int, body: DutyBody) -> None:
        """A lease this node was just handed in a committed transaction (``hand_over``): hold
        it under ``token`` and run ``body`` (unless it already runs under that token)."""
        self._duties[name] = body
        current = self._held.get(name)
        if current is not None and current.token == token and current.holder == self.id:
            return
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
        self._gain(name, token)

    def has_duty(self, name: str) -> bool:
        return name in self._duties

    def duties(self, prefix: str) -> list[str]:
        """The names of the registered duties that start with ``prefix``."""
        return [n for n in self._duties if n.startswith(prefix)]

    async def drop_duty(self, name: str, *, delete: bool = False) -> None:
        """Stop wanting ``name``: stop its body here, free the lease (``delete``: remove its
        row, the subject is gone)."""
        self._duties.pop(name, None)
        self._unensured.discard(name)
        lease = self._held.get(name)
        await self._lose(name)
        if self.shared and (lease is not None or delete):
            async with self.db.write() as conn:
                if delete:
                    await lease_store.drop(conn, name)
                elif lease is not None:
                    await lease_store.release(conn, name, lease.holder, lease.token)
                await lease_store.notify(conn, f"{LEASE_FREED}:{self.id}")

    def lease(self, name: str) -> Lease | None:
        """The lease ``name`` if this node holds it now."""
        return self._held.get(name)

    def on_notice(self, kind: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(subject)`` when another node notifies ``kind`` (``subject`` is empty
        when the notice names no one thing, or when notices may have been missed)."""
        self._notice.setdefault(kind, []).append(callback)

    def on_rejoin(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(old_id, new_id)`` when this node was declared dead and rejoined."""
        self._on_rejoin.append(callback)

    def on_released(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after this node freed a dead node's delivery claims."""
        self._on_released.append(callback)

    # --- fencing and notifications --------------------------------------------------------

    async def fence(self, conn: AsyncConnection, lease: Lease) -> None:
        """In a write transaction: refuse (``LeaseLost``) unless ``lease`` is still held."""
        if not self.shared:
            return
        if self._held.get(lease.name) != lease:
            raise LeaseLost(message=f"this node no longer holds the lease {lease.name!r}")
        await lease_store.fence(conn, lease.name, lease.holder, lease.token)

    async def notify(self, conn: AsyncConnection, kind: str, subject: str = "") -> None:
        """Tell the other nodes ``kind`` when ``conn``'s transaction commits (PostgreSQL)."""
        if self.shared:
            await lease_store.notify(conn, f"{kind}:{self.id}:{subject}")

    async def announce(self, kind: str, subject: str = "") -> None:
        """``notify`` in a transaction of its own (after a change was committed)."""
        if self.shared:
            async with self.db.write() as conn:
                await self.notify(conn, kind, subject)

    def _received(self, payload: str) -> None:
        kind, _, rest = payload.partition(":")
        sender, _, subject = rest.partition(":")
        if sender == self.id:
            return
        if kind == LEASE_FREED:
            self.wake()
            return
        for callback in self._notice.get(kind, ()):
            try:
                callback(subject)
            except Exception:
                log.exception("notification handler failed", extra={"action": "notify_failed"})

    def _reconnected(self) -> None:
        """Notifications may have been missed: act as if each kind had arrived."""
        self.wake()
        for kind in list(self._notice):
            self._received(f"{kind}::")

    # --- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Register (PostgreSQL), then heartbeat and listen in the background."""
        if not self.shared:
            return
        async with self.db.write() as conn:
            await lease_store.register(
                conn, self.id, self.advertise_url, socket.gethostname(), os.getpid(), time.time()
            )
        self._last_ok = time.monotonic()
        self._listener = Listener(self._database_url, self._received, self._reconnected, self.db.pings.doubt)
        self.db.pings.trust(TRUSTED_IDLE_SECONDS)
        self._listen_task = asyncio.create_task(self._listener.run(), name="mlgrid-listen")
        self._loop_task = asyncio.create_task(self._run(), name="mlgrid-node")
        log.info("node %s joined", self.id, extra={"action": "node_joined", "node": self.id})

    async def stop(self) -> None:
        """Stop every duty, free the leases and delete the node's row."""
        for task in (self._loop_task, self._listen_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for name in list(self._held):
            await self._lose(name)
        for name in list(self._tasks):
            await self._lose(name)
        if self.shared:
            with contextlib.suppress(Exception):
                async with self.db.write() as conn:
                    await lease_store.deregister(conn, self.id)
                    await lease_store.notify(conn, f"{LEASE_FREED}:{self.id}")

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.heartbeat)
            self._wake.clear()
            try:
                # Bounded: a database cut off without a reset never answers, and this node must
                # still notice that it may have lost everything (below).
                await asyncio.wait_for(self.tick(), self.timeout / 2)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.db.pings.doubt()
                self._failed_beats += 1
                if self._failed_beats == 1:  # one line per outage, not one per beat
                    log.warning("heartbeat failed: %s: %s; retrying quietly", type(exc).__name__, exc,
                                extra={"action": "heartbeat_failed"})
                if time.monotonic() - self._last_ok > self.timeout and self._held:
                    # Cut off from the database for longer than the others wait: they may
                    # have taken every lease. Stop acting on them.
                    log.warning("no heartbeat for %.0f s: stopping this node's duties", self.timeout,
                                extra={"action": "node_isolated", "node": self.id})
                    await self._rejoin()
            else:
                if self._failed_beats:
                    log.warning("heartbeat recovered after %d failed beats", self._failed_beats,
                                extra={"action": "heartbeat_recovered"})
                self._failed_beats = 0

    async def tick(self) -> None:
        """One heartbeat: renew, declare dead nodes, take free leases (PostgreSQL)."""
        now = time.time()
        moment = time.monotonic()
        wanted = [n for n in self._duties if n not in self._held and self._resting.get(n, 0) <= moment]
        freed: list[str] = []
        result = None
        me = self.id
        # A snapshot: a duty registered while this tick awaits is ensured by the next one (clearing
        # the live set at the end would forget it, and its lease row would never exist).
        ensuring = set(self._unensured)
        if not ensuring and self._listener is not None:
            # The usual idle heartbeat: one statement on the listening connection.
            result = await self._listener.call(
                lambda raw: lease_store.tick_on(raw, me, now, now - self.timeout, wanted), self.timeout / 2
            )
        if result is None or result.dead:
            async with self.db.write() as conn:
                if ensuring:
                    await lease_store.ensure_leases(conn, sorted(ensuring))
                if result is None:
                    result = await lease_store.tick(conn, me, now, now - self.timeout, wanted)
                if result.dead:
                    freed = await lease_store.release_node(conn, result.dead)
                    await lease_store.notify(conn, f"{LEASE_FREED}:{me}")
                    await lease_store.notify(conn, f"{DUE}:{me}")  # their claims are free
        self._unensured -= ensuring
        if self._unensured:
            self.wake()
        self.ticks += 1
        if not result.alive:
            log.warning("node %s was declared dead by another node: rejoining", self.id,
                        extra={"action": "node_declared_dead", "node": self.id})
            await self._rejoin()
            return
        self._last_ok = time.monotonic()
        for dead in result.dead:
            log.warning("node %s declared dead (no heartbeat for %.0f s); freed %d leases",
                        dead, self.timeout, len(freed), extra={"action": "node_dead", "node": dead})
        if result.dead:
            for callback in self._on_released:
                callback()
            self.wake()  # take what was freed at once
        for name, token in result.taken.items():
            if name in self._duties:
                self._gain(name, token)

    async def _rejoin(self) -> None:
        """Drop every lease, take a new id and register again."""
        for name in list(self._held):
            await self._lose(name)
        old = self.id
        self.id = new_node_id(self.prefix)
        self._unensured.update(self._duties)
        for callback in self._on_rejoin:
            callback(old, self.id)
        try:
            async with self.db.write() as conn:
                await lease_store.release_node(conn, [old])
                await lease_store.register(
                    conn, self.id, self.advertise_url, socket.gethostname(), os.getpid(), time.time()
                )
            self._last_ok = time.monotonic()
            log.warning("node %s rejoined as %s", old, self.id,
                        extra={"action": "node_rejoined", "node": self.id})
        except Exception as exc:
            # Still cut off: the next heartbeat finds no row and rejoins again.
            log.warning("rejoining failed: %s", exc, extra={"action": "node_rejoin_failed"})

    # --- running duties --------------------------------------------------------------------

    def _gain(self, name: str, token: int) -> None:
        lease = Lease(name, self.id, token)
        self._held[name] = lease
        log.info("took lease %s (token %d)", name, token, extra={"action": "lease_taken", "lease": name})
        self._tasks[name] = asyncio.get_running_loop().create_task(
            self._run_duty(lease), name=f"mlgrid-duty-{name}"
        )

    async def _lose(self, name: str) -> None:
        self._held.pop(name, None)
        task = self._tasks.pop(name, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run_duty(self, lease: Lease) -> None:
        body = self._duties.get(lease.name)
        if body is None:
            return
        try:
            await body(lease)
            return
        except asyncio.CancelledError:
            raise
        except LeaseLost:
            log.warning("lost lease %s", lease.name, extra={"action": "lease_lost", "lease": lease.name})
        except Exception:
            log.exception("duty %s failed", lease.name, extra={"action": "duty_failed", "lease": lease.name})
            self._resting[lease.name] = time.monotonic() + DUTY_RETRY_SECONDS
        # The body ended without being cancelled: give the lease up so the duty runs again
        # (here or elsewhere).
        if self._held.get(lease.name) == lease:
            self._held.pop(lease.name, None)
            self._tasks.pop(lease.name, None)
            if self.shared:
                with contextlib.suppress(Exception):
                    async with self.db.write() as conn:
                        await lease_store.release(conn, lease.name, lease.holder, lease.token)
                self.wake()
            elif lease.name in self._duties:
                await asyncio.sleep(DUTY_RETRY_SECONDS)
                self._gain(lease.name, 0)
