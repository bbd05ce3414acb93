"""The blob-store contract (``mlgrid.blobs.base``), run against both backends: the local
directory and Azure Blob Storage (Azurite, the real Blob API, started by the suite)."""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.support.azurite import ACCOUNT_KEY, Azurite, azurite_fixture  # noqa: F401 (session fixture)

from mlgrid.blobs import BlobConflict, BlobContainer, BlobNotFound, BlobStoreUnavailable, InvalidBlobName
from mlgrid.blobs.azure import AzureBlobStorage
from mlgrid.blobs.local import LocalBlobStorage

MB = 1024 * 1024


@pytest.fixture(params=["local", "azure"])
async def container(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobContainer]:
    name = "contract-" + uuid.uuid4().hex[:12]
    if request.param == "local":
        storage: LocalBlobStorage | AzureBlobStorage = LocalBlobStorage(tmp_path / "blobs")
    else:
        azurite: Azurite = request.getfixturevalue("azurite")
        storage = AzureBlobStorage.connect(azurite.connection_string)
    try:
        yield storage.container(name)
    finally:
        await storage.close()


async def _read(container: BlobContainer, name: str) -> bytes:
    return b"".join([chunk async for chunk in container.open(name)])


async def _names(container: BlobContainer, prefix: str = "") -> set[str]:
    return {info.name async for info in container.list(prefix)}


async def test_put_read_stat_list_and_delete(container: BlobContainer, tmp_path: Path) -> None:
    assert await _names(container) == set()  # a container that does not exist yet is empty
    info = await container.put_bytes("runs/r1/artifacts/model.pkl", b"weights")
    assert (info.name, info.size) == ("runs/r1/artifacts/model.pkl", 7)
    await container.put_bytes("runs/r1/artifacts/logs/job.log", b"hello\n")
    await container.put_bytes("runs/r10/x", b"")
    source = tmp_path / "data.csv"
    source.write_bytes(b"a,b\n1,2\n")
    await container.put_file("datasets/d1/data.csv", source)
    assert source.exists()  # copied, not moved

    assert await _read(container, "runs/r1/artifacts/model.pkl") == b"weights"
    assert await container.stat("runs/r10/x") == type(info)("runs/r10/x", 0)
    assert await container.stat("runs/r1/missing") is None
    in_r1 = {"runs/r1/artifacts/model.pkl", "runs/r1/artifacts/logs/job.log"}
    assert await _names(container, "runs/r1/") == in_r1
    assert await _names(container, "runs/r1") == {  # a string prefix, as Azure's name_starts_with
        "runs/r1/artifacts/model.pkl",
        "runs/r1/artifacts/logs/job.log",
        "runs/r10/x",
    }
    assert await _names(container, "datasets/") == {"datasets/d1/data.csv"}
    target = tmp_path / "copy.csv"
    assert await container.download("datasets/d1/data.csv", target) == 8
    assert target.read_bytes() == b"a,b\n1,2\n"

    await container.put_bytes("runs/r1/artifacts/model.pkl", b"new weights")  # replaced
    assert await _read(container, "runs/r1/artifacts/model.pkl") == b"new weights"

    assert await container.delete("runs/r1/artifacts/model.pkl") is True
    assert await container.delete("runs/r1/artifacts/model.pkl") is False
    with pytest.raises(BlobNotFound):
        await _read(container, "runs/r1/artifacts/model.pkl")
    assert await container.delete_prefix("runs/") == 2
    assert await _names(container) == {"datasets/d1/data.csv"}


async def test_move_renames_within_the_container(container: BlobContainer) -> None:
    await container.put_bytes("a/one", b"1")
    await container.move("a/one", "b/two")
    assert await _names(container) == {"b/two"}
    assert await _read(container, "b/two") == b"1"
    with pytest.raises(BlobNotFound):
        await container.move("a/one", "c")


async def test_put_file_with_move_gives_the_file_up(container: BlobContainer, tmp_path: Path) -> None:
    source = tmp_path / "log"
    source.write_bytes(b"x" * 1000)
    await container.put_file("logs/job.log", source, move=True)
    assert not source.exists()
    assert await _read(container, "logs/job.log") == b"x" * 1000


BAD_NAMES = [
    "",
    "/absolute/x",
    "../escape",
    "a/../../escape",
    "a//b",
    "a/./b",
    "a/",
    "a\\b",
    "a\nb",
    "x" * 1025,
    "/".join(["s"] * 255),
    "a/.partial-x",
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=range(len(BAD_NAMES)))
async def test_bad_names_are_refused_and_nothing_is_written(
    container: BlobContainer, tmp_path: Path, name: str
) -> None:
    with pytest.raises(InvalidBlobName) as caught:
        await container.put_bytes(name, b"x")
    assert "invalid blob name" in str(caught.value)
    source = tmp_path / "f"
    source.write_bytes(b"x")
    for call in (
        container.put_file(name, source),
        container.stat(name),
        container.delete(name),
        container.download(name, tmp_path / "out"),
        container.move(name, "ok"),
        container.move("ok", name),
    ):
        with pytest.raises(InvalidBlobName):
            await call
    with pytest.raises(InvalidBlobName):
        await _read(container, name)
    assert await _names(container) == set()


async def test_a_reader_never_sees_a_half_written_blob(container: BlobContainer) -> None:
    """While a put streams (paused half-way), the blob is neither listed nor readable; a
    replaced blob stays the old one until the new one is complete."""
    await container.put_bytes("models/m/1/old", b"old content")
    half_written = asyncio.Event()
    finish = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(6):  # more than one upload block on Azure (4 MB each)
            yield b"n" * MB
        half_written.set()
        await finish.wait()
        for _ in range(6):
            yield b"n" * MB

    async def replacing() -> AsyncIterator[bytes]:
        yield b"new " * MB
        half_written.set()
        await finish.wait()
        yield b"tail"

    writer = asyncio.create_task(container.put("models/m/1/new", body()))
    await asyncio.wait_for(half_written.wait(), 60)
    assert await _names(container, "models/") == {"models/m/1/old"}
    assert await container.stat("models/m/1/new") is None
    with pytest.raises(BlobNotFound):
        await _read(container, "models/m/1/new")
    finish.set()
    assert (await writer).size == 12 * MB
    assert await _names(container, "models/") == {"models/m/1/old", "models/m/1/new"}

    half_written.clear()
    finish.clear()
    writer = asyncio.create_task(container.put("models/m/1/old", replacing()))
    await asyncio.wait_for(half_written.wait(), 60)
    assert await _read(container, "models/m/1/old") == b"old content"
    old = await container.stat("models/m/1/old")
    assert old is not None and old.size == len(b"old content")
    finish.set()
    await writer
    assert await _read(container, "models/m/1/old") == b"new " * MB + b"tail"


async def test_a_large_blob_streams_both_ways_in_bounded_memory(container: BlobContainer) -> None:
    """64 MB up from a stream and back down in chunks: Python allocations peak at a few
    chunks (tracemalloc), never the blob."""
    size = 64 * MB
    expected = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        for index in range(size // MB):
            chunk = bytes([index % 251]) * MB
            expected.update(chunk)
            yield chunk

    tracemalloc.start()
    try:
        info = await container.put("big/blob.bin", body())
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        received = hashlib.sha256()
        count = 0
        async for chunk in container.open("big/blob.bin"):
            received.update(chunk)
            count += len(chunk)
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.size == size == count
    assert received.hexdigest() == expected.hexdigest()
    assert upload_peak < 24 * MB, upload_peak
    assert download_peak < 24 * MB, download_peak


async def test_local_directories_cannot_hold_a_blob_and_a_folder_of_one_name(tmp_path: Path) -> None:
    """Only the local backend has directories: ``a`` beside ``a/b`` is a ``BlobConflict``
    (the workspace refuses that pair for every backend, from its database)."""
    container = LocalBlobStorage(tmp_path).container("files")
    await container.put_bytes("a/b", b"1")
    with pytest.raises(BlobConflict):
        await container.put_bytes("a", b"2")
    await container.put_bytes("c", b"3")
    with pytest.raises(BlobConflict):
        await container.put_bytes("c/d", b"4")
    assert await _names(container) == {"a/b", "c"}
    await container.delete("a/b")  # the emptied directory goes too
    await container.put_bytes("a", b"5")
    assert await _names(container) == {"a", "c"}


async def test_an_account_url_with_its_key_reaches_the_same_account(azurite: Azurite) -> None:
    """``--blob-url`` as an account URL plus ``--blob-key``: the same account as through the
    connection string; a wrong key is refused by the service, not silently ignored."""
    name = "keyed-" + uuid.uuid4().hex[:12]
    keyed = AzureBlobStorage.connect(azurite.account_url, ACCOUNT_KEY)
    by_string = AzureBlobStorage.connect(azurite.connection_string)
    wrong = AzureBlobStorage.connect(azurite.account_url, "d3Jvbmcga2V5")
    try:
        await keyed.container(name).put_bytes("a/b.txt", b"hello")
        assert await _read(by_string.container(name), "a/b.txt") == b"hello"
        assert "d3Jvbmcga2V5" not in keyed.describe() and ACCOUNT_KEY not in keyed.describe()
        with pytest.raises(BlobStoreUnavailable) as refused:  # a 503: the server's configuration
            await wrong.container(name).put_bytes("a/c.txt", b"x")
        assert refused.value.status == 503 and "403" in str(refused.value)
        assert "d3Jvbmcga2V5" not in str(refused.value)
    finally:
        for storage in (keyed, by_string, wrong):
            await storage.close()
