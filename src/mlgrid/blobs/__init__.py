"""Blob storage for every file the server keeps (workspace files, job logs, dead letters).

``base`` holds the interface (``BlobStorage``/``BlobContainer``), ``names`` the one name check,
``local`` the directory backend (the default, mlgrid's historical layout) and ``azure`` Azure
Blob Storage. ``Blobs`` is the runtime's typed service: the storage plus the name of the
container that holds workspace files; ``open_blobs`` builds it from the settings' values (the
caller passes them: this layer does not read ``Settings``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlgrid.blobs.base import (
    CHUNK,
    BlobConflict,
    BlobContainer,
    BlobInfo,
    BlobNotFound,
    BlobStorage,
    BlobStoreUnavailable,
)
from mlgrid.blobs.local import LocalBlobContainer, LocalBlobStorage
from mlgrid.blobs.names import InvalidBlobName, check_container, check_name

__all__ = [
    "CHUNK",
    "BlobConflict",
    "BlobContainer",
    "BlobInfo",
    "BlobNotFound",
    "BlobStorage",
    "BlobStoreUnavailable",
    "Blobs",
    "InvalidBlobName",
    "check_name",
    "local_blobs",
    "open_blobs",
]

#: Default name of the container of workspace files (``--blob-container``).
DEFAULT_WORKSPACE_CONTAINER = "mlgrid"


@dataclass(frozen=True)
class Blobs:
    """The server's blob store: ``storage``, and ``files``, the container of workspace files."""

    storage: BlobStorage
    files: BlobContainer

    def container(self, name: str) -> BlobContainer:
        """Any other container (a subscription's dead-letter container)."""
        return self.storage.container(name)


def local_blobs(data_dir: Path, workspace_container: str = DEFAULT_WORKSPACE_CONTAINER) -> Blobs:
    """The local backend with mlgrid's data-directory layout: workspace files in
    ``<data-dir>/workspaces``, other containers in ``<data-dir>/blobs/<container>`` (a
    dead-letter container named like the workspace container stays there too)."""
    root = Path(data_dir).resolve()
    files = LocalBlobContainer(check_container(workspace_container), root / "workspaces")
    return Blobs(LocalBlobStorage(root / "blobs"), files)


def open_blobs(
    data_dir: Path, url: str = "", key: str = "", workspace_container: str = DEFAULT_WORKSPACE_CONTAINER
) -> Blobs:
    """The blob store the settings name: Azure when ``url`` is set, else the data directory."""
    check_container(workspace_container)
    if not url:
        return local_blobs(data_dir, workspace_container)
    from mlgrid.blobs.azure import AzureBlobStorage  # the SDK is imported only when used

    storage = AzureBlobStorage.connect(url, key)
    return Blobs(storage, storage.container(workspace_container))
