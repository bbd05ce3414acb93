"""The blob-store interface every file of the server goes through (docs/operations.md).

A ``BlobStorage`` is a set of named containers (Azure's containers; directories locally); a
``BlobContainer`` stores blobs under validated names (``names.check_name``). The contract,
tested against both backends in tests/integration/test_blob_contract.py:

* ``put``/``put_file`` are atomic from a reader's view: until the write completes no reader
  lists, stats or opens the new blob, and a replaced blob is either the old or the new one;
* ``open`` streams in chunks (never the whole blob in memory); ``download`` writes a local file;
* ``list`` yields the blobs whose names start with a prefix (a plain string prefix, as Azure's
  ``name_starts_with``), in no promised order;
* ``delete`` says whether there was a blob; ``stat`` is ``None`` for a missing blob;
* ``move`` renames within a container (locally a rename; on Azure a copy then a delete).

A missing blob raises ``BlobNotFound``; a name that is a "directory" of other blobs on a
backend that has directories (or the reverse) raises ``BlobConflict``; a store that cannot be
reached raises ``BlobStoreUnavailable`` (503).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import Conflict, NotFound, ServiceUnavailable

__all__ = [
    "CHUNK",
    "BlobConflict",
    "BlobContainer",
    "BlobInfo",
    "BlobNotFound",
    "BlobStorage",
    "BlobStoreUnavailable",
]

#: Bytes per read chunk: what one streamed read keeps in memory.
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class BlobInfo:
    """A stored blob: its name in the container and its size in bytes."""

    name: str
    size: int


class BlobNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"blob {name!r} does not exist", code=ErrorCode.NOT_FOUND)


class BlobConflict(Conflict):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"blob {name!r} {reason}", code=ErrorCode.PATH_CONFLICT)


class BlobStoreUnavailable(ServiceUnavailable):
    def __init__(self, reason: str) -> None:
        super().__init__(f"the blob store is unavailable: {reason}", code=ErrorCode.SERVICE_UNAVAILABLE)


class BlobContainer(Protocol):
    """One container of blobs (see the module docstring for the contract)."""

    @property
    def name(self) -> str: ...

    async def put(self, name: str, chunks: AsyncIterator[bytes]) -> BlobInfo: ...

    async def put_bytes(self, name: str, data: bytes) -> BlobInfo: ...

    async def put_file(self, name: str, path: Path, *, move: bool = False) -> BlobInfo:
        """Store the local file ``path``; ``move``: the caller gives the file up (a local
        backend may rename it into place instead of copying)."""
        ...

    def open(self, name: str, chunk_size: int = CHUNK) -> AsyncIterator[bytes]:
        """The blob's bytes in chunks; raises ``BlobNotFound`` on the first iteration."""
        ...

    async def download(self, name: str, target: Path) -> int:
        """Write the blob to the local file ``target`` (replaced); returns its size."""
        ...

    def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]: ...

    async def stat(self, name: str) -> BlobInfo | None: ...

    async def delete(self, name: str) -> bool: ...

    async def delete_prefix(self, prefix: str) -> int: ...

    async def move(self, source: str, target: str) -> None: ...


class BlobStorage(Protocol):
    """A blob service: containers by name, created when first written to."""

    @property
    def kind(self) -> str:
        """``local`` or ``azure`` (for logs and the health page)."""
        ...

    def describe(self) -> str:
        """Where blobs go, without secrets (for the start-up log)."""
        ...

    def container(self, name: str) -> BlobContainer: ...

    async def close(self) -> None: ...
