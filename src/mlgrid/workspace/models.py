"""The model registry: register a file or directory (uploaded, or a run's artifact) under a
name; versions count 1, 2, 3... per name; each registration emits ModelRegistered.

Registered files are copies (never links to run artifacts), written to the staging area first
and stored as the blobs ``<workspace>/models/<name>/<version>/...`` in the transaction that
inserts the version and its event. The version number and the event's Sequencer both come
from per-name counters, so concurrent registrations of one name get distinct versions whose
events sort in order.
"""

from __future__ import annotations

import asyncio
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mlgrid.blobs import BlobNotFound
from mlgrid.broker.names import check_name
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.domain.records import ArtifactRow
from mlgrid.errors import NotFound, invalid
from mlgrid.etags import new_etag
from mlgrid.events import ml
from mlgrid.events.jsoncodec import loads_exact
from mlgrid.store import models as model_store
from mlgrid.store.models import ModelRow
from mlgrid.workspace.files import discard, hash_file, stage_file
from mlgrid.workspace.runs import RunService, to_json_text
from mlgrid.workspace.service import Workspace, WorkspaceService
from mlgrid.workspace.validation import ModelMetadata, check_artifact_path

MODEL_VERSION_COUNTER = "model-version"
MODEL_SEQUENCER = "model"
MAX_MODEL_FILE_BYTES = 4 * 1024**3
MAX_MODEL_FILES = 1000


@dataclass(frozen=True)
class UploadPart:
    """One uploaded file: its name as sent (a relative path for directory uploads) and data."""

    filename: str
    file: BinaryIO


@dataclass(frozen=True)
class ModelView:
    row: ModelRow
    tags: dict[str, Any]
    properties: dict[str, Any]
    files: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def version(self) -> int:
        return self.row.version

    @property
    def model_id(self) -> str:
        """``name:version``, the form ModelDeployed's ``ModelIds`` lists."""
        return f"{self.row.name}:{self.row.version}"

    @classmethod
    def of(cls, row: ModelRow) -> ModelView:
        return cls(
            row, loads_exact(row.tags_json), loads_exact(row.properties_json), loads_exact(row.files_json)
        )


def parse_version(value: str | int, field_name: str = "version") -> int:
    text = str(value)
    if not text.isdigit() or int(text) < 1 or len(text) > 9:
        raise invalid(field_name, f"{text!r} is not a model version (1, 2, 3...)")
    return int(text)


class ModelService:
    def __init__(self, core: WorkspaceService, runs: RunService) -> None:
        self.core = core
        self.runs = runs

    # --- reading ---------------------------------------------------------------------------

    async def get(self, workspace_name: str, name: str, version: str | int) -> ModelView:
        number = parse_version(version)
        async with self.core.db.read() as conn:
            ws = await self.core.get_in(conn, workspace_name)
            row = await model_store.get(conn, ws.key, name, number)
        if row is None:
            raise NotFound(
                f"model {name}:{number} does not exist in workspace {ws.name!r}",
                code=ErrorCode.MODEL_NOT_FOUND,
            )
        return ModelView.of(row)

    async def list_models(self, workspace_name: str, name: str | None = None) -> list[ModelView]:
        async with self.core.db.read() as conn:
            ws = await self.core.get_in(conn, workspace_name)
            rows = await model_store.list_models(conn, ws.key, name)
        return [ModelView.of(r) for r in rows]

    def file_blobs(self, model: ModelView) -> list[tuple[str, str]]:
        """``(path in the model, blob name)`` of each of the model's files."""
        base = self.core.files.model_prefix(model.row.workspace_key, model.name, model.version)
        return [(str(entry["path"]), f"{base}/{entry['path']}") for entry in model.files]

    def blob_name(self, model: ModelView) -> str:
        """The blob of a file model (its one file)."""
        return self.file_blobs(model)[0][1]

    async def materialise(self, model: ModelView, target: Path) -> None:
        """Download the model's files into the local directory ``target`` (its layout as
        registered); a file missing from the blob store is ``ModelFileMissing``."""
        for relative, blob in self.file_blobs(model):
            try:
                await self.core.files.download(blob, target / relative)
            except BlobNotFound as exc:
                raise NotFound(
                    f"the file {relative!r} of model {model.model_id} is missing from the blob store",
                    code=ErrorCode.ARTIFACT_FILE_MISSING,
                ) from exc

    async def archive(self, model: ModelView) -> Path:
        """A zip of a directory model in the staging area, streamed from the blob store one
        chunk at a time; the caller deletes it."""
        target = self.core.files.staging_path(model.row.workspace_key).with_suffix(".zip")
        blobs = self.core.files.blobs
        try:
            with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
                for relative, blob in self.file_blobs(model):
                    with archive.open(relative, "w", force_zip64=True) as member:
                        async for chunk in blobs.open(blob):
                            await asyncio.to_thread(member.write, chunk)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return target

    # --- registering -----------------------------------------------------------------------

    async def register_upload(
        self, workspace_name: str, name: str, parts: Sequence[UploadPart], metadata: ModelMetadata
    ) -> ModelView:
        """Register uploaded files: one file (a file model), or several / ``metadata.directory``
        / names with ``/`` (a directory model whose layout the names give)."""
        check_name(name, "modelName")
        ws = await self.core.get(workspace_name)
        if not parts:
            raise invalid("file", "at least one file part is required")
        if len(parts) > MAX_MODEL_FILES:
            raise invalid("file", f"at most {MAX_MODEL_FILES} files per model")
        directory = metadata.directory or len(parts) > 1 or "/" in parts[0].filename
        names = [check_artifact_path(p.filename, "file") for p in parts]
        if len(set(names)) != len(names):
            raise invalid("file", "file names must be unique")
        staging = self.core.files.staging_path(ws.key)

        def stage() -> list[dict[str, Any]]:
            entries = []
            for part, relative in zip(parts, names, strict=True):
                staged = stage_file(part.file, staging / relative, MAX_MODEL_FILE_BYTES, f"file {relative!r}")
                entries.append({"path": relative, "size": staged.size, "sha256": staged.sha256})
            return entries

        try:
            entries = await asyncio.to_thread(stage)
            return await self._register(ws, name, staging, directory, entries, metadata, None, None)
        finally:
            discard(staging)

    async def register_from_run(
        self, workspace_name: str, name: str, run_id: str, artifact_path: str, metadata: ModelMetadata
    ) -> ModelView:
        """Register a run's artifact: the file ``artifact_path``, or every artifact under the
        directory ``artifact_path/`` (paths inside the model are relative to it)."""
        check_name(name, "modelName")
        ws = await self.core.get(workspace_name)
        try:
            await self.runs.get(ws.name, run_id)
        except NotFound as exc:
            raise invalid("runId", f"run {run_id!r} does not exist in workspace {ws.name!r}") from exc
        artifacts = await self.runs.artifacts(ws.name, run_id, artifact_path)
        exact = [a for a in artifacts if a.path == artifact_path]
        selected: list[tuple[ArtifactRow, str]]
        if exact:
            directory = False
            selected = [(exact[0], artifact_path.rsplit("/", 1)[-1])]
        else:
            prefix = artifact_path + "/"
            selected = [(a, a.path[len(prefix) :]) for a in artifacts if a.path.startswith(prefix)]
            directory = True
            if not selected:
                raise invalid(
                    "artifactPath", f"run {run_id!r} has no artifact or artifact directory {artifact_path!r}"
                )
        staging = self.core.files.staging_path(ws.key)

        async def copy() -> list[dict[str, Any]]:
            entries = []
            for artifact, relative in selected:
                source = self.core.files.artifact_name(ws.key, run_id, artifact.path)
                target = staging / relative
                try:
                    await self.core.files.download(source, target)
                except BlobNotFound as exc:
                    raise NotFound(
                        f"the file of artifact {artifact.path!r} is missing from the blob store",
                        code=ErrorCode.ARTIFACT_FILE_MISSING,
                    ) from exc
                size, sha256 = await asyncio.to_thread(hash_file, target)
                entries.append({"path": relative, "size": size, "sha256": sha256})
            return entries

        try:
            entries = await copy()
            return await self._register(
                ws, name, staging, directory, entries, metadata, run_id, artifact_path
            )
        finally:
            discard(staging)

    async def _register(
        self,
        ws: Workspace,
        name: str,
        staging: Path,
        directory: bool,
        entries: list[dict[str, Any]],
        metadata: ModelMetadata,
        run_id: str | None,
        artifact_path: str | None,
    ) -> ModelView:
        now = self.core.clock()
        async with self.core.transaction("model.register") as tx:
            ws = await self.core.get_in(tx.conn, ws.name)
            version = await tx.counter(ws, MODEL_VERSION_COUNTER, name.lower())
            row = ModelRow(
                workspace_key=ws.key,
                name=name,
                version=version,
                tags_json=to_json_text(metadata.tags),
                properties_json=to_json_text(metadata.properties),
                description=metadata.description,
                run_id=run_id,
                artifact_path=artifact_path,
                is_directory=directory,
                files_json=to_json_text(entries),
                etag=new_etag(),
                created_at=now,
            )
            await model_store.insert(tx.conn, row)
            await tx.place(
                staging, self.core.files.model_prefix(ws.key, name, version), f"model {name}:{version}"
            )
            sequencer = await tx.sequencer(ws, MODEL_SEQUENCER, name.lower())
            await tx.emit(
                ws,
                ml.model_registered(
                    topic_id=ws.resource_id,
                    model_name=name,
                    model_version=version,
                    model_tags=metadata.tags,
                    model_properties=metadata.properties,
                    etag=row.etag,
                    sequencer=sequencer,
                    event_time=now,
                ),
            )
        return ModelView.of(row)
