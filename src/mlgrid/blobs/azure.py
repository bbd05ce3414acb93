"""The Azure Blob Storage backend, on ``azure-storage-blob``'s async client.

Why this library and not ``obstore``: docs/decisions.md (2026-12-07, blob storage). Each
container of the interface is an Azure container, created the first time it is written to.
Writes go through the SDK's block upload (blocks staged, then one ``Put Block List``), which
Azure commits atomically: a reader sees the old blob or the whole new one, never a part.
Transfer sizes are bounded (``TRANSFER_CHUNK``) so that neither an upload from a stream nor a
download keeps more than a few chunks in memory. Errors are translated at this boundary:
``ResourceNotFoundError`` becomes ``BlobNotFound``, an unreachable service or a 5xx
``BlobStoreUnavailable``; the account key never appears in a message or a log line.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from mlgrid.blobs.base import CHUNK, BlobConflict, BlobInfo, BlobNotFound, BlobStoreUnavailable
from mlgrid.blobs.names import check_container, check_name, check_prefix

__all__ = ["AzureBlobContainer", "AzureBlobStorage", "is_connection_string"]

T = TypeVar("T")

#: Block size of uploads and range size of downloads (the SDK's defaults go up to 64 MB per
#: single put, held in memory).
TRANSFER_CHUNK = 4 * 1024 * 1024
TRANSFER_CONCURRENCY = 2
DOWNLOAD_CONCURRENCY = 4
COPY_POLL_SECONDS = 0.2
COPY_TIMEOUT_SECONDS = 300.0


def is_connection_string(value: str) -> bool:
    """Whether ``--blob-url`` holds a connection string (``Key=value;...``) rather than a URL."""
    text = value.strip()
    return "=" in text.split("://", 1)[0] or text.startswith("UseDevelopmentStorage")


def _account_name(url: str) -> str:
    """``acct`` of ``https://acct.blob.core.windows.net``, or of the path-style URL of an
    emulator (``http://127.0.0.1:10000/acct``)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host.replace(".", "").isdigit() or host == "localhost":
        return parts.path.strip("/").split("/", 1)[0]
    return host.split(".", 1)[0]


async def _guard(call: Callable[[], Awaitable[T]], name: str) -> T:
    try:
        return await call()
    except ResourceNotFoundError as exc:
        raise BlobNotFound(name) from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise BlobStoreUnavailable(type(exc).__name__) from exc
    except ClientAuthenticationError as exc:
        raise BlobStoreUnavailable(
            f"HTTP {exc.status_code}: the account refused the credentials (check --blob-url and --blob-key)"
        ) from exc
    except HttpResponseError as exc:
        if exc.status_code is not None and (exc.status_code >= 500 or exc.status_code == 403):
            raise BlobStoreUnavailable(f"HTTP {exc.status_code} {exc.reason}") from exc
        raise


class AzureBlobContainer:
    def __init__(self, client: ContainerClient) -> None:
        self._client = client
        self._created = False
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return str(self._client.container_name)

    async def _ensure(self) -> None:
        if self._created:
            return
        async with self._lock:
            if self._created:
                return
            try:
                await _guard(self._client.create_container, self.name)
            except ResourceExistsError:
                pass
            self._created = True

    async def _upload(
        self, name: str, data: Any, length: int | None = None, concurrency: int = TRANSFER_CONCURRENCY
    ) -> BlobInfo:
        check_name(name)
        await self._ensure()
        blob = self._client.get_blob_client(name)

        async def upload() -> Any:
            return await blob.upload_blob(
                data, length=length, overwrite=True, max_concurrency=concurrency
            )

        try:
            await _guard(upload, name)
        except BlobNotFound:
            # The container was deleted behind our back: create it again, once.
            self._created = False
            await self._ensure()
            await _guard(upload, name)
        found = await self.stat(name)
        if found is None:  # pragma: no cover - deleted by someone else at once
            raise BlobNotFound(name)
        return found

    async def put(self, name: str, chunks: AsyncIterator[bytes]) -> BlobInfo:
        return await self._upload(name, chunks)

    async def put_bytes(self, name: str, data: bytes) -> BlobInfo:
        return await self._upload(name, data, len(data))

    async def put_file(self, name: str, path: Path, *, move: bool = False) -> BlobInfo:
        with path.open("rb") as source:
            # A file of known length: blocks read and sent DOWNLOAD_CONCURRENCY at a time.
            info = await self._upload(name, source, path.stat().st_size, DOWNLOAD_CONCURRENCY)
        if move:
            path.unlink(missing_ok=True)
        return info

    async def open(self, name: str, chunk_size: int = CHUNK) -> AsyncIterator[bytes]:
        check_name(name)
        blob = self._client.get_blob_client(name)
        downloader = await _guard(lambda: blob.download_blob(max_concurrency=1), name)
        try:
            async for chunk in downloader.chunks():
                # The SDK's chunks are its range size (TRANSFER_CHUNK); cut them to chunk_size.
                for start in range(0, len(chunk), chunk_size):
                    yield chunk[start : start + chunk_size]
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise BlobStoreUnavailable(type(exc).__name__) from exc

    async def download(self, name: str, target: Path) -> int:
        """Ranges fetched ``DOWNLOAD_CONCURRENCY`` at a time straight into the file (memory:
        that many ranges); measured 2x faster than one range at a time (docs/decisions.md)."""
        check_name(name)
        blob = self._client.get_blob_client(name)
        downloader = await _guard(lambda: blob.download_blob(max_concurrency=DOWNLOAD_CONCURRENCY), name)
        with target.open("wb") as out:
            try:
                return int(await downloader.readinto(out))
            except (ServiceRequestError, ServiceResponseError) as exc:
                raise BlobStoreUnavailable(type(exc).__name__) from exc

    async def list(self, prefix: str = "") -> AsyncIterator[BlobInfo]:
        check_prefix(prefix)
        try:
            async for item in self._client.list_blobs(name_starts_with=prefix or None):
                yield BlobInfo(str(item.name), int(item.size or 0))
        except ResourceNotFoundError:
            return  # no container yet: nothing in it
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise BlobStoreUnavailable(type(exc).__name__) from exc

    async def stat(self, name: str) -> BlobInfo | None:
        check_name(name)
        blob = self._client.get_blob_client(name)
        try:
            props = await _guard(blob.get_blob_properties, name)
        except BlobNotFound:
            return None
        return BlobInfo(name, int(props.size))

    async def delete(self, name: str) -> bool:
        check_name(name)
        blob = self._client.get_blob_client(name)
        try:
            await _guard(lambda: blob.delete_blob(delete_snapshots="include"), name)
        except BlobNotFound:
            return False
        return True

    async def delete_prefix(self, prefix: str) -> int:
        names = [info.name async for info in self.list(prefix)]
        count = 0
        for name in names:
            count += await self.delete(name)
        return count

    async def move(self, source: str, target: str) -> None:
        """Server-side copy, waited for, then the source deleted (Azure has no rename)."""
        check_name(source)
        check_name(target)
        source_client = self._client.get_blob_client(source)
        target_client = self._client.get_blob_client(target)
        await _guard(lambda: target_client.start_copy_from_url(source_client.url), source)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + COPY_TIMEOUT_SECONDS
        while True:
            props = await _guard(target_client.get_blob_properties, target)
            status = props.copy.status
            if status in (None, "success"):
                break
            if status != "pending" or loop.time() > deadline:
                raise BlobConflict(target, f"could not be copied from {source!r} (copy {status})")
            await asyncio.sleep(COPY_POLL_SECONDS)
        await self.delete(source)


class AzureBlobStorage:
    """An Azure storage account (or Azurite): containers on demand."""

    kind = "azure"

    def __init__(self, client: BlobServiceClient) -> None:
        self._client = client
        self._containers: dict[str, AzureBlobContainer] = {}

    @classmethod
    def connect(cls, url: str, key: str = "") -> AzureBlobStorage:
        """From a connection string, or an account URL with its key (``key``) or a SAS token
        in its query string. Nothing is contacted yet."""
        options: dict[str, Any] = {
            "max_single_put_size": TRANSFER_CHUNK,
            "max_block_size": TRANSFER_CHUNK,
            "max_single_get_size": TRANSFER_CHUNK,
            "max_chunk_get_size": TRANSFER_CHUNK,
        }
        if is_connection_string(url):
            client = BlobServiceClient.from_connection_string(url.strip(), **options)
        else:
            credential = AzureNamedKeyCredential(_account_name(url), key) if key else None
            client = BlobServiceClient(url.strip(), credential=credential, **options)
        return cls(client)

    def describe(self) -> str:
        parts = urlsplit(str(self._client.url))
        return f"Azure Blob Storage {parts.scheme}://{parts.netloc}{parts.path}"  # no query: no SAS

    def container(self, name: str) -> AzureBlobContainer:
        found = self._containers.get(name)
        if found is None:
            client = self._client.get_container_client(check_container(name))
            found = self._containers[name] = AzureBlobContainer(client)
        return found

    async def close(self) -> None:
        await self._client.close()
