"""Upload and download of one 100 MB model file: local directory, azure-storage-blob, obstore.

Figures for the blob-storage decision (docs/decisions.md, 2026-12-07): the same file goes up
from disk and comes back down to disk, through

* ``local``  — mlgrid's local backend (``mlgrid.blobs.local``): a copy into the data directory;
* ``azure``  — mlgrid's Azure backend (``mlgrid.blobs.azure``, ``azure-storage-blob``'s async
  client, 4 MB blocks, 2 in flight) against Azurite;
* ``obstore``— ``obstore`` (Rust ``object_store``) against the same Azurite, its defaults
  (5 MB parts, 12 in flight; 10 MB read chunks).

Azurite runs on this machine (the installed ``.azurite/``), so the figures are the client's
CPU cost plus the emulator's, not a network's; each transfer is run ``--repeat`` times and the
median is reported. Run: ``python benchmarks/blob_transfer.py [--size-mb 100] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.support.azurite import ACCOUNT, ACCOUNT_KEY, find_azurite  # noqa: E402
from tests.support.server import free_port  # noqa: E402

from mlgrid.blobs.azure import AzureBlobStorage  # noqa: E402
from mlgrid.blobs.local import LocalBlobStorage  # noqa: E402

MB = 1024 * 1024


async def timed(step: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await step()
    return time.perf_counter() - started


async def measure_mlgrid(
    storage: LocalBlobStorage | AzureBlobStorage, source: Path, work: Path
) -> tuple[float, float]:
    container = storage.container("bench-" + uuid.uuid4().hex[:8])
    target = work / f"down-{uuid.uuid4().hex}"
    up = await timed(lambda: container.put_file("models/m/1/model.bin", source))
    down = await timed(lambda: container.download("models/m/1/model.bin", target))
    assert target.stat().st_size == source.stat().st_size
    target.unlink()
    return up, down


async def measure_obstore(port: int, source: Path, work: Path) -> tuple[float, float]:
    import obstore
    from obstore.store import AzureStore

    container = "bench-" + uuid.uuid4().hex[:8]
    # obstore does not create containers: the SDK does it once, outside the timing.
    setup = AzureBlobStorage.connect(connection_string(port))
    await setup.container(container).put_bytes("created", b"")
    await setup.close()
    store = AzureStore(
        container_name=container,
        config={
            "account_name": ACCOUNT,
            "account_key": ACCOUNT_KEY,
            "endpoint": f"http://127.0.0.1:{port}/{ACCOUNT}",
        },
        client_options={"allow_http": True},
    )
    target = work / f"down-{uuid.uuid4().hex}"
    up = await timed(lambda: obstore.put_async(store, "models/m/1/model.bin", source))

    async def download() -> None:
        result = await obstore.get_async(store, "models/m/1/model.bin")
        with target.open("wb") as out:
            async for chunk in result.stream():
                out.write(chunk)

    down = await timed(download)
    assert target.stat().st_size == source.stat().st_size
    target.unlink()
    return up, down


def connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )


async def run(size_mb: int, repeat: int, work: Path, port: int) -> dict[str, tuple[float, float]]:
    source = work / "model.bin"
    with source.open("wb") as out:
        for _ in range(size_mb):
            out.write(os.urandom(MB))
    results: dict[str, list[tuple[float, float]]] = {"local": [], "azure-storage-blob": [], "obstore": []}
    for _ in range(repeat):
        local = LocalBlobStorage(work / "local")
        results["local"].append(await measure_mlgrid(local, source, work))
        azure = AzureBlobStorage.connect(connection_string(port))
        results["azure-storage-blob"].append(await measure_mlgrid(azure, source, work))
        await azure.close()
        results["obstore"].append(await measure_obstore(port, source, work))
    return {
        name: (statistics.median(u for u, _ in runs), statistics.median(d for _, d in runs))
        for name, runs in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    binary = find_azurite()
    if binary is None:
        sys.exit("Azurite is not installed: run `make azurite`")
    work = Path(tempfile.mkdtemp(prefix="mlgrid-blob-bench-"))
    port = free_port()
    log = (work / "azurite.log").open("ab")
    azurite = subprocess.Popen(
        [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(work / "azurite"),
         "--skipApiVersionCheck", "--loose"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(3)
        figures = asyncio.run(run(args.size_mb, args.repeat, work, port))
    finally:
        azurite.terminate()
        azurite.wait(timeout=10)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.size_mb} MB file, median of {args.repeat}:")
    print(f"{'backend':<20} {'upload s':>9} {'MB/s':>7} {'download s':>11} {'MB/s':>7}")
    for name, (up, down) in figures.items():
        print(f"{name:<20} {up:9.2f} {args.size_mb / up:7.0f} {down:11.2f} {args.size_mb / down:7.0f}")


if __name__ == "__main__":
    main()
