"""The server's blob store for dead letters: a directory, ``<data-dir>/blobs``.

Blob names follow Azure's dead-letter layout (``dead_letter_record.blob_path``), so tools that
read Azure's dead-letter containers can read a copy of this directory. Each blob is written to
a temporary file and renamed into place: a reader (or a crash) never sees half a blob.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlgrid.events.jsoncodec import dumps

__all__ = ["BlobStore"]


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, name: str) -> Path:
        """The file of blob ``name`` (``container/SUB/2024/3/7/9/<uuid>.json``).

        Names are built by the server from validated container and subscription names; this
        check only makes sure no name can ever step outside the store.
        """
        parts = Path(name).parts
        if not parts or any(part in {"", ".", ".."} for part in parts) or Path(name).is_absolute():
            raise ValueError(f"invalid blob name {name!r}")
        return self.root.joinpath(*parts)

    def _write(self, name: str, data: bytes) -> None:
        target = self.path_of(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    async def write_json_array(self, name: str, records: Sequence[Any]) -> None:
        """Write ``records`` as one JSON array blob (numbers kept exact); off the event loop."""
        data = dumps(list(records))
        await asyncio.to_thread(self._write, name, data)

    def read(self, name: str) -> bytes:
        return self.path_of(name).read_bytes()

