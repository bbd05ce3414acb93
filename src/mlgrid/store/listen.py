"""A PostgreSQL ``LISTEN`` connection: wake-ups from the other nodes, without polling.

One plain asyncpg connection per node (outside the pool: a listening connection must stay
open), listening on ``leases.CHANNEL``. Every payload is handed to ``on_payload`` on the event
loop. When the connection drops, the listener reconnects after a pause and calls
``on_reconnect`` (a notification sent meanwhile is lost, so the caller polls once); it calls
``on_lost`` as soon as the connection is gone (the database may have restarted).
An idle LISTEN connection issues no statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import make_url

from mlgrid.store.leases import CHANNEL

log = logging.getLogger("mlgrid.cluster")

RECONNECT_SECONDS = 1.0

T = TypeVar("T")


def asyncpg_dsn(url: str) -> str:
    """``postgresql://`` DSN asyncpg accepts, from the server's database URL."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _conn: event.set()


class Listener:
    def __init__(
        self,
        url: str,
        on_payload: Callable[[str], None],
        on_reconnect: Callable[[], None],
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        self._on_payload = on_payload
        self._on_reconnect = on_reconnect
        self._on_lost = on_lost
        self.connected = asyncio.Event()
        self._conn: Any = None
        self._lock = asyncio.Lock()

    async def call(self, work: Callable[[Any], Awaitable[T]], timeout: float) -> T | None:
        """Run ``work(connection)`` on the listening connection (one at a time); None when it
        is down. For the node's heartbeat: a connection that is open anyway, never pinged.
        A call that takes longer than ``timeout`` (the database is unreachable: a silent
        network partition) drops the connection, which then reconnects."""
        conn = self._conn
        if conn is None or conn.is_closed():
            return None
        async with self._lock:
            try:
                return await asyncio.wait_for(work(conn), timeout)
            except TimeoutError:
                conn.terminate()
                raise

    def _received(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._on_payload(payload)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting whenever the connection is lost."""
        first = True
        failures = 0  # consecutive failed connects: one line per outage, not one per try
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self._dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(CHANNEL, self._received)
                self._conn = conn
                self.connected.set()
                if failures:
                    log.warning("LISTEN connection restored after %d failed tries", failures,
                                extra={"action": "listen_restored"})
                    failures = 0
                if not first:
                    self._on_reconnect()
                first = False
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: try again shortly
                failures += 1
                if failures == 1:
                    log.warning("LISTEN connection failed: %s; retrying quietly", exc,
                                extra={"action": "listen_failed"})
            finally:
                if self._conn is not None:
                    self._on_lost()
                self._conn = None
                self.connected.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2.0)
            await asyncio.sleep(RECONNECT_SECONDS)
