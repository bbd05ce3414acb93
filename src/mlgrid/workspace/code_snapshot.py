"""A job's code snapshot: the zip archive a client uploads with the job, unpacked safely.

Azure ML snapshots a job's ``code`` directory and keeps it with the run; mlgrid does the same:
the client (``client/code_snapshot.py``) zips the directory it was given, leaving out what its
``.amlignore``/``.gitignore`` ignores, and uploads the archive with the job. Here the server
unpacks it into a staging directory that becomes the run's artifacts under ``snapshot/``
(listed and downloadable like any artifact) and the job's working copy starts as a copy of it.
The upload is the only way code travels, so a job submitted from another machine runs the same.

The archive is untrusted input: every member name must be a plain relative artifact path (no
``..``, no absolute path, no symbolic link), the number of files and the bytes actually
unpacked (not what the archive declares) are bounded, and any breach is a 4xx naming ``code``
that leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mlgrid.errors import MlgridError, PayloadTooLarge, invalid
from mlgrid.workspace.validation import check_artifact_path

SNAPSHOT_PREFIX = "snapshot"
MAX_SNAPSHOT_FILES = 2000
"""Azure ML's limit on the number of files in a job's snapshot."""
CHUNK = 1024 * 1024
FIELD = "code"


@dataclass(frozen=True)
class SnapshotLimits:
    """How big a snapshot may be once unpacked."""

    max_bytes: int
    max_files: int = MAX_SNAPSHOT_FILES


@dataclass(frozen=True)
class SnapshotFile:
    """One unpacked file: its path inside the snapshot, size and SHA-256."""

    path: str
    size: int
    sha256: str
    executable: bool


def too_large(total: int, limits: SnapshotLimits) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the job's code is {total / 1e6:.1f} MB unpacked, more than the server's limit of "
        f"{limits.max_bytes / 1e6:.1f} MB (setting job_code_max_mb); leave out what the job does not "
        "need with .amlignore or .gitignore, or submit a smaller code directory"
    )


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _is_executable(info: zipfile.ZipInfo) -> bool:
    return bool((info.external_attr >> 16) & 0o100)


def extract(archive: BinaryIO, target: Path, limits: SnapshotLimits) -> list[SnapshotFile]:
    """Unpack ``archive`` (a zip) into the new directory ``target`` (blocking).

    Returns the files, sorted by path. On any error ``target`` is removed and a 400
    (``code``: not a zip, a bad member name, too many files) or 413 (too many bytes) is raised.
    """
    try:
        return _extract(archive, target, limits)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _extract(archive: BinaryIO, target: Path, limits: SnapshotLimits) -> list[SnapshotFile]:
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise invalid(FIELD, f"must be a zip archive of the code directory ({exc})") from exc
    with bundle:
        members = [info for info in bundle.infolist() if not info.is_dir()]
        if len(members) > limits.max_files:
            raise invalid(
                FIELD,
                f"holds {len(members)} files, more than the limit of {limits.max_files}; leave out what "
                "the job does not need with .amlignore or .gitignore",
            )
        declared = sum(info.file_size for info in members)
        if declared > limits.max_bytes:
            raise too_large(declared, limits)
        seen: set[str] = set()
        for info in members:
            path = check_artifact_path(info.filename, f"{FIELD}: {info.filename!r}")
            if _is_symlink(info):
                raise invalid(f"{FIELD}: {path!r}", "symbolic links cannot be part of a code snapshot")
            if path in seen:
                raise invalid(f"{FIELD}: {path!r}", "appears twice in the archive")
            seen.add(path)
        for path in seen:  # "a" as a file and "a/b": one of them cannot exist
            for parent in Path(path).parents:
                if str(parent) in seen:
                    raise invalid(f"{FIELD}: {path!r}", f"is inside {str(parent)!r}, which is a file")
        target.mkdir(parents=True, mode=0o700)
        files: list[SnapshotFile] = []
        total = 0
        for info in members:
            destination = target / info.filename
            destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            digest = hashlib.sha256()
            size = 0
            try:
                with bundle.open(info) as source, destination.open("xb") as out:
                    while chunk := source.read(CHUNK):
                        size += len(chunk)
                        total += len(chunk)
                        if total > limits.max_bytes:  # what the archive declared was a lie
                            raise too_large(total, limits)
                        digest.update(chunk)
                        out.write(chunk)
            except MlgridError:
                raise
            except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
                raise invalid(f"{FIELD}: {info.filename!r}", f"cannot be unpacked ({exc})") from exc
            executable = _is_executable(info)
            destination.chmod(0o700 if executable else 0o600)
            files.append(SnapshotFile(info.filename, size, digest.hexdigest(), executable))
    return sorted(files, key=lambda f: f.path)
