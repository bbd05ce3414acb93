"""Dead-letter blobs, written through the server's blob store (``mlgrid.blobs``).

A blob's full name is ``<container>/<SUBSCRIPTION>/<Y>/<M>/<D>/<H>/<uuid>.json``
(``dead_letter_record.blob_path``): the first segment is the subscription's
``deadLetterDestination.properties.blobContainerName`` and becomes the blob container (an Azure
container, or ``<data-dir>/blobs/<container>`` locally); the rest is the blob's name in it —
Azure's own dead-letter layout, so a consumer written for Azure's dead-letter containers
(``ContainerClient.list_blobs`` / ``download_blob``) reads these unchanged. The store writes
each blob atomically: a reader (or a crash) never sees half of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlgrid.blobs import Blobs, check_name
from mlgrid.events.jsoncodec import dumps

__all__ = ["DeadLetterBlobs", "split_blob_path"]


def split_blob_path(path: str) -> tuple[str, str]:
    """``(container, name in the container)`` of a dead-letter blob path."""
    container, _, name = check_name(path).partition("/")
    if not name:
        raise ValueError(f"dead-letter blob path {path!r} has no name after its container")
    return container, name


class DeadLetterBlobs:
    def __init__(self, blobs: Blobs) -> None:
        self.blobs = blobs

    async def write_json_array(self, path: str, records: Sequence[Any]) -> None:
        """Write ``records`` as one JSON array blob (numbers kept exact)."""
        container, name = split_blob_path(path)
        await self.blobs.container(container).put_bytes(name, dumps(list(records)))

    async def read(self, path: str) -> bytes:
        container, name = split_blob_path(path)
        return b"".join([chunk async for chunk in self.blobs.container(container).open(name)])
