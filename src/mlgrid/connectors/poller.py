"""The connectors' background duty inside ``mlgrid serve``: one leased duty per connector.

A supervisor re-reads the connector list every ``refresh`` seconds (or at once when a PUT,
PATCH, DELETE, ``:resync`` or webhook on this node or, by NOTIFY, on another node says so) and
registers one duty per connector with the node (``connector:<id>``, ``cluster/node.py``): the
one node holding that lease polls it. Its task loops:

* paused → nothing;
* ``ConnectorService.sync`` (its commit checks the lease: ``fence``);
  success → state ``Running``, next poll after ``pollIntervalSeconds``;
  a fault of MLflow (down, slow, 5xx, garbage, refused token) → state ``Failing`` with the
  error, next try after an exponential backoff capped at ``MAX_BACKOFF`` seconds. Any other
  exception is logged and treated the same way: a connector never takes the server down.

A webhook or ``:resync`` wakes the task before its interval ends. A node that dies leaves its
connectors to another node once it is declared dead (``--node-timeout``); a node whose lease is
gone finds out at its next commit (``LeaseLost``), emits nothing and stops polling.

With ``intake: outbox`` the task drains MLflow's outbox table instead of polling: it holds a
PostgreSQL ``LISTEN`` on the plugin's channel, so a commit in MLflow wakes it at once, and
otherwise drains every ``pollIntervalSeconds`` (SQLite, or the listening connection lost);
the full sweep still runs every ``fullSweepMinutes`` (after a drain, then another drain),
serially in the same task, so a sweep and a drain never commit over each other. Every drain
commits under the same fence as a poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from mlgrid.cluster.node import Lease, Node
from mlgrid.connectors.config import INTAKE_OUTBOX
from mlgrid.connectors.mlflow_client import MlflowClient, MlflowError
from mlgrid.connectors.outbox import Experiments
from mlgrid.connectors.service import DRAIN_BATCH, ConnectorService, Fence
from mlgrid.domain.records import ConnectorRow
from mlgrid.errors import LeaseLost
from mlgrid.store import connectors as connector_store
from mlgrid.store.faults import QuietFailures
from mlgrid.store.mlflow_outbox import OutboxListener, OutboxSource, OutboxUnavailable

log = logging.getLogger("mlgrid.connectors")

#: The lease of a connector is ``connector:<id>``.
PREFIX = "connector:"
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


def lease_name(connector_id: str) -> str:
    return PREFIX + connector_id


def backoff(poll_interval: float, failures: int) -> float:
    """Seconds before the next try after ``failures`` consecutive failures: doubling from the
    poll interval, capped at ten intervals and five minutes, so MLflow coming back is noticed
    soon without hammering it while it is down."""
    cap = min(MAX_BACKOFF, BACKOFF_INTERVALS * poll_interval)
    return float(min(cap, poll_interval * 2 ** min(max(failures - 1, 0), 16)))


class ConnectorPoller:
    def __init__(self, service: ConnectorService, node: Node, *, refresh: float = 5.0) -> None:
        self.service = service
        self.node = node
        self.refresh = refresh
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
        failures = QuietFailures(log, "connector supervisor", self.service.core.db.health)
        try:
            while True:
                try:
                    await self._supervise()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures.failed(exc, "connector supervisor pass failed", "connector_supervisor_failed")
                else:
                    failures.succeeded()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._supervisor_wake.wait(), timeout=self.refresh)
                self._supervisor_wake.clear()
        finally:
            await self.shutdown()

    async def _supervise(self) -> None:
        async with self.service.core.db.read() as conn:
            rows = await connector_store.list_all(conn)
        names = {lease_name(row.id): row.id for row in rows}
        for name in self.node.duties(PREFIX):
            if name not in names:
                self._wakes.pop(name[len(PREFIX):], None)
                await self.node.drop_duty(name, delete=True)
        for name, connector_id in names.items():
            if not self.node.has_duty(name):
                self._wakes[connector_id] = asyncio.Event()
                self.node.duty(name, self._duty)

    async def shutdown(self) -> None:
        for name in self.node.duties(PREFIX):
            await self.node.drop_duty(name)

    async def _duty(self, lease: Lease) -> None:
        node = self.node

        async def fence(conn: Any) -> None:
            await node.fence(conn, lease)

        await self._loop(lease.name[len(PREFIX):], fence)

    async def _loop(self, connector_id: str, fence: Fence) -> None:
        """Poll while this node holds the connector's lease (the node cancels it otherwise)."""
        failures = 0
        client: MlflowClient | None = None
        client_etag = ""
        outbox: _Outbox | None = None
        try:
            while True:
                async with self.service.core.db.read() as conn:
                    row = await connector_store.get_by_id(conn, connector_id)
                if row is None:
                    return
                delay = row.poll_interval
                if not row.paused:
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
                    failures, more = await self._poll(row, client, failures, fence, outbox)
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

    async def _work(
        self, row: ConnectorRow, client: MlflowClient, fence: Fence, outbox: _Outbox | None
    ) -> bool:
        """Polling: one sync. Outbox: the full sweep when due, and drain; True when rows remain."""
        if outbox is None:
            await self.service.sync(row, client, fence=fence)
            return False
        if self.service.full_sweep_due(row, self.service.clock()):
            if row.synced:
                await self._drain(row, client, fence, outbox)  # the sweep reads after what is pending
            await self.service.sync(row, client, full=True, fence=fence)
        return await self._drain(row, client, fence, outbox)

    async def _drain(self, row: ConnectorRow, client: MlflowClient, fence: Fence, outbox: _Outbox) -> bool:
        for _ in range(MAX_BATCHES_PER_PASS):
            result = await self.service.drain(row, client, outbox.source, outbox.experiments, fence=fence)
            if result.rows < DRAIN_BATCH:
                return False
        return True

    async def _poll(
        self,
        row: ConnectorRow,
        client: MlflowClient,
        failures: int,
        fence: Fence,
        outbox: _Outbox | None = None,
    ) -> tuple[int, bool]:
        """One sync (or sweep + drain); returns the consecutive failures after it, and whether
        outbox rows remain."""
        timeout = max(60.0, SYNC_TIMEOUT_FACTOR * row.poll_interval)
        try:
            more = await asyncio.wait_for(self._work(row, client, fence, outbox), timeout=timeout)
            return 0, more
        except (asyncio.CancelledError, LeaseLost):
            raise  # lost: the node stops this duty
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
