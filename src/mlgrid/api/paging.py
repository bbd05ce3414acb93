"""Continuation tokens of the list routes (Azure's ``nextLink`` with a ``skipToken``).

Every list over events, deliveries, dead letters and runs pages by *keyset*: the token names
where the previous page ended (the sort key of its last row), and the next page is one index
range scan from there — as cheap on page 10,000 as on page 1, and stable while rows are added
or retention deletes old ones. The token is opaque to clients (URL-safe base64 of the key
parts joined by ``|``); a token this server did not issue is a 400 naming ``skipToken``.
"""

from __future__ import annotations

import base64
import binascii

from starlette.requests import Request

from mlgrid.errors import invalid

_SEPARATOR = "|"


def encode(*parts: object) -> str:
    """A token for the key ``parts`` (floats as ``repr``, which reads back to the same float)."""
    text = _SEPARATOR.join(repr(p) if isinstance(p, float) else str(p) for p in parts)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(token: str | None, arity: int) -> list[str] | None:
    """The ``arity`` parts of ``token``, or None when there is no token (the first page)."""
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode()).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise not_ours() from exc
    parts = text.split(_SEPARATOR, arity - 1)
    if len(parts) != arity:
        raise not_ours()
    return parts


def not_ours() -> Exception:
    return invalid("skipToken", "is not a paging token issued by this server")


def time_and_int(token: str | None) -> tuple[float, int] | None:
    """A ``(epoch seconds, integer id)`` key: events (published_at, seq)."""
    parts = decode(token, 2)
    if parts is None:
        return None
    try:
        return float(parts[0]), int(parts[1])
    except ValueError as exc:
        raise not_ours() from exc


def time_and_text(token: str | None) -> tuple[float, str] | None:
    """A ``(epoch seconds, text id)`` key: dead letters and runs (created_at, id)."""
    parts = decode(token, 2)
    if parts is None:
        return None
    try:
        return float(parts[0]), parts[1]
    except ValueError as exc:
        raise not_ours() from exc


def integer(token: str | None) -> int | None:
    """An integer key: deliveries (id)."""
    parts = decode(token, 1)
    if parts is None:
        return None
    try:
        return int(parts[0])
    except ValueError as exc:
        raise not_ours() from exc


def next_link(request: Request, token: str) -> str:
    """The request's own URL with ``skipToken`` set to ``token`` (every other parameter kept)."""
    params = dict(request.query_params)
    params.pop("skip", None)  # an offset from an older client's link: the token replaces it
    params["skipToken"] = token
    return str(request.url.replace_query_params(**params))
