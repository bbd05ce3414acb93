"""One server per data directory: an exclusive lock taken before anything else at start.

Two servers on one data directory would each believe they own it: the second one's start-up
treats the first one's scoring processes as leftovers of a crash and kills them, marks its
running jobs failed, and only then fails on the port. So ``mlgrid serve`` locks
``<data-dir>/server.lock`` (``flock``, exclusive, non-blocking) before it reads or writes
anything else; the lock lives as long as the process (the kernel releases it when the
process ends, however it ends, so a crash never leaves a stale lock behind). The file holds
the owner's pid, for the message the second server exits with:
``another mlgrid server (pid N) is using <dir>``. A second server touches nothing: opening
the file neither truncates nor writes it unless the lock was won.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import MlgridError

__all__ = ["LOCK_FILE", "DataDirectoryInUse", "DataDirectoryLock"]

LOCK_FILE = "server.lock"


class DataDirectoryInUse(MlgridError):
    """Another live server holds the data directory's lock."""

    def __init__(self, pid: str, directory: Path) -> None:
        owner = f"pid {pid}" if pid else "pid unknown"
        super().__init__(message=f"another mlgrid server ({owner}) is using {directory}",
                         code=ErrorCode.DATA_DIRECTORY_IN_USE, status=409)


class DataDirectoryLock:
    """Hold with ``acquire``; released by ``release`` or when the process ends."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.path = self.directory / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``DataDirectoryInUse`` (nothing written in that case)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise DataDirectoryInUse(owner, self.directory) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
