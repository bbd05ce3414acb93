"""ETags and ``If-Match``: one rule for every resource (SPEC §9).

Every object the API writes carries an opaque ``etag`` that changes with each change; a write
with ``If-Match`` goes ahead only when the header names the current one. The comparison is
RFC 9110's *strong* comparison, which ``If-Match`` requires (§13.1.1): the tag, quoted or bare,
must equal the current etag, and a weak tag (``W/"..."``) never matches. ``*`` (or no header)
asks for no check. Topics, event subscriptions and every workspace object use these functions.
"""

from __future__ import annotations

import uuid

from mlgrid.errors import PreconditionFailed


def new_etag() -> str:
    """A fresh version tag: opaque, changes with every change of the object."""
    return uuid.uuid4().hex


def parse_if_match(header: str | None) -> str | None:
    """The tag an ``If-Match`` header asks for (outer quotes removed), or None for no check."""
    if header is None or header.strip() == "*":
        return None
    return header.strip().strip('"')


def precondition_fails(if_match: str | None, etag: str | None) -> bool:
    """True when a write must be refused: a tag was asked for and it is not ``etag``.

    ``etag`` None means the object does not exist, which no tag matches.
    """
    if if_match is None:
        return False
    if etag is None or if_match.startswith("W/"):
        return True
    return if_match.strip('"') != etag


def require_match(if_match: str | None, etag: str | None, message: str) -> None:
    """Raise the 412 (``message`` says of what) when :func:`precondition_fails`."""
    if precondition_fails(if_match, etag):
        raise PreconditionFailed(message)
