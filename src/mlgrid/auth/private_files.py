"""Files only the server's user may read: ``secret.key`` and ``admin.token`` of the data dir.

Both are written atomically (a temporary file in the same directory, flushed to disk, then
moved into place) so a crash never leaves a half-written key, and with mode 0600 from the
first byte: the temporary file is opened with that mode rather than chmod-ed afterwards, so
there is no moment at which another user could open it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

PRIVATE_FILE_MODE = 0o600


def create_private_file(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` with mode 0600 unless it exists; True if this call created it.

    Creation is atomic *and* exclusive: two processes starting on the same data directory at
    once end up with one file, and the loser gets False and must read the winner's content
    (a key that silently replaced another would make everything sealed with the first unreadable).
    """
    temporary = _write_temporary(path, data)
    try:
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        except OSError:
            # A filesystem without hard links: fall back to an exclusive create in place. A reader
            # racing this one write could see a short file; only exotic filesystems take this path.
            return _create_exclusive_in_place(path, data)
        _sync_directory(path.parent)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def write_private_file(path: Path, data: bytes) -> None:
    """Create or replace ``path`` with ``data``, mode 0600, atomically (readers see old or new)."""
    temporary = _write_temporary(path, data)
    try:
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    _sync_directory(path.parent)


def _write_temporary(path: Path, data: bytes) -> Path:
    """Write ``data`` to a new 0600 file beside ``path`` and flush it to disk; return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    # The umask may have removed bits from the mode given to os.open, never added any; set it
    # exactly anyway so the file is 0600 whatever umask the server runs under.
    os.chmod(temporary, PRIVATE_FILE_MODE)
    return temporary


def _create_exclusive_in_place(path: Path, data: bytes) -> bool:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, PRIVATE_FILE_MODE)
    return True


def _sync_directory(directory: Path) -> None:
    """Flush the directory entry so the new name survives a power cut (best effort: not on Windows)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
