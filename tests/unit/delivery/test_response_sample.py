"""What is kept of a failing endpoint's answer: bounded headers and body prefix, as JSON."""

from __future__ import annotations

import json

from mlgrid.delivery.webhook import (
    RESPONSE_BODY_KEPT,
    RESPONSE_HEADER_VALUE_KEPT,
    RESPONSE_HEADERS_KEPT,
    response_sample,
)


def test_small_answers_are_kept_whole() -> None:
    sample = json.loads(response_sample([("Content-Type", "text/plain")], "nope ü".encode()))
    assert sample == {"headers": {"Content-Type": "text/plain"}, "body": "nope ü", "truncated": False}


def test_large_answers_are_bounded() -> None:
    headers = [(f"X-{i}", "v" * 2000) for i in range(100)]
    sample = json.loads(response_sample(headers, b"x" * (RESPONSE_BODY_KEPT + 1)))
    assert len(sample["headers"]) == RESPONSE_HEADERS_KEPT
    assert all(len(v) == RESPONSE_HEADER_VALUE_KEPT for v in sample["headers"].values())
    assert len(sample["body"]) == RESPONSE_BODY_KEPT and sample["truncated"] is True
    # A body cut inside a multi-byte character is still text.
    assert json.loads(response_sample([], "é".encode() * RESPONSE_BODY_KEPT))["body"]
