"""The local-directory backend: each container is a directory, each blob a file.

The layout is the one mlgrid always had (``mlgrid.blobs.local_blobs``): the workspace files'
container is ``<data-dir>/workspaces`` and every other container (dead letters)
``<data-dir>/blobs/<container>``, so existing data directories keep working. A blob is written
to a ``.partial-*`` file beside its final place and renamed into place (atomic on one file
system); listings skip those files. Empty directories left by a delete are removed, so a
deleted ``a/b`` does not block a later blob ``a``. Blocking file work runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from mlgrid.blobs.base import CHUNK, BlobConflict, BlobInfo, BlobNotFound
from mlgrid.blobs.names import PARTIAL_PREFIX, check_container, check_name, check_prefix

__all__ = ["LocalBlobContainer", "LocalBlobStorage"]



class LocalBlobContainer:
    def __init__(self, name: str, root: Path) -> None:
        self._name = name
        self.root = root

    @property
    def name(self) -> str:
        return self._name

    def path_of(self, name: str) -> Path:
        """The file of blob ``name`` (validated: it cannot leave the container's directory)."""
        return self.root.joinpath(*check_name(name).split("/"))

    # --- writing ---------------------------------------------------------------------------

    def _partial(self, target: Path, name: str) -> tuple[int, Path]:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (NotADirectoryError, FileExistsError) as exc:
            raise BlobConflict(name, "is inside another blob's name (a file, not a directory)") from exc
        if target.is_dir():
            raise BlobConflict(name, "is a directory of other blobs")
        fd, partial = tempfile.mkstemp(prefix=PARTIAL_PREFIX, dir=target.parent)
        return fd, Path(partial)

    def _commit(self, partial: Path, target: Path, name: str) -> BlobInfo:
        try:
            os.replace(partial, target)
        except (IsADirectoryError, OSError) as exc:
            partial.unlink(missing_ok=True)
            if isinstance(exc, IsADirectoryError) or exc.errno in (errno.EISDIR, errno.ENOTEMPTY):
                raise BlobConflict(name, "is a directory of other blobs") from exc
            raise
        return BlobInfo(name, target.stat().st_size)

    async def put(self, name: str, chunks: AsyncIterator[bytes]) -> BlobInfo:
        target = self.path_of(name)
        fd, partial = await asyncio.to_thread(self._partial, target, name)
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    await asyncio.to_thread(out.write, chunk)
                await asyncio.to_thread(_flush, out)
            return await asyncio.to_thread(self._commit, partial, target, name)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    async def put_bytes(self, name: str, data: bytes) -> BlobInfo:
        async def one() -> AsyncIterator[bytes]:
            yield data

        return await self.put(name, one())

    async def put_file(self, name: str, path: Path, *, move: bool = False) -> BlobInfo:
        target = self.path_of(name)

        def store() -> BlobInfo:
            fd, partial = self._partial(target, name)
            try:
                with os.fdopen(fd, "wb") as out:
                    renamed = False
                    if move:
                        try:
                            os.replace(path, partial)  # same file system: no copy
                            renamed = True
                        except OSError as exc:
                            if exc.errno != errno.EXDEV:
                                raise
                    if not renamed:
                        with path.open("rb") as source:
                            shutil.copyfileobj(source, out, CHUNK)
                        _flush(out)
                return self._commit(partial, target, name)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise

        return await asyncio.to_thread(store)

    async def move(self, source: str, target: str) -> None:
        old, new = self.path_of(source), self.path_of(target)

        def rename() -> None:
            if not old.is_file():
                raise BlobNotFound(source)
            new.parent.mkdir(parents=True, exist_ok=True)
            os.replace(old, new)
            self._prune(old.parent)

        await asyncio.to_thread(rename)

    # --- reading ---------------------------------------------------------------------------

    async def open(self, name: str, chunk_size: int = CHUNK) -> AsyncIterator[bytes]:
        path = self.path_of(name)
        try:
            handle: BinaryIO = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise BlobNotFound(name) from exc
        try:
            while chunk := await asyncio.to_thread(handle.read, chunk_size):
                yield chunk
        finally:
            handle.close()

    async def download(self, name: str, target: Path) -> int:
        source = self.path_of(name)

        def copy() -> int:
            try:
                with source.open("rb") as reader, target.open("wb") as out:
                    shutil.copyfileobj(reader, out, CHUNK)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
                raise BlobNotFound(name) from exc
            return target.stat().st_size

        return await asyncio.to_thread(copy)

    async def stat(self, name: str) -> BlobInfo | None:
        path = self.path_of(name)

        def size() -> int | None:
            with contextlib.suppress(OSError):
                if path.is_file():
                    return path.stat().st_size
            return None

        found = await asyncio.to_thread(size)
        return None if found is None else BlobInfo(name, found)

    def _scan(self, prefix: str) -> list[BlobInfo]:
        directory = prefix.rpartition("/")[0]
        base = self.root.joinpath(*directory.split("/")) if directory else self.root
        found: list[BlobInfo] = []
        for folder, dirs, files in os.walk(base):
            dirs.sort()
            relative = Path(folder).relative_to(self.root).as_posix()
            head = "" if relative == "." else relative + "/"
            for file_name in sorted(files):
                if file_name.startswith(PARTIAL_PREFIX):
                    continue
                blob = head + file_name
                if blob.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):
                        found.append(BlobInfo(blob, os.stat(os.path.join(folder, file_name)).st_size))
        return found

    async def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        for info in await asyncio.to_thread(self._scan, check_prefix(prefix)):
            yield info

    # --- deleting --------------------------------------------------------------------------

    def _prune(self, folder: Path) -> None:
        """Remove empty directories from ``folder`` up to (not including) the container root."""
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    async def delete(self, name: str) -> bool:
        path = self.path_of(name)

        def remove() -> bool:
            try:
                path.unlink()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
                return False
            self._prune(path.parent)
            return True

        return await asyncio.to_thread(remove)

    async def delete_prefix(self, prefix: str) -> int:
        check_prefix(prefix)
        if prefix.endswith("/"):
            folder = self.root.joinpath(*prefix[:-1].split("/"))

            def remove_tree() -> int:
                count = sum(len(files) for _, _, files in os.walk(folder))
                shutil.rmtree(folder, ignore_errors=True)
                self._prune(folder.parent)
                return count

            return await asyncio.to_thread(remove_tree)
        count = 0
        async for info in self.list(prefix):
            count += await self.delete(info.name)
        return count


def _flush(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


class LocalBlobStorage:
    """Containers as directories under ``root`` (``root/<container>``)."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root
        self._containers: dict[str, LocalBlobContainer] = {}

    def describe(self) -> str:
        return f"local directory {self.root}"

    def container(self, name: str) -> LocalBlobContainer:
        found = self._containers.get(name)
        if found is None:
            found = self._containers[name] = LocalBlobContainer(name, self.root / check_container(name))
        return found

    async def close(self) -> None:
        return None


