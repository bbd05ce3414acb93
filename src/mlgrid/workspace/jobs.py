"""Submitted jobs: the server runs a command as a run, in a subprocess.

A job is a run created ``Queued`` with the command, started at once through
``workspace.processes`` — contained: its own unprivileged uid (server as root) or a bubblewrap
sandbox, in a private working copy, in its own process group — and moved to ``Running``. With
``workingDirectory`` the job first copies that directory into its working copy (the code
snapshot), *as the job's own user*: it gets only what that user may read anyway. Its standard
output and error go to a file on the node (``WorkspaceFiles.job_log_path``), stored as the run's
artifact ``logs/job.log`` in the blob store when the process ends; then the run
becomes ``Completed`` (exit code 0) or ``Failed`` (the error says the code or signal), with the
log artifact recorded in the same transaction; whatever the job left running is killed and its
working copy removed. ``PATCH status CancelRequested`` kills the process group (SIGTERM, then
SIGKILL after a grace period) and the run ends ``Canceled``.

The process gets a scrubbed environment (``PATH``, locale, ``HOME``/``TMPDIR`` in its working
copy — nothing of the server's own), the request's ``environment``, and ``MLGRID_RUN_ID``,
``MLGRID_URL``, ``MLGRID_WORKSPACE``, ``MLGRID_EXPERIMENT`` and ``MLGRID_TOKEN``: a run token
(``auth.run_tokens``) that reads and writes this run only, so the job reports its metrics and
artifacts without holding anybody's credentials.

A job belongs to the node that started it. The node refreshes a heartbeat on its jobs and
polls for cancellations requested through other nodes. A job whose server died is marked
``Failed`` when that server starts again (its process, if still alive, is killed), or by any
node once its heartbeat is older than ``STALE_AFTER_SECONDS``. A server that shuts down
cleanly kills its jobs and marks them ``Failed``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from mlgrid.domain.records import ArtifactRow
from mlgrid.errors import MlgridError, invalid
from mlgrid.store import leases as lease_store
from mlgrid.store import runs as run_store
from mlgrid.store.faults import QuietFailures
from mlgrid.store.runs import RunRow
from mlgrid.workspace import code_limits, code_snapshot, lifecycle, processes
from mlgrid.workspace.files import discard, hash_file
from mlgrid.workspace.runs import RunService, RunUpdate, RunView
from mlgrid.workspace.service import Workspace, WorkspaceTransaction
from mlgrid.workspace.validation import JobSpec, RunCreate

log = logging.getLogger("mlgrid.workspace.jobs")

JOB_LOG = "logs/job.log"
DEFAULT_RUN_TYPE = "job"
POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 10.0
SWEEP_SECONDS = 30.0
#: The lease of the stale-job sweeper (one node of a cluster sweeps).
SWEEPER_DUTY = "jobs-sweeper"
STALE_AFTER_SECONDS = 90.0
KILL_GRACE_SECONDS = 5.0
SHUTDOWN_GRACE_SECONDS = 2.0
SNAPSHOT_FAILED_EXIT_CODE = 126
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# Runs as the job's own user: copy the code snapshot ($1) into the working copy, then the command ($2).
_SNAPSHOT_THEN_RUN = (
    'if [ -n "$1" ]; then cp -R -- "$1"/. . || { echo "could not copy the working directory $1 '
    f'into the job\'s working copy" >&2; exit {SNAPSHOT_FAILED_EXIT_CODE}; }}; fi; exec /bin/sh -c "$2"'
)


def default_node_id(configured: str) -> str:
    """The node id jobs are recorded under: the ``node_id`` setting or ``hostname:pid``."""
    return configured or f"{socket.gethostname()}:{os.getpid()}"


def _copy_snapshot(source: Path, sandbox: processes.Sandbox) -> None:
    """Copy an uploaded code snapshot (server-owned run artifacts) into the job's working copy,
    handed over to the job's user (blocking)."""
    for entry in sorted(source.iterdir()):
        copied = sandbox.copy_in(entry, entry.name)
        if not copied.is_dir() and sandbox.uid is not None and sandbox.gid is not None:
            # Sandbox.give walks directories only: a top-level file is handed over here.
            os.chown(copied, sandbox.uid, sandbox.gid, follow_symlinks=False)


def job_path(server_path: str | None) -> str:
    """The job's ``PATH``: the server's interpreter directory first, so ``python train.py`` runs
    the Python the server runs (with the mlgrid SDK, as in an Azure ML job's environment) even
    when the server was started as ``.venv/bin/mlgrid serve`` without activating ``.venv``."""
    interpreter_dir = str(Path(sys.executable).parent)
    rest = [p for p in (server_path or DEFAULT_PATH).split(os.pathsep) if p and p != interpreter_dir]
    return os.pathsep.join([interpreter_dir, *rest])


def describe_exit(code: int) -> str:
    return processes.describe_exit(code, "the job's process" if code < 0 else "the job's command")


_process_alive = processes.process_alive
LOG_TAIL_BYTES = 4096


def _log_tail(path: Path) -> str:
    """The end of a job's log (blocking): where an out-of-memory message would be."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


@dataclass
class _LocalJob:
    workspace_key: str
    run_id: str
    process: processes.ManagedProcess
    log_path: Path
    limits: code_limits.Limits = field(default_factory=code_limits.Limits)
    cancel: bool = False
    shutting_down: bool = False
    waiter: asyncio.Task[None] | None = None
    killers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return (self.workspace_key, self.run_id)


class JobRunner:
    def __init__(
        self,
        runs: RunService,
        *,
        base_url: str,
        node_id: str,
        single_node: bool,
        containment: processes.Containment,
        issue_token: Callable[[str, str], str | None] = lambda workspace, run: None,
        environ: Callable[[], dict[str, str]] = lambda: dict(os.environ),
        code_limits: code_snapshot.SnapshotLimits | None = None,
    ) -> None:
        self.runs = runs
        self.core = runs.core
        self.containment = containment
        self._issue_token = issue_token
        self.base_url = base_url
        self.node_id = node_id
        self.single_node = single_node
        self._environ = environ
        self.code_limits = code_limits or code_snapshot.SnapshotLimits(max_bytes=300 * 1000 * 1000)
        self._local: dict[tuple[str, str], _LocalJob] = {}
        runs.cancel_listeners.append(self._on_cancel)
        self.core.before_delete.append(self._stop_workspace_jobs)

    # --- submitting ------------------------------------------------------------------------

    async def submit(
        self, workspace_name: str, experiment: str, spec: JobSpec, code: BinaryIO | None = None
    ) -> RunView:
        """Start a job; ``code`` is the uploaded zip of its code directory (see ``code_snapshot``),
        kept as the run's ``snapshot/`` artifacts, that the job's working copy starts from."""
        self.containment.check_allowed("jobs")
        # Limits beyond the server's are refused before a run exists (``_start`` applies them).
        self.containment.policy.job(spec.memory_mb, spec.cpu_seconds, spec.network)
        ws = await self.core.get(workspace_name)
        if code is not None and spec.working_directory is not None:
            raise invalid("workingDirectory", "send a code snapshot or a workingDirectory, not both")
        if spec.working_directory is not None and not await asyncio.to_thread(
            Path(spec.working_directory).is_dir
        ):
            raise invalid(
                "workingDirectory", f"{spec.working_directory!r} is not an existing directory on the server"
            )
        staged: Path | None = None
        snapshot_files: list[code_snapshot.SnapshotFile] = []
        if code is not None:
            staged = self.core.files.staging_path(ws.key)
            snapshot_files = await asyncio.to_thread(code_snapshot.extract, code, staged, self.code_limits)
            # The job starts here, from a copy that keeps the files' modes (an executable
            # script stays executable; the blob store keeps contents only).
            working = self.core.files.staging_path(ws.key)
            await asyncio.to_thread(shutil.copytree, staged, working, symlinks=True)
        else:
            working = None
        try:
            try:
                view = await self._create_run(ws, experiment, spec, staged, snapshot_files)
            finally:
                if staged is not None:
                    await asyncio.to_thread(discard, staged)  # placed by then, unless it failed
            return await self._start(ws, view, spec, snapshot=working)
        finally:
            if working is not None:
                await asyncio.to_thread(discard, working)

    async def _create_run(
        self,
        ws: Workspace,
        experiment: str,
        spec: JobSpec,
        staged: Path | None,
        snapshot_files: list[code_snapshot.SnapshotFile],
    ) -> RunView:
        """The ``Queued`` run, with its code snapshot's artifacts in the same transaction."""
        now = self.core.clock()

        async def record_snapshot(tx: WorkspaceTransaction, ws: Workspace, row: RunRow) -> None:
            if staged is None:
                return
            for item in snapshot_files:
                path = f"{code_snapshot.SNAPSHOT_PREFIX}/{item.path}"
                artifact = ArtifactRow(ws.key, row.id, path, item.size, item.sha256, now)
                await run_store.upsert_artifact(tx.conn, artifact)
            final = self.core.files.artifact_name(ws.key, row.id, code_snapshot.SNAPSHOT_PREFIX)
            await tx.place(staged, final, "the code snapshot")

        return await self.runs.start(
            ws.name,
            experiment,
            RunCreate(
                run_type=spec.run_type or DEFAULT_RUN_TYPE,
                tags=spec.tags,
                properties=spec.properties,
                status=lifecycle.QUEUED,
            ),
            job={
                "job_command": spec.command,
                "job_working_directory": spec.working_directory,
                "job_node": self.node_id,
                "job_heartbeat_at": now,
            },
            extra=record_snapshot,
        )

    async def _start(self, ws: Workspace, view: RunView, spec: JobSpec, *, snapshot: Path | None) -> RunView:
        """Start the run's process in a fresh sandbox and mark the run ``Running``."""
        limits, network = self.containment.policy.job(spec.memory_mb, spec.cpu_seconds, spec.network)
        log_path = self.core.files.job_log_path(ws.key, view.id)
        variables = {
            "MLGRID_RUN_ID": view.id,
            "MLGRID_URL": self.base_url,
            "MLGRID_WORKSPACE": ws.name,
            "MLGRID_EXPERIMENT": view.experiment.name,
        }
        token = self._issue_token(ws.key, view.id)
        if token is not None:
            variables["MLGRID_TOKEN"] = token
        if network == code_limits.NETWORK_API:  # the relay listens on 127.0.0.1:<server port>
            variables["MLGRID_URL"] = self.containment.api_url
        variables["PATH"] = job_path(self._environ().get("PATH"))
        variables.update(spec.environment)  # the submitter's own choice wins (even MLGRID_TOKEN)
        sandbox: processes.Sandbox | None = None
        try:
            sandbox = await asyncio.to_thread(self.containment.new_sandbox, "job")
            if snapshot is not None:
                try:
                    await asyncio.to_thread(_copy_snapshot, snapshot, sandbox)
                except OSError:
                    await asyncio.to_thread(processes.remove_tree, sandbox.path)
                    raise
            snapshot_directory = spec.working_directory or ""
            command = processes.Command(
                argv=["/bin/sh", "-c", _SNAPSHOT_THEN_RUN, "mlgrid-job", snapshot_directory, spec.command],
                environment=processes.contained_environment(self._environ(), variables, sandbox.path),
                log_path=log_path,
                limits=limits,
                network=network,
            )
            process = await processes.start(self.containment, sandbox, command)
        except OSError as exc:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            if not log_path.exists():
                log_path.write_text(f"could not start the job: {exc}\n")
            return await self._finish(
                ws.key, view.id, log_path, None, error=f"could not start the job: {exc}"
            )
        job = _LocalJob(ws.key, view.id, process, log_path, limits)
        self._local[job.key] = job
        view = await self._mark_running(job)
        job.waiter = asyncio.create_task(self._wait(job), name=f"mlgrid-job-{view.id}")
        return view

    async def _mark_running(self, job: _LocalJob) -> RunView:
        pid = job.process.pid

        def decide(current: RunView) -> RunUpdate:
            columns = {"job_pid": pid, "job_heartbeat_at": self.core.clock()}
            if current.status in (lifecycle.NOT_STARTED, lifecycle.QUEUED, lifecycle.PREPARING):
                return RunUpdate(status=lifecycle.RUNNING, job=columns)
            return RunUpdate(job=columns)

        try:
            view = await self.runs.apply(job.workspace_key, job.run_id, decide, operation="job.start")
        except Exception:
            self._kill_soon(job)
            raise
        if view.status == lifecycle.CANCEL_REQUESTED:
            job.cancel = True
            self._kill_soon(job)
        return view

    async def _wait(self, job: _LocalJob) -> None:
        try:
            code = await job.process.wait()
            await job.process.release()  # what it left running dies; its working copy goes
            await self._finish(job.workspace_key, job.run_id, job.log_path, code, job=job)
        except Exception:
            log.exception(
                "could not record the end of job %s",
                job.run_id,
                extra={"action": "job_finish_failed", "run_id": job.run_id},
            )
        finally:
            self._local.pop(job.key, None)

    async def _finish(
        self,
        workspace_key: str,
        run_id: str,
        log_path: Path,
        code: int | None,
        *,
        job: _LocalJob | None = None,
        error: str | None = None,
    ) -> RunView:
        """Record how the job ended: terminal status, exit code and the log artifact, together.

        The log, written on this node while the job ran, is stored in the blob store first (a
        job whose node died elsewhere has no log here: its run ends without one)."""
        size: int | None = None
        sha256: str | None = None
        if await asyncio.to_thread(log_path.is_file):
            size, sha256 = await asyncio.to_thread(hash_file, log_path)
            name = self.core.files.artifact_name(workspace_key, run_id, JOB_LOG)
            await self.core.files.blobs.put_file(name, log_path, move=True)
        now = self.core.clock()
        limit_reason = None
        if job is not None and code:
            tail = await asyncio.to_thread(_log_tail, log_path)
            limit_reason = code_limits.explain_limit(code, job.limits, tail)

        def decide(current: RunView) -> RunUpdate:
            columns: dict[str, Any] = {"job_exit_code": code, "job_heartbeat_at": now}
            if current.status in lifecycle.TERMINAL:
                return RunUpdate(job=columns)
            if error is not None:
                return RunUpdate(status=lifecycle.FAILED, error=error, job=columns)
            if job is not None and job.shutting_down:
                return RunUpdate(
                    status=lifecycle.FAILED, error="the server stopped while the job was running", job=columns
                )
            if current.status == lifecycle.CANCEL_REQUESTED or (job is not None and job.cancel):
                return RunUpdate(status=lifecycle.CANCELED, job=columns)
            if code == 0:
                return RunUpdate(status=lifecycle.COMPLETED, job=columns)
            reason = describe_exit(code if code is not None else -9)
            if limit_reason is not None:
                reason = f"{reason}: {limit_reason}"
            return RunUpdate(status=lifecycle.FAILED, error=reason, job=columns)

        async def record_log(tx: WorkspaceTransaction, ws: Workspace, row: RunRow) -> None:
            if size is not None and sha256 is not None:
                await run_store.upsert_artifact(
                    tx.conn, ArtifactRow(ws.key, run_id, JOB_LOG, size, sha256, now)
                )

        return await self.runs.apply(workspace_key, run_id, decide, operation="job.finish", extra=record_log)

    # --- cancelling and stopping -----------------------------------------------------------

    def _on_cancel(self, workspace_key: str, run_id: str) -> None:
        job = self._local.get((workspace_key, run_id))
        if job is not None and not job.cancel:
            job.cancel = True
            self._kill_soon(job)

    def _kill_soon(self, job: _LocalJob, grace: float = KILL_GRACE_SECONDS) -> None:
        job.killers.append(asyncio.create_task(self._kill(job, grace), name=f"mlgrid-job-kill-{job.run_id}"))

    @staticmethod
    async def _kill(job: _LocalJob, grace: float) -> None:
        """SIGTERM to the job's process group, SIGKILL to what is left after ``grace``."""
        await job.process.stop(grace)

    async def _stop_workspace_jobs(self, workspace_key: str) -> None:
        """Before a workspace is deleted: kill its jobs on this node and let them finish."""
        jobs = [j for j in self._local.values() if j.workspace_key == workspace_key]
        await self._stop(jobs, cancel=True)

    async def _stop(self, jobs: list[_LocalJob], *, cancel: bool = False) -> None:
        for job in jobs:
            if cancel:
                job.cancel = True
            else:
                job.shutting_down = True
            self._kill_soon(job, SHUTDOWN_GRACE_SECONDS)
        waiters = [j.waiter for j in jobs if j.waiter is not None]
        if waiters:
            await asyncio.wait(waiters, timeout=SHUTDOWN_GRACE_SECONDS + 10)

    async def shutdown(self) -> None:
        """Server shutdown: kill this node's jobs and mark them Failed."""
        await self._stop(list(self._local.values()))
        for job in list(self._local.values()):
            for task in (job.waiter, *job.killers):
                if task is not None:
                    task.cancel()

    # --- orphans, heartbeats, remote cancellations -----------------------------------------

    def _node_is_dead(self, node: str | None) -> bool:
        if node is None:
            return True
        if node == self.node_id:
            return True  # an explicitly configured node id that restarted: its jobs died with it
        host, _, pid = node.rpartition(":")
        if host == socket.gethostname() and pid.isdigit():
            return int(pid) != os.getpid() and not _process_alive(int(pid))
        return False

    def _stale(self, row: RunRow, now: datetime) -> bool:
        beat = row.job_heartbeat_at or row.updated_at
        return now - beat > timedelta(seconds=STALE_AFTER_SECONDS)

    async def recover_orphans(self) -> int:
        """At start-up: mark Failed every unfinished job whose server is gone; returns how many."""
        now = self.core.clock()
        async with self.core.db.read() as conn:
            rows = await run_store.active_jobs(conn, sorted(lifecycle.TERMINAL))
            live = None if self.single_node else await lease_store.live_node_ids(conn)
        failed = 0
        for row in rows:
            if (row.workspace_key, row.id) in self._local:
                continue
            if (
                self.single_node
                or self._node_is_dead(row.job_node)
                or (live is not None and row.job_node not in live)
                or self._stale(row, now)
            ):
                await asyncio.to_thread(processes.kill_orphan, row.job_pid, "MLGRID_RUN_ID", row.id)
                failed += await self._fail_orphan(
                    row, "the server running this job stopped before it finished"
                )
        return failed

    async def _fail_orphan(self, row: RunRow, reason: str) -> int:
        log_path = self.core.files.job_log_path(row.workspace_key, row.id)
        try:
            view = await self._finish(row.workspace_key, row.id, log_path, row.job_exit_code, error=reason)
        except MlgridError:
            return 0  # deleted meanwhile, or already finished by another node
        log.warning(
            "job %s marked Failed: %s",
            row.id,
            reason,
            extra={"action": "job_orphaned", "run_id": row.id, "node": row.job_node},
        )
        return 1 if view.status == lifecycle.FAILED else 0

    async def sweep_stale_forever(self) -> None:
        """The job sweeper's duty (one node of a cluster holds its lease): fail the jobs whose
        node died or stopped sending heartbeats."""
        failures = QuietFailures(log, "job sweep", self.core.db.health)
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                await self._sweep_stale()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures.failed(exc, "job sweep failed", "job_supervision_failed")
            else:
                failures.succeeded()

    async def run(self) -> None:
        """Background task: cancellations from other nodes, heartbeats of this node's jobs."""
        loop = asyncio.get_running_loop()
        last_beat = loop.time()
        failures = QuietFailures(log, "job supervision", self.core.db.health)
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                await self._poll_cancellations()
                if self._local and loop.time() - last_beat >= HEARTBEAT_SECONDS:
                    last_beat = loop.time()
                    async with self.core.db.write() as conn:
                        await run_store.touch_jobs(conn, list(self._local), self.core.clock())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures.failed(exc, "job supervision failed", "job_supervision_failed")
            else:
                failures.succeeded()

    async def _poll_cancellations(self) -> None:
        if not self._local:
            return
        keys = list(self._local)
        async with self.core.db.read() as conn:
            statuses = await run_store.statuses_of(conn, keys)
        for key in keys:
            job = self._local.get(key)
            if job is None or job.cancel:
                continue
            status = statuses.get(key)
            # Cancelled through another node, finished by a sweeper that thought us dead, or
            # deleted with its workspace: the process has no run to report to any more.
            if status is None or status == lifecycle.CANCEL_REQUESTED or status in lifecycle.TERMINAL:
                job.cancel = True
                self._kill_soon(job)

    async def _sweep_stale(self) -> None:
        now = self.core.clock()
        async with self.core.db.read() as conn:
            rows = await run_store.active_jobs(conn, sorted(lifecycle.TERMINAL))
            live = None if self.single_node else await lease_store.live_node_ids(conn)
        for row in rows:
            if (row.workspace_key, row.id) in self._local:
                continue
            if live is not None and row.job_node is not None and row.job_node not in live:
                await self._fail_orphan(row, "the node running this job was declared dead")
            elif self._stale(row, now):
                await self._fail_orphan(row, "the node running this job stopped sending heartbeats")
