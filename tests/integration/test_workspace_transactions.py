"""Workspace changes and their events commit together (SPEC §2.2, §11.2), on both databases.

The services are built in-process on a real database with the migrations applied. A failure
injected through ``WorkspaceService.before_commit`` — after the change and its event were
written, just before the commit — must leave neither the change, nor the event, nor its
delivery rows, nor files. Concurrent writers to one run must never lose an update.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlgrid.auth.secretbox import SecretBox, load_or_create_key
from mlgrid.broker.ingest import Ingestor
from mlgrid.broker.routing import Router
from mlgrid.broker.topics import TopicService
from mlgrid.config import Settings
from mlgrid.domain.event_filter import EventFilter
from mlgrid.errors import NotFound
from mlgrid.events.ml import MODEL_REGISTERED, RUN_COMPLETED, RUN_STATUS_CHANGED
from mlgrid.metrics import Metrics
from mlgrid.store import deliveries as delivery_store
from mlgrid.store import events as event_store
from mlgrid.store import migrate
from mlgrid.store import topics as topic_store
from mlgrid.store.database import Database
from mlgrid.workspace.files import WorkspaceFiles
from mlgrid.workspace.models import ModelService, UploadPart
from mlgrid.workspace.runs import RunService
from mlgrid.workspace.service import WorkspaceService
from mlgrid.workspace.validation import ModelMetadata, RunChange, RunCreate


class InjectedFailure(Exception):
    pass


@dataclass
class Stack:
    db: Database
    core: WorkspaceService
    runs: RunService
    models: ModelService
    router: Router
    data_dir: Path
    subscription_id: str = ""

    async def events(self, workspace: str) -> list[event_store.StoredEvent]:
        async with self.db.read() as conn:
            return await event_store.list_page(
                conn, workspace.lower(), since=None, until=None, event_type=None, limit=1000
            )

    async def pending_deliveries(self) -> int:
        async with self.db.read() as conn:
            return await delivery_store.count_pending(conn, self.subscription_id)

    def fail_next_commit(self, operation: str) -> None:
        async def hook(name: str) -> None:
            if name == operation:
                raise InjectedFailure(name)

        self.core.before_commit = hook

    def subscribe_all(self, workspace: str) -> None:
        """A catch-all subscription in the router, so emitted events create delivery rows."""
        self.subscription_id = str(uuid.uuid4())
        self.router.upsert(
            workspace.lower(), self.subscription_id, "catch-all", EventFilter(), "EventGridSchema"
        )


@pytest.fixture
async def stack(database_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    db = Database.connect(database_url)
    await migrate.upgrade(db)
    box = SecretBox(load_or_create_key(tmp_path / "secret.key"))
    subscription_id = str(uuid.uuid4())
    topics = TopicService(db, Settings(data_dir=tmp_path), box, subscription_id)
    router = Router()
    ingestor = Ingestor(db, router, Metrics())
    files = WorkspaceFiles.local(tmp_path)
    core = WorkspaceService(db, topics, ingestor, files, subscription_id=subscription_id)
    runs = RunService(core)
    try:
        yield Stack(db, core, runs, ModelService(core, runs), router, tmp_path)
    finally:
        await db.close()


def _name() -> str:
    return "tx" + uuid.uuid4().hex[:10]


async def test_a_failed_commit_leaves_no_run_completion_and_no_event(stack: Stack) -> None:
    ws = _name()
    await stack.core.put(ws, None)
    stack.subscribe_all(ws)
    run = await stack.runs.start(ws, "train", RunCreate(tags={"a": 1}))

    stack.fail_next_commit("run.update")
    with pytest.raises(InjectedFailure):
        await stack.runs.update(ws, run.id, RunChange(status="Completed", tags={"b": "2"}))

    after = await stack.runs.get(ws, run.id)
    assert (after.status, after.tags, after.row.etag) == ("Running", {"a": 1}, run.row.etag)
    assert await stack.events(ws) == []
    assert await stack.pending_deliveries() == 0

    stack.core.before_commit = None
    done = await stack.runs.update(ws, run.id, RunChange(status="Completed"))
    events = await stack.events(ws)
    assert [e.event_type for e in events] == [RUN_COMPLETED]
    assert await stack.pending_deliveries() == 1
    assert done.status == "Completed"


async def test_a_failed_commit_leaves_no_failed_run_and_no_status_event(stack: Stack) -> None:
    ws = _name()
    await stack.core.put(ws, None)
    run = await stack.runs.start(ws, "train", RunCreate())
    stack.fail_next_commit("run.update")
    with pytest.raises(InjectedFailure):
        await stack.runs.update(ws, run.id, RunChange(status="Failed", error="boom"))
    after = await stack.runs.get(ws, run.id)
    assert (after.status, after.row.error) == ("Running", None)
    assert await stack.events(ws) == []

    stack.core.before_commit = None
    await stack.runs.update(ws, run.id, RunChange(status="Failed", error="boom"))
    assert [e.event_type for e in await stack.events(ws)] == [RUN_STATUS_CHANGED]


async def test_a_failed_commit_leaves_no_model_version_no_event_and_no_files(stack: Stack) -> None:
    ws = _name()
    await stack.core.put(ws, None)
    stack.subscribe_all(ws)
    metadata = ModelMetadata(tags={"k": "v"}, properties={}, description="")

    stack.fail_next_commit("model.register")
    with pytest.raises(InjectedFailure):
        await stack.models.register_upload(
            ws, "model-a", [UploadPart("model.pkl", io.BytesIO(b"x"))], metadata
        )
    assert await stack.models.list_models(ws) == []
    assert await stack.events(ws) == []
    assert await stack.pending_deliveries() == 0
    assert [blob async for blob in stack.core.files.blobs.list(f"{ws.lower()}/models/")] == []

    # The failed attempt consumed no version number: the first real registration is 1.
    stack.core.before_commit = None
    view = await stack.models.register_upload(
        ws, "model-a", [UploadPart("model.pkl", io.BytesIO(b"x"))], metadata
    )
    assert view.version == 1
    assert [e.event_type for e in await stack.events(ws)] == [MODEL_REGISTERED]
    blob = stack.models.blob_name(view)
    assert b"".join([chunk async for chunk in stack.core.files.blobs.open(blob)]) == b"x"
    assert (stack.data_dir / "workspaces" / blob).read_bytes() == b"x"  # the local layout


async def test_a_failed_commit_creates_no_workspace_and_no_system_topic(stack: Stack) -> None:
    ws = _name()
    stack.fail_next_commit("workspace.put")
    with pytest.raises(InjectedFailure):
        await stack.core.put(ws, {"properties": {"runStatusChangedEvents": "all"}})
    with pytest.raises(NotFound):
        await stack.core.get(ws)
    async with stack.db.read() as conn:
        assert await topic_store.get(conn, ws) is None

    stack.core.before_commit = None
    created, is_new = await stack.core.put(ws, {"properties": {"runStatusChangedEvents": "all"}})
    assert is_new and created.run_status_changed_events == "all"
    async with stack.db.read() as conn:
        topic = await topic_store.get(conn, ws, "system")
    assert topic is not None and topic.kind == "system"


async def test_concurrent_tag_writers_never_lose_an_update(stack: Stack) -> None:
    ws = _name()
    await stack.core.put(ws, None)
    run = await stack.runs.start(ws, "train", RunCreate())
    writers = 24

    async def write(index: int) -> None:
        await stack.runs.update(ws, run.id, RunChange(tags={f"k{index}": index}))

    await asyncio.gather(*(write(i) for i in range(writers)))
    after = await stack.runs.get(ws, run.id)
    assert after.tags == {f"k{i}": i for i in range(writers)}
    assert after.row.version == 1 + writers


async def test_a_failed_commit_of_a_replaced_artifact_puts_the_old_file_back(stack: Stack) -> None:
    ws = _name()
    await stack.core.put(ws, None)
    run = await stack.runs.start(ws, "train", RunCreate())

    async def body(data: bytes) -> AsyncIterator[bytes]:
        yield data

    first = await stack.runs.put_artifact(ws, run.id, "out/model.txt", body(b"first"))
    stack.fail_next_commit("run.artifact")
    with pytest.raises(InjectedFailure):
        await stack.runs.put_artifact(ws, run.id, "out/model.txt", body(b"second"))
    row, blob = await stack.runs.artifact(ws, run.id, "out/model.txt")
    assert row.sha256 == first.sha256
    assert b"".join([chunk async for chunk in stack.core.files.blobs.open(blob)]) == b"first"
    # Nothing is left aside: the only blobs of the workspace are its artifact.
    assert [b.name async for b in stack.core.files.blobs.list(f"{ws.lower()}/")] == [blob]
    assert [b.name async for b in stack.core.files.blobs.list(".previous/")] == []

    stack.core.before_commit = None
    await stack.runs.put_artifact(ws, run.id, "out/model.txt", body(b"second"))
    assert b"".join([chunk async for chunk in stack.core.files.blobs.open(blob)]) == b"second"
    assert [b.name async for b in stack.core.files.blobs.list(".previous/")] == []
