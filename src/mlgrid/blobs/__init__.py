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
from mlgrid.blobs.local import LocalBlobStorage
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
    """The server's blob store: ``storage`` and ``files``, the container of workspace files."""

    storage: BlobStorage
    workspace_container: str

    @property
    def files(self) -> BlobContainer:
        return self.storage.container(self.workspace_container)

    def container(self, name: str) -> BlobContainer:
        """Any other container (a subscription's dead-letter container)."""
        return self.storage.container(name)


def local_blobs(data_dir: Path, workspace_container: str = DEFAULT_WORKSPACE_CONTAINER) -> Blobs:
    """The local backend with mlgrid's data-directory layout: workspace files in
    ``<data-dir>/workspaces``, other containers in ``<data-dir>/blobs/<container>``."""
    root = Path(data_dir).resolve()
    storage = LocalBlobStorage(root / "blobs", {workspace_container: root / "workspaces"})
    return Blobs(storage, workspace_container)


def open_blobs(
    data_dir: Path, url: str = "", key: str = "", workspace_container: str = DEFAULT_WORKSPACE_CONTAINER
) -> Blobs:
    """The blob store the settings name: Azure when ``url`` is set, else the data directory."""
    check_container(workspace_container)
    if not url:
        return local_blobs(data_dir, workspace_container)
    from mlgrid.blobs.azure import AzureBlobStorage  # the SDK is imported only when used

    return Blobs(AzureBlobStorage.connect(url, key), workspace_container)
