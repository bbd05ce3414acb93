"""Workspaces, and the transaction every workspace change goes through.

``WorkspaceService`` is the shared core the other workspace services (runs, jobs, models,
datasets — and deployments and drift monitors) are built on:

* ``get``/``find``/``get_in`` look a workspace up (404 when missing), ``scope`` is its RBAC
  scope for ``AccessService.require``;
* ``transaction(operation)`` opens one write transaction as a ``WorkspaceTransaction``: the
  change, its events (``tx.emit``, which stores the events and their deliveries through the
  broker's ``Ingestor.emit``) and its counters (``tx.sequencer``) commit together or not at
  all; the dispatcher is woken only after the commit, and files staged for the change are
  stored in the blob store inside it and removed again if it rolls back;
* ``new_etag`` and ``check_if_match`` implement the ETag rules of SPEC §9.

``before_commit`` is a hook for tests: awaited with the operation name at the end of every
transaction, just before the commit, so a test can inject a failure there and prove that
neither the change nor its event survives.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.blobs import BlobConflict
from mlgrid.broker.access import Scope
from mlgrid.broker.ingest import Ingestor, PublishBatch
from mlgrid.broker.names import check_name, check_resource_group, workspace_resource_id
from mlgrid.broker.topics import TopicService
from mlgrid.domain.deliveries import CommittedDelivery
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.domain.schemas import EventSchema
from mlgrid.errors import AlreadyExists, Conflict, NotFound, PreconditionFailed, invalid
from mlgrid.etags import new_etag, require_match
from mlgrid.events.ml import sequencer
from mlgrid.store import events as event_store
from mlgrid.store import principals as principal_store
from mlgrid.store import subscriptions as subscription_store
from mlgrid.store import topics as topic_store
from mlgrid.store import workspaces as workspace_store
from mlgrid.store.database import Database
from mlgrid.store.workspaces import WorkspaceRow
from mlgrid.tracing import Tracing
from mlgrid.workspace.files import WorkspaceFiles, staged_files
from mlgrid.workspace.validation import parse_workspace_body

log = logging.getLogger("mlgrid.workspace")

Clock = Callable[[], datetime]
BeforeCommit = Callable[[str], Awaitable[None]]
WorkspaceHook = Callable[[str], Awaitable[None]]

DEFAULT_RESOURCE_GROUP = "default"
DEFAULT_RUN_STATUS_CHANGED_EVENTS = "failed"


@dataclass(frozen=True)
class Workspace:
    """A workspace as the services see it: its row and the ``topic`` id of its events."""

    row: WorkspaceRow
    resource_id: str

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def key(self) -> str:
        return self.row.key

    @property
    def etag(self) -> str:
        return self.row.etag

    @property
    def run_status_changed_events(self) -> str:
        return self.row.run_status_changed_events


def check_if_match(if_match: str | None, etag: str, what: str) -> None:
    """412 when an ``If-Match`` value does not name ``etag`` (the rule is ``etags.py``'s)."""
    require_match(if_match, etag, f"If-Match does not match the current etag of {what}")


class WorkspaceTransaction:
    """One write transaction of the workspace (see the module docstring)."""

    def __init__(self, conn: AsyncConnection, service: WorkspaceService, operation: str) -> None:
        self.conn = conn
        self.operation = operation
        self._service = service
        self.deliveries: list[CommittedDelivery] = []
        self.events: list[dict[str, Any]] = []
        self._undo: list[tuple[str, str | None]] = []
        self._after_commit: list[Callable[[], object]] = []

    async def emit(self, workspace: Workspace, *events: dict[str, Any]) -> None:
        """Store the events on the workspace's system topic, in this transaction."""
        if not events:
            return
        result = await self._service.ingestor.emit(
            self.conn,
            PublishBatch(topic_key=workspace.key, schema=EventSchema.EVENT_GRID, events=list(events),
                         traceparent=self._service.tracing.current_traceparent()),
        )
        self.deliveries.extend(result.deliveries)
        self.events.extend(events)

    async def sequencer(self, workspace: Workspace, kind: str, object_key: str) -> str:
        """The next ``data.Sequencer`` of one object (``kind`` ``run``, ``model``, ``endpoint``,
        ``datadrift``; ``object_key`` its id or lower-cased name): one value per event."""
        return sequencer(await workspace_store.next_counter(self.conn, workspace.key, kind, object_key))

    async def counter(self, workspace: Workspace, kind: str, object_key: str) -> int:
        """The next value of a plain per-object counter (e.g. model and dataset versions)."""
        return await workspace_store.next_counter(self.conn, workspace.key, kind, object_key)

    async def place(self, staged: Path, name: str, what: str) -> None:
        """Store a staged file (or every file of a staged directory, under ``name/``) as the
        blob ``name``, as part of this change; the staged files are used up.

        If the transaction rolls back, the new blobs are deleted and whatever a blob held
        before (an overwritten artifact, kept aside under ``.previous/``) is put back; after
        the commit the old copy is deleted. A name that collides with a "directory" of other
        blobs (artifact ``a`` and ``a/b`` on the local backend) is a 409.
        """
        blobs = self._service.files.blobs
        for relative, path in await asyncio.to_thread(staged_files, staged):
            target = f"{name}/{relative}" if relative else name
            backup: str | None = None
            if await blobs.stat(target) is not None:
                backup = f".previous/{uuid.uuid4().hex}"
                await blobs.move(target, backup)
            try:
                await blobs.put_file(target, path, move=True)
            except BlobConflict as exc:
                if backup is not None:
                    await blobs.move(backup, target)
                raise Conflict(
                    f"{what} collides with an existing file or directory", code=ErrorCode.PATH_CONFLICT
                ) from exc
            except BaseException:
                if backup is not None:
                    await blobs.move(backup, target)
                raise
            self._undo.append((target, backup))
            if backup is not None:
                self._after_commit.append(functools.partial(blobs.delete, backup))

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` after the commit (awaited if it returns an awaitable)."""
        self._after_commit.append(callback)

    async def _rolled_back(self) -> None:
        blobs = self._service.files.blobs
        for target, backup in reversed(self._undo):
            try:
                await blobs.delete(target)
                if backup is not None:
                    await blobs.move(backup, target)
            except Exception:
                log.exception(
                    "could not undo blob %s of a rolled-back change",
                    target,
                    extra={"action": "blob_undo_failed"},
                )

    async def _committed(self) -> None:
        self._service.ingestor.notify(self.deliveries)
        for callback in self._after_commit:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await result
            except Exception:  # the change is committed; a follow-up failing must not undo it
                log.exception("after-commit callback failed", extra={"action": "after_commit_failed"})


class WorkspaceService:
    def __init__(
        self,
        db: Database,
        topics: TopicService,
        ingestor: Ingestor,
        files: WorkspaceFiles,
        *,
        subscription_id: str,
        clock: Clock = lambda: datetime.now(UTC),
        topic_deleted: Callable[[str], None] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.db = db
        self.tracing = tracing or Tracing.disabled()
        self.topics = topics
        self.ingestor = ingestor
        self.files = files
        self.subscription_id = subscription_id
        self.clock = clock
        self._topic_deleted = topic_deleted
        self.before_commit: BeforeCommit | None = None
        self.before_delete: list[WorkspaceHook] = []
        """Awaited with the workspace key before a workspace is deleted (stop its jobs, endpoints)."""

    # --- lookups and helpers -------------------------------------------------------------

    def _workspace(self, row: WorkspaceRow) -> Workspace:
        return Workspace(row, workspace_resource_id(self.subscription_id, row.resource_group, row.name))

    @staticmethod
    def scope(name: str) -> Scope:
        return Scope("workspace", name)

    async def find(self, name: str) -> Workspace | None:
        async with self.db.read() as conn:
            row = await workspace_store.get(conn, name)
        return None if row is None else self._workspace(row)

    async def get(self, name: str) -> Workspace:
        found = await self.find(name)
        if found is None:
            raise NotFound(f"workspace {name!r} does not exist", code=ErrorCode.WORKSPACE_NOT_FOUND)
        return found

    async def get_in(self, conn: AsyncConnection, name: str, *, for_update: bool = False) -> Workspace:
        """The workspace, read inside the caller's transaction."""
        row = await workspace_store.get(conn, name, for_update=for_update)
        if row is None:
            raise NotFound(f"workspace {name!r} does not exist", code=ErrorCode.WORKSPACE_NOT_FOUND)
        return self._workspace(row)

    async def list_workspaces(self) -> list[Workspace]:
        async with self.db.read() as conn:
            rows = await workspace_store.list_all(conn)
        return [self._workspace(r) for r in rows]

    @asynccontextmanager
    async def transaction(self, operation: str) -> AsyncIterator[WorkspaceTransaction]:
        """One workspace change (and the events it emits), in one transaction and one span."""
        tx: WorkspaceTransaction | None = None
        with self.tracing.span(f"workspace {operation}", attributes={"mlgrid.operation": operation}):
            try:
                async with self.db.write() as conn:
                    tx = WorkspaceTransaction(conn, self, operation)
                    yield tx
                    if self.before_commit is not None:
                        await self.before_commit(operation)
            except BaseException:
                if tx is not None:
                    await tx._rolled_back()
                raise
            await tx._committed()

    # --- workspace CRUD ------------------------------------------------------------------

    async def put(self, name: str, body: object, *, if_match: str | None = None) -> tuple[Workspace, bool]:
        """Create the workspace with its system topic (one transaction), or update its settings.

        Returns ``(workspace, created)``. The resource group is fixed at creation (it is part
        of the ``topic`` id every event carries).
        """
        check_name(name, "workspaceName")
        resource_group, mode = parse_workspace_body(body)
        if resource_group is not None:
            check_resource_group(resource_group)
        now = self.clock()
        async with self.transaction("workspace.put") as tx:
            existing = await workspace_store.get(tx.conn, name, for_update=True)
            if existing is None:
                if if_match is not None:
                    raise PreconditionFailed(f"workspace {name!r} does not exist (If-Match was given)")
                row = WorkspaceRow(
                    name=name,
                    resource_group=resource_group or DEFAULT_RESOURCE_GROUP,
                    run_status_changed_events=mode or DEFAULT_RUN_STATUS_CHANGED_EVENTS,
                    etag=new_etag(),
                    created_at=now,
                    updated_at=now,
                )
                await workspace_store.insert(tx.conn, row)
                try:
                    await self.topics.create_system_topic(tx.conn, name, row.resource_group)
                except AlreadyExists as exc:
                    raise AlreadyExists(
                        f"a topic named {name!r} already exists; workspaces and topics share one namespace",
                        code=ErrorCode.TOPIC_NAME_IN_USE,
                    ) from exc
                return self._workspace(row), True
            check_if_match(if_match, existing.etag, f"workspace {existing.name!r}")
            if resource_group is not None and resource_group != existing.resource_group:
                raise invalid(
                    "properties.resourceGroup",
                    f"cannot change from {existing.resource_group!r}: it is part of the events' topic id",
                )
            new_mode = mode or existing.run_status_changed_events
            row = existing
            if new_mode != existing.run_status_changed_events:
                row = replace(existing, run_status_changed_events=new_mode, etag=new_etag(), updated_at=now)
                await workspace_store.update(tx.conn, row)
            return self._workspace(row), False

    async def delete(self, name: str, *, if_match: str | None = None) -> None:
        """Delete the workspace, its system topic (with subscriptions and events), its role
        assignments, all its rows and, after the commit, its files."""
        found = await self.get(name)
        check_if_match(if_match, found.etag, f"workspace {found.name!r}")
        for hook in self.before_delete:
            await hook(found.key)
        async with self.transaction("workspace.delete") as tx:
            row = await workspace_store.get(tx.conn, name, for_update=True)
            if row is None:
                raise NotFound(f"workspace {name!r} does not exist", code=ErrorCode.WORKSPACE_NOT_FOUND)
            check_if_match(if_match, row.etag, f"workspace {row.name!r}")
            topic = await topic_store.get(tx.conn, name, "system")
            if topic is not None:
                await subscription_store.delete_for_topic(tx.conn, topic.key)
                await event_store.delete_topic_events(tx.conn, topic.key)
                await topic_store.delete_topic(tx.conn, topic.name)
            await principal_store.delete_scope(tx.conn, "workspace", row.name)
            await workspace_store.delete_workspace(tx.conn, row.name)
            key = row.key
            tx.after_commit(lambda: self.files.remove_workspace(key))
            if self._topic_deleted is not None:
                topic_deleted = self._topic_deleted
                tx.after_commit(lambda: topic_deleted(key))
