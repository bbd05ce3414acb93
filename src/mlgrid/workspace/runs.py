"""Experiments and runs: creation, the status machine, tags/properties, metrics, artifacts.

Every change of a run happens in one workspace transaction that locks the run row (``SELECT
... FOR UPDATE`` on PostgreSQL; SQLite has a single writer) and writes it back with a
compare-and-swap on its ``version``, so concurrent writers queue and none loses an update.
The events the change causes (``lifecycle.events_for_transition``) are emitted in the same
transaction, each with the run's new ``ETag`` and the run's next ``Sequencer``.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.broker.names import check_name
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.domain.records import ArtifactRow, MetricRow
from mlgrid.errors import Conflict, NotFound
from mlgrid.etags import new_etag
from mlgrid.events import ml
from mlgrid.events.jsoncodec import dumps, loads_exact
from mlgrid.store import runs as run_store
from mlgrid.store import workspaces as workspace_store
from mlgrid.store.runs import RunRow
from mlgrid.store.workspaces import ExperimentRow
from mlgrid.workspace import lifecycle
from mlgrid.workspace.files import stage_stream
from mlgrid.workspace.service import Workspace, WorkspaceService, WorkspaceTransaction, check_if_match
from mlgrid.workspace.validation import (
    MetricValue,
    RunChange,
    RunCreate,
    check_artifact_path,
    merge_tags,
)

MAX_ARTIFACT_BYTES = 2 * 1024**3
"""Largest artifact one PUT may upload (2 GiB)."""

RUN_SEQUENCER = "run"


def to_json_text(value: Any) -> str:
    return dumps(value).decode()


@dataclass(frozen=True)
class RunView:
    """A run with its experiment and parsed tags and properties."""

    row: RunRow
    experiment: ExperimentRow
    tags: dict[str, Any]
    properties: dict[str, str]

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def status(self) -> str:
        return self.row.status

    @classmethod
    def of(cls, row: RunRow, experiment: ExperimentRow) -> RunView:
        return cls(row, experiment, loads_exact(row.tags_json), loads_exact(row.properties_json))


@dataclass(frozen=True)
class RunUpdate:
    """What one change wants: a status, tags and properties to merge, an error message, and
    bookkeeping of a submitted job (``job``: column values; they do not change the etag)."""

    status: str | None = None
    tags: Mapping[str, Any] = field(default_factory=dict)
    properties: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None
    job: Mapping[str, Any] = field(default_factory=dict)


Decide = Callable[[RunView], RunUpdate]
Extra = Callable[[WorkspaceTransaction, Workspace, RunRow], Awaitable[None]]
CancelListener = Callable[[str, str], None]


class RunService:
    def __init__(self, core: WorkspaceService) -> None:
        self.core = core
        self.cancel_listeners: list[CancelListener] = []
        """Called after a commit that requested cancellation of a submitted job."""

    # --- reading ---------------------------------------------------------------------------

    async def _experiment(self, conn: Any, experiment_id: str) -> ExperimentRow:
        found = await workspace_store.get_experiments_by_id(conn, [experiment_id])
        return found[experiment_id]

    async def get(self, workspace_name: str, run_id: str) -> RunView:
        async with self.core.db.read() as conn:
            ws = await self.core.get_in(conn, workspace_name)
            row = await run_store.get_run(conn, ws.key, run_id)
            if row is None:
                raise _run_not_found(run_id, ws.name)
            return RunView.of(row, await self._experiment(conn, row.experiment_id))

    async def list_runs(
        self,
        workspace_name: str,
        *,
        experiment: str | None = None,
        statuses: Sequence[str] = (),
        run_type: str | None = None,
        offset: int = 0,
        before: tuple[float, str] | None = None,
        limit: int = 100,
    ) -> list[RunView]:
        async with self.core.db.read() as conn:
            ws = await self.core.get_in(conn, workspace_name)
            experiment_id: str | None = None
            if experiment is not None:
                found = await workspace_store.get_experiment(conn, ws.key, experiment)
                if found is None:
                    return []
                experiment_id = found.id
            rows = await run_store.list_runs(
                conn,
                ws.key,
                experiment_id=experiment_id,
                statuses=statuses,
                run_type=run_type,
                offset=offset,
                before=before,
                limit=limit,
            )
            experiments = await workspace_store.get_experiments_by_id(conn, [r.experiment_id for r in rows])
        return [RunView.of(r, experiments[r.experiment_id]) for r in rows]

    async def experiments(self, workspace_name: str) -> list[ExperimentRow]:
        async with self.core.db.read() as conn:
            ws = await self.core.get_in(conn, workspace_name)
            return await workspace_store.list_experiments(conn, ws.key)

    # --- creating and changing -------------------------------------------------------------

    async def start(
        self,
        workspace_name: str,
        experiment_name: str,
        spec: RunCreate,
        job: Mapping[str, Any] | None = None,
        *,
        extra: Extra | None = None,
    ) -> RunView:
        """Create a run (and its experiment on first use). Creation emits no event. ``extra``
        runs in the same transaction (e.g. recording a job's code snapshot)."""
        check_name(experiment_name, "experimentName")
        now = self.core.clock()
        async with self.core.transaction("run.create") as tx:
            ws = await self.core.get_in(tx.conn, workspace_name)
            experiment = await workspace_store.ensure_experiment(
                tx.conn, ws.key, experiment_name, str(uuid.uuid4()), now
            )
            run_id = f"{experiment.name}_{int(now.timestamp())}_{secrets.token_hex(4)}"
            row = RunRow(
                workspace_key=ws.key,
                id=run_id,
                experiment_id=experiment.id,
                status=spec.status,
                run_type=spec.run_type,
                tags_json=to_json_text(spec.tags),
                properties_json=to_json_text(spec.properties),
                error=None,
                etag=new_etag(),
                version=1,
                created_at=now,
                updated_at=now,
                start_time=now if spec.status == lifecycle.RUNNING else None,
                end_time=None,
                **dict(job or {}),
            )
            await run_store.insert_run(tx.conn, row)
            if extra is not None:
                await extra(tx, ws, row)
        return RunView.of(row, experiment)

    async def update(
        self, workspace_name: str, run_id: str, change: RunChange, *, if_match: str | None = None
    ) -> RunView:
        """A client's ``PATCH``: status, tags and properties merge, error message.

        The server owns the status of a submitted job: a client may only cancel it
        (``CancelRequested``, or ``Canceled`` which is taken as a request), and the job runner
        sets ``Canceled`` once the process has stopped.
        """
        cancel_requested = False

        def decide(current: RunView) -> RunUpdate:
            nonlocal cancel_requested
            status = change.status
            if current.row.is_job and status is not None and status != current.status:
                if status not in (lifecycle.CANCEL_REQUESTED, lifecycle.CANCELED):
                    raise Conflict(
                        f"run {current.id!r} is a submitted job: its status follows its process; "
                        f"set {lifecycle.CANCEL_REQUESTED} to cancel it",
                        code=ErrorCode.JOB_STATUS_MANAGED_BY_SERVER,
                    )
                if current.status == lifecycle.CANCEL_REQUESTED:
                    status = None
                elif current.status not in lifecycle.TERMINAL:
                    status = lifecycle.CANCEL_REQUESTED
                    cancel_requested = True
            return RunUpdate(
                status=status, tags=change.tags, properties=change.properties, error=change.error
            )

        view = await self.apply(workspace_name, run_id, decide, if_match=if_match, operation="run.update")
        if cancel_requested:
            for listener in self.cancel_listeners:
                listener(view.row.workspace_key, view.id)
        return view

    async def apply(
        self,
        workspace_name: str,
        run_id: str,
        decide: Decide,
        *,
        if_match: str | None = None,
        operation: str = "run.update",
        extra: Extra | None = None,
    ) -> RunView:
        """Change one run in one transaction: lock, decide, validate, write, emit.

        ``decide`` sees the current run and returns the wanted change (or raises); ``extra``
        runs in the same transaction after the write (e.g. recording a job's log artifact).
        """
        now = self.core.clock()
        async with self.core.transaction(operation) as tx:
            ws = await self.core.get_in(tx.conn, workspace_name)
            row = await run_store.get_run(tx.conn, ws.key, run_id, for_update=True)
            if row is None:
                raise _run_not_found(run_id, ws.name)
            check_if_match(if_match, row.etag, f"run {run_id!r}")
            current = RunView.of(row, await self._experiment(tx.conn, row.experiment_id))
            update = decide(current)
            status_changed = update.status is not None and lifecycle.check_transition(
                row.id, row.status, update.status
            )
            tags = merge_tags(current.tags, update.tags)
            properties = {**current.properties, **update.properties}
            error = update.error if update.error is not None else row.error
            changed = (
                status_changed
                or tags != current.tags
                or properties != current.properties
                or error != row.error
            )
            new_row = replace(row, **dict(update.job))
            if changed:
                status = update.status if status_changed and update.status is not None else row.status
                start_time = row.start_time
                if start_time is None and status not in (
                    lifecycle.NOT_STARTED,
                    lifecycle.QUEUED,
                    lifecycle.PREPARING,
                    lifecycle.CANCEL_REQUESTED,
                ):
                    start_time = now
                new_row = replace(
                    new_row,
                    status=status,
                    tags_json=to_json_text(tags),
                    properties_json=to_json_text(properties),
                    error=error,
                    etag=new_etag(),
                    version=row.version + 1,
                    updated_at=now,
                    start_time=start_time,
                    end_time=now if status in lifecycle.TERMINAL and status_changed else row.end_time,
                )
            if new_row != row and not await run_store.update_run(tx.conn, new_row, row.version):
                raise Conflict(
                    f"run {run_id!r} changed concurrently; retry", code=ErrorCode.CONCURRENT_UPDATE
                )
            view = RunView.of(new_row, current.experiment)
            if status_changed:
                for event_type in lifecycle.events_for_transition(
                    new_row.status, ws.run_status_changed_events
                ):
                    await tx.emit(ws, await self._event(tx, ws, view, event_type))
            if extra is not None:
                await extra(tx, ws, new_row)
        return view

    async def _event(
        self, tx: WorkspaceTransaction, ws: Workspace, view: RunView, event_type: str
    ) -> dict[str, Any]:
        seq = await tx.sequencer(ws, RUN_SEQUENCER, view.id)
        common: dict[str, Any] = {
            "topic_id": ws.resource_id,
            "experiment_id": view.experiment.id,
            "experiment_name": view.experiment.name,
            "run_id": view.id,
            "run_type": view.row.run_type,
            "run_tags": view.tags,
            "run_properties": view.properties,
            "etag": view.row.etag,
            "sequencer": seq,
            "event_time": view.row.updated_at,
        }
        if event_type == ml.RUN_COMPLETED:
            return ml.run_completed(**common)
        return ml.run_status_changed(**common, run_status=view.row.status)

    # --- metrics ---------------------------------------------------------------------------

    async def log_metrics(
        self, workspace_name: str, run_id: str, metrics: Sequence[MetricValue]
    ) -> list[MetricRow]:
        now = self.core.clock()
        rows = [MetricRow(m.name, m.step, str(m.value), m.time or now) for m in metrics]
        async with self.core.transaction("run.metrics") as tx:
            ws = await self.core.get_in(tx.conn, workspace_name)
            if await run_store.get_run(tx.conn, ws.key, run_id) is None:
                raise _run_not_found(run_id, ws.name)
            await run_store.insert_metrics(tx.conn, ws.key, run_id, rows)
        return rows

    async def metrics(self, workspace_name: str, run_id: str, name: str | None = None) -> list[MetricRow]:
        async with self.core.db.read() as conn:
            ws = await self.core.get_in(conn, workspace_name)
            if await run_store.get_run(conn, ws.key, run_id) is None:
                raise _run_not_found(run_id, ws.name)
            return await run_store.list_metrics(conn, ws.key, run_id, name)

    # --- artifacts -------------------------------------------------------------------------

    async def put_artifact(
        self,
        workspace_name: str,
        run_id: str,
        path: str,
        chunks: AsyncIterator[bytes],
        *,
        limit: int = MAX_ARTIFACT_BYTES,
    ) -> ArtifactRow:
        """Store raw bytes as an artifact of the run (created or replaced)."""
        path = check_artifact_path(path)
        await self.get(workspace_name, run_id)  # 404 before reading the body
        ws = await self.core.get(workspace_name)
        staged = await stage_stream(chunks, self.core.files.staging_path(ws.key), limit, f"artifact {path!r}")
        try:
            async with self.core.transaction("run.artifact") as tx:
                ws = await self.core.get_in(tx.conn, workspace_name)
                if await run_store.get_run(tx.conn, ws.key, run_id) is None:
                    raise _run_not_found(run_id, ws.name)
                await _check_no_path_conflict(tx.conn, ws.key, run_id, path)
                row = ArtifactRow(ws.key, run_id, path, staged.size, staged.sha256, self.core.clock())
                await run_store.upsert_artifact(tx.conn, row)
                await tx.place(
                    staged.path, self.core.files.artifact_name(ws.key, run_id, path), f"artifact {path!r}"
                )
        finally:
            staged.path.unlink(missing_ok=True)
        return row

    async def artifact(self, workspace_name: str, run_id: str, path: str) -> tuple[ArtifactRow, str]:
        """The artifact's row and the name of its blob (``core.files.blobs``)."""
        path = check_artifact_path(path)
        async with self.core.db.read() as conn:
            ws = await self.core.get_in(conn, workspace_name)
            if await run_store.get_run(conn, ws.key, run_id) is None:
                raise _run_not_found(run_id, ws.name)
            row = await run_store.get_artifact(conn, ws.key, run_id, path)
        if row is None:
            raise NotFound(f"run {run_id!r} has no artifact {path!r}", code=ErrorCode.ARTIFACT_NOT_FOUND)
        name = self.core.files.artifact_name(ws.key, run_id, path)
        if await self.core.files.blobs.stat(name) is None:
            raise NotFound(
                f"the file of artifact {path!r} is missing from the blob store",
                code=ErrorCode.ARTIFACT_FILE_MISSING,
            )
        return row, name

    async def artifacts(
        self, workspace_name: str, run_id: str, prefix: str | None = None
    ) -> list[ArtifactRow]:
        async with self.core.db.read() as conn:
            ws = await self.core.get_in(conn, workspace_name)
            if await run_store.get_run(conn, ws.key, run_id) is None:
                raise _run_not_found(run_id, ws.name)
            return await run_store.list_artifacts(conn, ws.key, run_id, prefix)


async def _check_no_path_conflict(conn: AsyncConnection, workspace_key: str, run_id: str, path: str) -> None:
    """409 when ``path`` is a "directory" of other artifacts (``a`` beside ``a/b``) or lies
    inside another artifact: a file system cannot hold both, so no backend may (a flat blob
    store could, and the data would then not move to a local directory)."""
    if await run_store.list_artifacts(conn, workspace_key, run_id, path + "/"):
        raise Conflict(f"artifact {path!r} is a directory of other artifacts", code=ErrorCode.PATH_CONFLICT)
    parts = path.split("/")
    for end in range(1, len(parts)):
        parent = "/".join(parts[:end])
        if await run_store.get_artifact(conn, workspace_key, run_id, parent) is not None:
            raise Conflict(
                f"artifact {path!r} collides with the artifact {parent!r}", code=ErrorCode.PATH_CONFLICT
            )


def _run_not_found(run_id: str, workspace: str) -> NotFound:
    return NotFound(f"run {run_id!r} does not exist in workspace {workspace!r}", code=ErrorCode.RUN_NOT_FOUND)
