"""Where workspace files live on disk, and the few file operations the services share.

Layout under ``<data-dir>/workspaces/<workspace>/`` (workspace name lower-cased)::

    runs/<run-id>/artifacts/<path>      run artifacts (``logs/job.log`` for submitted jobs)
    models/<model-name>/<version>/...   registered model files (a copy, never a link)
    datasets/<dataset-id>/<file>        registered dataset files
    .staging/                           uploads in progress (same file system: renames are atomic)

Submitted jobs and scoring processes never work here: they get private working copies outside
the data directory (``workspace.processes``), which their unprivileged users cannot enter.
The database holds the metadata; the files are written to ``.staging`` first and moved into
place inside the database transaction that records them, so a failed request leaves neither.
Several nodes on one PostgreSQL database must share this directory (a network file system)
for artifacts, models and datasets written on one node to be readable on another.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import Conflict, PayloadTooLarge

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StagedFile:
    """A file written to the staging area with its size and SHA-256."""

    path: Path
    size: int
    sha256: str


class WorkspaceFiles:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir).resolve() / "workspaces"

    def workspace_dir(self, workspace_key: str) -> Path:
        return self.root / workspace_key.lower()

    def run_dir(self, workspace_key: str, run_id: str) -> Path:
        return self.workspace_dir(workspace_key) / "runs" / run_id

    def artifact_file(self, workspace_key: str, run_id: str, path: str) -> Path:
        """``path`` must have passed ``validation.check_artifact_path``."""
        return self.run_dir(workspace_key, run_id) / "artifacts" / path

    def artifacts_root(self, workspace_key: str, run_id: str) -> Path:
        return self.run_dir(workspace_key, run_id) / "artifacts"

    def model_dir(self, workspace_key: str, name: str, version: int) -> Path:
        return self.workspace_dir(workspace_key) / "models" / name.lower() / str(version)

    def dataset_file(self, workspace_key: str, dataset_id: str, file_name: str) -> Path:
        return self.workspace_dir(workspace_key) / "datasets" / dataset_id / file_name

    def staging_path(self, workspace_key: str) -> Path:
        staging = self.workspace_dir(workspace_key) / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        return staging / uuid.uuid4().hex

    def remove_workspace(self, workspace_key: str) -> None:
        shutil.rmtree(self.workspace_dir(workspace_key), ignore_errors=True)


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


def place(staged: Path, final: Path, what: str) -> None:
    """Move a staged file or directory to its final place (atomic rename on one file system).

    A file where a directory is needed, or the reverse (artifact ``a`` and ``a/b``), is a 409.
    """
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.is_dir() and not staged.is_dir():
            raise Conflict(f"{what} is a directory of other files", code=ErrorCode.PATH_CONFLICT)
        os.replace(staged, final)
    except (NotADirectoryError, FileExistsError, IsADirectoryError) as exc:
        raise Conflict(
            f"{what} collides with an existing file or directory", code=ErrorCode.PATH_CONFLICT
        ) from exc


def discard(path: Path) -> None:
    """Remove a staged or half-placed file or directory, ignoring what is already gone."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
