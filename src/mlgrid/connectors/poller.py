"""The connectors' background duty inside ``mlgrid serve``: one task per connector.

A supervisor re-reads the connector list every ``refresh`` seconds (or at once when a PUT,
PATCH, DELETE, ``:resync`` or webhook on this node says so) and keeps one task per connector.
Each task loops:

* paused → nothing (the lease is released so nothing else waits on it);
* take or extend the lease (``store.connectors.try_lease``); another node holds it → wait;
* ``ConnectorService.sync``; success → state ``Running``, next poll after ``pollIntervalSeconds``;
  a fault of MLflow (down, slow, 5xx, garbage, refused token) → state ``Failing`` with the
  error, next try after an exponential backoff capped at ``MAX_BACKOFF`` seconds. Any other
  exception is logged and treated the same way: a connector never takes the server down.

With ``intake: outbox`` the task drains MLflow's outbox table instead of polling: it holds a
PostgreSQL ``LISTEN`` on the plugin's channel, so a commit in MLflow wakes it at once, and
otherwise drains every ``pollIntervalSeconds`` (SQLite, or the listening connection lost);
the full sweep still runs every ``fullSweepMinutes`` (after a drain, then another drain),
serially in the same task, so a sweep and a drain never commit over each other.

A webhook or ``:resync`` wakes the task before its interval ends. The lease is a little longer
than three poll intervals, so a node that dies leaves its connectors to another node within
that time; a node whose lease is gone finds out at its next commit (``LeaseLost``) and emits
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from mlgrid.connectors.config import INTAKE_OUTBOX
from mlgrid.connectors.mlflow_client import MlflowClient, MlflowError
from mlgrid.connectors.outbox import Experiments
from mlgrid.connectors.service import DRAIN_BATCH, ConnectorService, LeaseLost
from mlgrid.domain.records import ConnectorRow
from mlgrid.store import connectors as connector_store
from mlgrid.store.mlflow_outbox import OutboxListener, OutboxSource, OutboxUnavailable

log = logging.getLogger("mlgrid.connectors")

MAX_BACKOFF = 300.0
BACKOFF_INTERVALS = 10
"""A failing connector retries after at most this many poll intervals (and ``MAX_BACKOFF``)."""
SYNC_TIMEOUT_FACTOR = 10.0
"""A sync taking longer than this many poll intervals (at least 60 s) is abandoned as a fault."""
MAX_BATCHES_PER_PASS = 20
"""Outbox batches drained in one pass before the loop looks at its lease and config again."""


@dataclass
class _Outbox:
    """One connector task's handle on MLflow's outbox (rebuilt when the connector changes)."""

    etag: str
    source: OutboxSource
    listener: OutboxListener | None = None
    experiments: Experiments = field(default_factory=Experiments)

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()
        await self.source.close()


def backoff(poll_interval: float, failures: int) -> float:
    """Seconds before the next try after ``failures`` consecutive failures: doubling from the
    poll interval, capped at ten intervals and five minutes, so MLflow coming back is noticed
    soon without hammering it while it is down."""
    cap = min(MAX_BACKOFF, BACKOFF_INTERVALS * poll_interval)
    return float(min(cap, poll_interval * 2 ** min(max(failures - 1, 0), 16)))


class ConnectorPoller:
    def __init__(self, service: ConnectorService, *, refresh: float = 5.0) -> None:
        self.service = service
        self.refresh = refresh
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self._supervisor_wake = asyncio.Event()
        service.changed.append(self.wake)

    def wake(self, connector_id: str) -> None:
        """Poll this connector now (and re-read the connector list)."""
        event = self._wakes.get(connector_id)
        if event is not None:
            event.set()
        self._supervisor_wake.set()

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._supervise()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception(
                        "connector supervisor pass failed", extra={"action": "connector_supervisor_failed"}
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._supervisor_wake.wait(), timeout=self.refresh)
                self._supervisor_wake.clear()
        finally:
            await self.shutdown()

    async def _supervise(self) -> None:
        async with self.service.core.db.read() as conn:
            rows = await connector_store.list_all(conn)
        ids = {row.id for row in rows}
        for connector_id in list(self._tasks):
            if connector_id not in ids or self._tasks[connector_id].done():
                task = self._tasks.pop(connector_id)
                self._wakes.pop(connector_id, None)
                task.cancel()
        for row in rows:
            if row.id not in self._tasks:
                self._wakes[row.id] = asyncio.Event()
                self._tasks[row.id] = asyncio.create_task(
                    self._loop(row.id), name=f"mlgrid-connector-{row.name}"
                )

    async def shutdown(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _loop(self, connector_id: str) -> None:
        failures = 0
        client: MlflowClient | None = None
        client_etag = ""
        outbox: _Outbox | None = None
        held = False
        try:
            while True:
                async with self.service.core.db.read() as conn:
                    row = await connector_store.get_by_id(conn, connector_id)
                if row is None:
                    return
                delay = row.poll_interval
                if row.paused:
                    if held:
                        await self.service.release_lease(row.id)
                        held = False
                elif not await self.service.take_lease(row):
                    held = False
                    delay = min(row.poll_interval, self.service.lease_seconds(row) / 3)
                else:
                    held = True
                    if client is None or client_etag != row.etag:
                        if client is not None:
                            await client.close()
                        client = self.service.client(row)
                        client_etag = row.etag
                    if outbox is not None and (outbox.etag != row.etag or row.intake != INTAKE_OUTBOX):
                        await outbox.close()
                        outbox = None
                    if outbox is None and row.intake == INTAKE_OUTBOX:
                        source = self.service.outbox(row)
                        outbox = None if source is None else _Outbox(row.etag, source)
                    if outbox is not None:
                        await self._listen(row, outbox)
                    failures, more = await self._poll(row, client, failures, outbox)
                    if failures:
                        delay = backoff(row.poll_interval, failures)
                    elif more:
                        delay = 0.0
                await self._sleep(connector_id, delay)
        finally:
            if outbox is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(outbox.close())
            if client is not None:
                await client.close()
            if held:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.service.release_lease(connector_id))

    async def _listen(self, row: ConnectorRow, outbox: _Outbox) -> None:
        """(Re)open the LISTEN connection when it is missing or dropped (PostgreSQL only); on
        failure the drain still runs every poll interval."""
        if not outbox.source.postgres or (outbox.listener is not None and outbox.listener.alive):
            return
        if outbox.listener is not None:
            await outbox.listener.close()
            outbox.listener = None
        wake = self._wakes.get(row.id)
        try:
            outbox.listener = await outbox.source.listen(wake.set if wake is not None else lambda: None)
        except OutboxUnavailable as exc:
            log.warning(
                "connector %s cannot LISTEN on MLflow's database: %s",
                row.name,
                exc,
                extra={"action": "connector_listen_failed", "connector": row.id},
            )

    async def _work(self, row: ConnectorRow, client: MlflowClient, outbox: _Outbox | None) -> bool:
        """Polling: one sync. Outbox: the full sweep when due, and drain; True when rows remain."""
        if outbox is None:
            await self.service.sync(row, client)
            return False
        if self.service.full_sweep_due(row, self.service.clock()):
            if row.synced:
                await self._drain(row, client, outbox)  # the sweep reads after what is pending
            await self.service.sync(row, client, full=True)
        return await self._drain(row, client, outbox)

    async def _drain(self, row: ConnectorRow, client: MlflowClient, outbox: _Outbox) -> bool:
        for _ in range(MAX_BATCHES_PER_PASS):
            result = await self.service.drain(row, client, outbox.source, outbox.experiments)
            if result.rows < DRAIN_BATCH:
                return False
        return True

    async def _poll(
        self, row: ConnectorRow, client: MlflowClient, failures: int, outbox: _Outbox | None = None
    ) -> tuple[int, bool]:
        """One sync (or sweep + drain); returns the consecutive failures after it, and whether
        outbox rows remain."""
        timeout = max(60.0, SYNC_TIMEOUT_FACTOR * row.poll_interval)
        try:
            more = await asyncio.wait_for(self._work(row, client, outbox), timeout=timeout)
            return 0, more
        except asyncio.CancelledError:
            raise
        except LeaseLost as exc:
            log.info("%s", exc, extra={"action": "connector_lease_lost", "connector": row.id})
            return 0, False
        except MlflowError as exc:
            error = f"{exc.code}: {exc}"
        except OutboxUnavailable as exc:
            error = f"{exc.code}: {exc}"
        except TimeoutError:
            error = f"MlflowUnavailable: a poll took longer than {timeout:g} s"
        except Exception as exc:
            log.exception(
                "connector %s poll failed",
                row.name,
                extra={"action": "connector_failed", "connector": row.id},
            )
            error = f"{type(exc).__name__}: {exc}"
        log.warning(
            "connector %s failing: %s",
            row.name,
            error,
            extra={"action": "connector_failing", "connector": row.id, "failures": failures + 1},
        )
        with contextlib.suppress(Exception):
            await self.service.record_failure(row.id, error)
        return failures + 1, False

    async def _sleep(self, connector_id: str, delay: float) -> None:
        event = self._wakes.get(connector_id)
        if event is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=delay)
        event.clear()
