"""The drift scheduler: each window of a scheduled monitor, analysed once, when it is due.

A window is due when it is complete and the monitor's ``latency`` has passed since its end
(``due_windows``). Progress is persisted per monitor (``schedule_since``: every window ending at
or before it has been dealt with) and advanced in the transaction that records each run, so a
restart resumes exactly where the last commit left off: nothing skipped, nothing repeated. The
unique (monitor, window) key of the runs is the final guard — when two nodes on one PostgreSQL
database analyse the same window, the second commit finds the first one's run and publishes
nothing.

Where a schedule begins: at the window holding the target dataset's earliest timestamp, fixed
on the scheduler's first pass over the monitor. Every window of the target is therefore judged
once, whether it ended before or after the monitor was created; windows a backfill already
analysed are skipped without a second event. Disabling the schedule pauses it; enabling it
again resumes from where it stopped.

Several nodes: the scheduler runs on the one node holding its lease (``DRIFT_DUTY``); every
run it records checks that lease in the run's own transaction, so a node that lost it (paused
past the node timeout, cut off from the database) records no window.

``run_due(now)`` is one pass with an injected clock (what tests call); ``run`` loops over it
every ``interval`` seconds, or at once when a PUT enables a schedule on this node (``wake``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from mlgrid.domain.records import DriftRunRow, MonitorRow
from mlgrid.errors import LeaseLost, MlgridError
from mlgrid.store import drift as drift_store
from mlgrid.store.faults import QuietFailures
from mlgrid.workspace.drift.windows import due_windows
from mlgrid.workspace.drift_monitors import SCHEDULE, DriftMonitorService, Fence

log = logging.getLogger("mlgrid.workspace.drift")

DEFAULT_INTERVAL = 30.0
DRIFT_DUTY = "drift-scheduler"
MAX_WINDOWS_PER_PASS = 400
"""Windows one monitor may analyse in one pass; a long backlog (a schedule over years of data,
a server that was down for weeks) is worked off over consecutive passes without waiting for
the interval in between."""


class DriftScheduler:
    def __init__(
        self,
        monitors: DriftMonitorService,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], datetime] | None = None,
        max_windows_per_pass: int = MAX_WINDOWS_PER_PASS,
    ) -> None:
        self.monitors = monitors
        self.interval = interval
        self.clock = clock or (lambda: datetime.now(UTC))
        self.max_windows_per_pass = max_windows_per_pass
        self._wake = asyncio.Event()
        self._failures = QuietFailures(log, "drift scheduler", monitors.core.db.health)
        self._backlog = False

    def wake(self) -> None:
        """Run a pass soon (a monitor's schedule was just enabled or changed)."""
        self._wake.set()

    async def run_due(self, now: datetime | None = None, fence: Fence | None = None) -> list[DriftRunRow]:
        """One pass: analyse every due window of every scheduled monitor; returns the runs of
        the windows dealt with (including ones a backfill had already analysed)."""
        moment = self.clock() if now is None else now
        async with self.monitors.core.db.read() as conn:
            scheduled = await drift_store.list_scheduled(conn)
        self._backlog = False
        done: list[DriftRunRow] = []
        for monitor in scheduled:
            try:
                done.extend(await self._run_monitor(monitor, moment, fence))
            except LeaseLost:
                raise
            except MlgridError as exc:
                # The monitor changed or vanished mid-pass, or its files are missing on this
                # node: nothing was recorded for the window, so the next pass tries again.
                log.warning(
                    "drift monitor %s skipped this pass: %s", monitor.name, exc,
                    extra={"action": "drift_schedule_skipped", "monitor": monitor.id},
                )
            except Exception as exc:
                self._failures.failed(
                    exc, f"drift monitor {monitor.name} failed in the scheduler", "drift_schedule_failed",
                    monitor=monitor.id,
                )
        return done

    async def _run_monitor(
        self, monitor: MonitorRow, now: datetime, fence: Fence | None
    ) -> list[DriftRunRow]:
        core = self.monitors.core
        ws = await core.get(monitor.workspace_key)
        since = monitor.schedule_since
        if since is None:
            since = await self.monitors.first_window_start(ws, monitor)
            if since is None:
                return []
            async with core.db.write() as conn:
                if fence is not None:
                    await fence(conn)
                await drift_store.set_schedule_since(conn, monitor.id, since)
        due = due_windows(now, monitor.latency_hours, monitor.frequency, since)
        windows = due[: self.max_windows_per_pass]
        if not windows:
            return []
        runs = await self.monitors.analyse(ws, monitor, windows, SCHEDULE, fence)
        # Windows a backfill had analysed were skipped without a transaction of their own.
        async with core.db.write() as conn:
            if fence is not None:
                await fence(conn)
            await drift_store.set_schedule_since(conn, monitor.id, windows[-1][1])
        if len(due) > len(windows):
            self._backlog = True  # only after progress, so a failing monitor cannot spin
        return runs

    async def run(self, fence: Fence | None = None) -> None:
        """The background task (the body of the scheduler's duty, on the one node holding its
        lease): a pass now, then one every ``interval`` seconds (or at once while a backlog
        remains, or when woken). ``fence`` checks the lease in every write."""
        while True:
            try:
                await self.run_due(fence=fence)
            except (asyncio.CancelledError, LeaseLost):
                raise
            except Exception as exc:
                self._failures.failed(exc, "drift scheduler pass failed", "drift_schedule_failed")
            else:
                self._failures.succeeded()
            if self._backlog:
                await asyncio.sleep(0)
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            except TimeoutError:
                pass
            self._wake.clear()
