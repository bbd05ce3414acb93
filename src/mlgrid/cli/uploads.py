"""Upload progress for the CLI: a transport that reports how much of each file was sent.

The SDK uploads models and datasets through ``Transport.request(files=...)``. Rather than copy
its multipart logic, the CLI hands the SDK a transport that wraps each file in a reader which
advances a Rich progress bar as httpx streams it; everything else is the SDK's own code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mlgrid.cli.output import console
from mlgrid.client.http import Transport


class ProgressReader:
    """A binary file that reports its read position (httpx seeks back to 0 before sending)."""

    def __init__(self, handle: IO[bytes], report: Callable[[int], None]) -> None:
        self._handle = handle
        self._report = report
        self._position = 0
        self.name = getattr(handle, "name", "upload")

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._position += len(data)
        self._report(self._position)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._handle.seek(offset, whence)
        if whence == os.SEEK_SET:
            self._position = position
            self._report(position)
        return position

    def tell(self) -> int:
        return self._handle.tell()

    def fileno(self) -> int:
        return self._handle.fileno()


def _size(handle: Any) -> int:
    try:
        return os.fstat(handle.fileno()).st_size
    except (AttributeError, OSError):
        return 0


class ProgressTransport(Transport):
    """The transport of ``base`` (same connection) whose file uploads advance ``progress``."""

    def __init__(self, base: Transport, progress: Progress, description: str) -> None:
        super().__init__(base.url, base.token, base.timeout, base.verify)
        self._client = base.client
        self._progress = progress
        self._description = description

    def close(self) -> None:
        """The connection belongs to ``base``."""

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        files = kwargs.get("files")
        if files:
            kwargs["files"] = self._wrap(files)
        return super().request(method, path, **kwargs)

    def _wrap(self, files: Any) -> Any:
        items = list(files.items()) if isinstance(files, Mapping) else list(files)
        handles = [value[1] for _, value in items]
        task = self._progress.add_task(self._description, total=sum(_size(h) for h in handles) or None)
        positions = [0] * len(items)

        def reporter(index: int) -> Callable[[int], None]:
            def report(position: int) -> None:
                positions[index] = position
                self._progress.update(task, completed=sum(positions))

            return report

        wrapped = [
            (field, (value[0], ProgressReader(value[1], reporter(index)), *value[2:]))
            for index, (field, value) in enumerate(items)
        ]
        return dict(wrapped) if isinstance(files, Mapping) else wrapped


@contextmanager
def upload_progress(base: Transport, description: str) -> Iterator[ProgressTransport]:
    """A transport whose uploads show a progress bar on stderr (when it is a terminal)."""
    err = console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress:
        yield ProgressTransport(base, progress, description)
