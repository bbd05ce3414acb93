"""One If-Match rule for every resource: strong comparison, ``*`` or no header checks nothing."""

from __future__ import annotations

import pytest

from mlgrid.errors import PreconditionFailed
from mlgrid.etags import new_etag, parse_if_match, precondition_fails, require_match


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("*", None), (" * ", None), ('"abc"', "abc"), ("abc", "abc"), (' "abc" ', "abc"),
     ('W/"abc"', 'W/"abc')],
)
def test_parse_if_match(header: str | None, expected: str | None) -> None:
    assert parse_if_match(header) == expected


def test_the_current_tag_matches_quoted_or_bare() -> None:
    etag = new_etag()
    for header in (f'"{etag}"', etag):
        assert not precondition_fails(parse_if_match(header), etag)


def test_a_weak_tag_never_matches() -> None:
    """RFC 9110 §13.1.1: If-Match uses the strong comparison."""
    etag = new_etag()
    assert precondition_fails(parse_if_match(f'W/"{etag}"'), etag)


def test_a_stale_tag_or_a_missing_object_fails() -> None:
    assert precondition_fails("old", new_etag())
    assert precondition_fails("anything", None)
    assert not precondition_fails(None, None)


def test_require_match_raises_the_412_with_the_message() -> None:
    with pytest.raises(PreconditionFailed) as raised:
        require_match("old", "new", "If-Match does not match the topic's current etag")
    assert raised.value.status == 412
    assert str(raised.value) == "If-Match does not match the topic's current etag"
    require_match(None, "new", "unused")
    require_match("new", "new", "unused")


def test_new_etags_differ() -> None:
    assert len({new_etag() for _ in range(100)}) == 100
