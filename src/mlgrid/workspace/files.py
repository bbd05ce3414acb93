"""Where workspace files are kept, and the few file operations the services share.

Every workspace file is a blob of the server's blob store (``mlgrid.blobs``), in the workspace
container (``--blob-container``), named (workspace name lower-cased)::

    <workspace>/runs/<run-id>/artifacts/<path>      run artifacts (``logs/job.log`` for jobs)
    <workspace>/models/<model-name>/<version>/...   registered model files (a copy, never a link)
    <workspace>/datasets/<dataset-id>/<file>        registered dataset files

With the default local backend that container is ``<data-dir>/workspaces``: the layout mlgrid
always had. Beside the blobs each node keeps a node-local directory per workspace
(``<data-dir>/workspaces/<workspace>/``, the same directory on the local backend):
``.staging/`` for uploads in progress, ``endpoints/`` for the deployments it runs (model files
materialised from the blob store) and the log of a job while it runs. Submitted jobs and
scoring processes never work in the blob store: they get private working copies
(``workspace.processes``) and their outputs are uploaded when they end.

The database holds the metadata; files are staged locally first and stored under their
blob names inside the database transaction that records them (``WorkspaceTransaction.place``),
so a failed request leaves neither.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mlgrid.blobs import BlobContainer, Blobs, local_blobs
from mlgrid.errors import PayloadTooLarge

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StagedFile:
    """A file written to the staging area with its size and SHA-256."""

    path: Path
    size: int
    sha256: str


class WorkspaceFiles:
    """Blob names of workspace files, and this node's local directories."""

    def __init__(self, blobs: BlobContainer, local_root: Path) -> None:
        self.blobs = blobs
        self.root = Path(local_root).resolve()

    @classmethod
    def of(cls, blobs: Blobs, data_dir: Path) -> WorkspaceFiles:
        return cls(blobs.files, Path(data_dir) / "workspaces")

    @classmethod
    def local(cls, data_dir: Path) -> WorkspaceFiles:
        """The default: the data directory's ``workspaces/`` (tests, single nodes)."""
        return cls.of(local_blobs(data_dir), data_dir)

    # --- blob names ------------------------------------------------------------------------

    @staticmethod
    def workspace_prefix(workspace_key: str) -> str:
        return workspace_key.lower() + "/"

    def artifact_name(self, workspace_key: str, run_id: str, path: str) -> str:
        """``path`` must have passed ``validation.check_artifact_path``."""
        return f"{self.workspace_prefix(workspace_key)}runs/{run_id}/artifacts/{path}"

    def model_prefix(self, workspace_key: str, name: str, version: int) -> str:
        return f"{self.workspace_prefix(workspace_key)}models/{name.lower()}/{version}"

    def dataset_name(self, workspace_key: str, dataset_id: str, file_name: str) -> str:
        return f"{self.workspace_prefix(workspace_key)}datasets/{dataset_id}/{file_name}"

    # --- this node's directories -----------------------------------------------------------

    def workspace_dir(self, workspace_key: str) -> Path:
        """This node's directory of the workspace (deployments, staging, running job logs)."""
        return self.root / workspace_key.lower()

    def job_log_path(self, workspace_key: str, run_id: str) -> Path:
        """Where a running job's output goes on this node; stored as the run's artifact
        ``logs/job.log`` when the job ends. On the local backend this is that blob's own file."""
        return self.workspace_dir(workspace_key) / "runs" / run_id / "artifacts" / "logs" / "job.log"

    def staging_path(self, workspace_key: str) -> Path:
        staging = self.workspace_dir(workspace_key) / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        return staging / uuid.uuid4().hex

    async def remove_workspace(self, workspace_key: str) -> None:
        """Delete the workspace's blobs and this node's directory of it."""
        await self.blobs.delete_prefix(self.workspace_prefix(workspace_key))
        await asyncio.to_thread(shutil.rmtree, self.workspace_dir(workspace_key), True)

    async def download(self, name: str, target: Path) -> int:
        """Materialise a blob as the local file ``target`` (its directory created)."""
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        return await self.blobs.download(name, target)


async def stage_stream(chunks: AsyncIterator[bytes], target: Path, limit: int, what: str) -> StagedFile:
    """Write a request body to ``target`` while hashing it; 413 beyond ``limit`` bytes."""
    digest = hashlib.sha256()
    size = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with target.open("wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"{what} is larger than the limit of {limit} bytes")
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return StagedFile(target, size, digest.hexdigest())


def stage_file(source: BinaryIO, target: Path, limit: int, what: str) -> StagedFile:
    """Copy an open file (an upload part) to ``target`` while hashing it (blocking)."""
    digest = hashlib.sha256()
    size = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with target.open("wb") as out:
            while chunk := source.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"{what} is larger than the limit of {limit} bytes")
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return StagedFile(target, size, digest.hexdigest())


def hash_file(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a file (blocking)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            size += len(chunk)
            digest.update(chunk)
    return size, digest.hexdigest()


def staged_files(staged: Path) -> list[tuple[str, Path]]:
    """``(relative name, file)`` of a staged file (``("", staged)``) or of every file in a
    staged directory (blocking)."""
    if not staged.is_dir():
        return [("", staged)]
    return sorted((p.relative_to(staged).as_posix(), p) for p in staged.rglob("*") if p.is_file())


def discard(path: Path) -> None:
    """Remove a staged or half-placed file or directory, ignoring what is already gone."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
