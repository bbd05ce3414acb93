"""Zipping a job's code directory for upload, as Azure ML snapshots a job's ``code``.

Which files go: every regular file under the directory except ``.git/`` and what the ignore
files leave out. Like Azure ML, a directory's ``.amlignore`` is used when it has one, else its
``.gitignore``; ignore files in subdirectories apply below them, with git's semantics (a later,
deeper pattern wins; ``!`` re-includes; a file inside an ignored directory cannot be
re-included), matched by ``pathspec``'s ``GitIgnoreSpec``. Symbolic links to files are followed
(their content goes); symbolic links to directories are not (no loops, nothing outside).

The size is checked here before anything is sent, against the same default limit as the
server's (``job_code_max_mb``, 300 MB as in Azure ML); the server checks again with its own.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pathspec

IGNORE_FILES = (".amlignore", ".gitignore")
"""In order of preference: a directory's first one that exists is used."""
ALWAYS_LEFT_OUT = frozenset({".git"})
DEFAULT_MAX_BYTES = 300 * 1000 * 1000
DEFAULT_MAX_FILES = 2000
SPOOL_IN_MEMORY = 8 * 1024 * 1024


class CodeSnapshotError(ValueError):
    """The code directory cannot be sent: missing, too large, or too many files."""


@dataclass(frozen=True)
class CodeFile:
    """One file of the snapshot: its ``/``-separated path in the snapshot and on disk."""

    path: str
    source: Path
    size: int


def _ignore_spec(directory: Path) -> pathspec.GitIgnoreSpec | None:
    for name in IGNORE_FILES:
        candidate = directory / name
        if candidate.is_file():
            return pathspec.GitIgnoreSpec.from_lines(candidate.read_text(errors="replace").splitlines())
    return None


def _ignored(specs: list[tuple[str, pathspec.GitIgnoreSpec]], relative: str, is_dir: bool) -> bool:
    """Whether ``relative`` (from the snapshot root) is ignored: the deepest decisive match wins."""
    verdict = False
    for base, spec in specs:
        local = relative[len(base) :] if base else relative
        result = spec.check_file(local + "/" if is_dir else local)
        if result.include is not None:
            verdict = result.include
    return verdict


def collect(root: str | os.PathLike[str]) -> list[CodeFile]:
    """The files of the snapshot of ``root``, sorted by path."""
    base = Path(root)
    if not base.is_dir():
        raise CodeSnapshotError(f"the code directory {str(base)!r} does not exist or is not a directory")
    files: list[CodeFile] = []
    specs_by_dir: dict[str, list[tuple[str, pathspec.GitIgnoreSpec]]] = {}
    for current, directories, names in os.walk(base):
        here = Path(current)
        relative_dir = here.relative_to(base).as_posix()
        prefix = "" if relative_dir == "." else relative_dir + "/"
        inherited = specs_by_dir.get(str(here.parent), []) if prefix else []
        spec = _ignore_spec(here)
        specs = [*inherited, (prefix, spec)] if spec is not None else inherited
        specs_by_dir[str(here)] = specs
        kept_directories = []
        for name in sorted(directories):
            path = here / name
            if name in ALWAYS_LEFT_OUT or path.is_symlink() or _ignored(specs, prefix + name, True):
                continue
            kept_directories.append(name)
        directories[:] = kept_directories
        for name in sorted(names):
            path = here / name
            if _ignored(specs, prefix + name, False) or not path.is_file():
                continue  # ignored, or a broken link, socket, device ...
            files.append(CodeFile(prefix + name, path, path.stat().st_size))
    return sorted(files, key=lambda f: f.path)


def check_limits(root: str | os.PathLike[str], files: list[CodeFile], max_bytes: int, max_files: int) -> None:
    total = sum(f.size for f in files)
    if total > max_bytes:
        largest = sorted(files, key=lambda f: -f.size)[:3]
        biggest = ", ".join(f"{f.path} ({f.size / 1e6:.1f} MB)" for f in largest)
        raise CodeSnapshotError(
            f"the code directory {str(root)!r} holds {total / 1e6:.1f} MB after .amlignore/.gitignore, "
            f"more than the limit of {max_bytes / 1e6:.1f} MB (largest: {biggest}); leave out what the "
            "job does not need in .amlignore or .gitignore, or pass a smaller --code directory"
        )
    if len(files) > max_files:
        raise CodeSnapshotError(
            f"the code directory {str(root)!r} holds {len(files)} files after .amlignore/.gitignore, more "
            f"than the limit of {max_files}; leave out what the job does not need in .amlignore or .gitignore"
        )


def build_archive(
    root: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
) -> tuple[IO[bytes], list[CodeFile]]:
    """A zip of ``root``'s snapshot (rewound, in memory or a temporary file) and its files.

    Raises :class:`CodeSnapshotError` before reading any file when a limit is exceeded.
    """
    files = collect(root)
    check_limits(root, files, max_bytes, max_files)
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - returned
    try:
        with zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED) as archive:
            for item in files:
                archive.write(item.source, item.path)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, files
