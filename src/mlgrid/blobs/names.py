"""Blob names, checked once where they enter the blob store.

A name is a ``/``-separated relative path: no empty, ``.`` or ``..`` segment (so the local
backend can never step outside its directory and Azure never sees a name it would normalise),
no leading ``/``, no segment starting with ``.partial-`` (the local backend's files in
progress), no backslash or control character, at most ``MAX_NAME`` characters (Azure's
limit is 1024) and ``MAX_SEGMENTS`` segments (Azure's is 254). Services build names from
already validated parts (workspace keys, run ids, artifact paths), so a bad name here is a bug
or an attack: the error says which name and why, and nothing is written.
"""

from __future__ import annotations

from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import BadRequest

__all__ = [
    "MAX_NAME",
    "MAX_SEGMENTS",
    "PARTIAL_PREFIX",
    "InvalidBlobName", "check_container", "check_name", "check_prefix"]

MAX_NAME = 1024
MAX_SEGMENTS = 254
#: Files being written by the local backend are named so (and never listed).
PARTIAL_PREFIX = ".partial-"


class InvalidBlobName(BadRequest):
    """A blob, prefix or container name the store refuses (nothing was read or written)."""


def _refuse(name: str, reason: str) -> InvalidBlobName:
    return InvalidBlobName(f"invalid blob name {name!r}: {reason}", code=ErrorCode.INVALID_REQUEST)


def check_name(name: object) -> str:
    """``name`` if it is a valid blob name, else :class:`InvalidBlobName`."""
    if not isinstance(name, str) or not name:
        raise _refuse(str(name), "must be a non-empty string")
    if len(name) > MAX_NAME:
        raise _refuse(name[:40] + "...", f"longer than {MAX_NAME} characters")
    if name.startswith("/"):
        raise _refuse(name, "must be relative, not an absolute path")
    if "\\" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise _refuse(name, "must not contain backslashes or control characters")
    segments = name.split("/")
    if len(segments) > MAX_SEGMENTS:
        raise _refuse(name, f"more than {MAX_SEGMENTS} segments")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise _refuse(name, "must not contain empty, '.' or '..' segments")
        if segment.startswith(PARTIAL_PREFIX):
            raise _refuse(name, f"segments starting with {PARTIAL_PREFIX!r} are the store's own")
    return name


def check_prefix(prefix: str) -> str:
    """A listing prefix: empty (everything), or a name, optionally ending with ``/``."""
    if prefix == "":
        return prefix
    check_name(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def check_container(name: str) -> str:
    """Azure's container rule: 3-63 lower-case letters, digits and single hyphens, starting and
    ending with a letter or digit (the local backend keeps the same rule, so a name that works
    on one works on the other)."""
    ok = (
        3 <= len(name) <= 63
        and all(c.isascii() and (c.islower() or c.isdigit() or c == "-") for c in name)
        and name[0] != "-"
        and name[-1] != "-"
        and "--" not in name
    )
    if not ok:
        raise InvalidBlobName(
            f"invalid container name {name!r}: 3-63 lower-case letters, digits and single hyphens",
            code=ErrorCode.INVALID_REQUEST,
        )
    return name
