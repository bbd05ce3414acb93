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

A webhook or ``:resync`` wakes the task before its interval ends. The lease is a little longer
than three poll intervals, so a node that dies leaves its connectors to another node within
that time; a node whose lease is gone finds out at its next commit (``LeaseLost``) and emits
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from mlgrid.connectors.mlflow_client import MlflowClient, MlflowError
from mlgrid.connectors.service import ConnectorService, LeaseLost
from mlgrid.domain.records import ConnectorRow
from mlgrid.store import connectors as connector_store
from mlgrid.store.faults import QuietFailures

log = logging.getLogger("mlgrid.connectors")

MAX_BACKOFF = 300.0
BACKOFF_INTERVALS = 10
"""A failing connector retries after at most this many poll intervals (and ``MAX_BACKOFF``)."""
SYNC_TIMEOUT_FACTOR = 10.0
"""A sync taking longer than this many poll intervals (at least 60 s) is abandoned as a fault."""


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
                    failures = await self._poll(row, client, failures)
                    if failures:
                        delay = backoff(row.poll_interval, failures)
                await self._sleep(connector_id, delay)
        finally:
            if client is not None:
                await client.close()
            if held:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.service.release_lease(connector_id))

    async def _poll(self, row: ConnectorRow, client: MlflowClient, failures: int) -> int:
        """One sync; returns the number of consecutive failures after it."""
        timeout = max(60.0, SYNC_TIMEOUT_FACTOR * row.poll_interval)
        try:
            await asyncio.wait_for(self.service.sync(row, client), timeout=timeout)
            return 0
        except asyncio.CancelledError:
            raise
        except LeaseLost as exc:
            log.info("%s", exc, extra={"action": "connector_lease_lost", "connector": row.id})
            return 0
        except MlflowError as exc:
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
        return failures + 1

    async def _sleep(self, connector_id: str, delay: float) -> None:
        event = self._wakes.get(connector_id)
        if event is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=delay)
        event.clear()
