"""Azure's sentence for a too-large request, with mlgrid's measurement kept in ``details``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mlgrid.errors import PayloadTooLarge
from mlgrid.events.publish import MAX_REQUEST_BYTES, parse_publish_body


def test_too_large_request_uses_azures_sentence_with_the_limit_in_force() -> None:
    body = b"[" + b" " * MAX_REQUEST_BYTES + b"]"
    with pytest.raises(PayloadTooLarge) as caught:
        parse_publish_body(body, "application/json", {}, input_schema="EventGridSchema", mapping=None,
                           topic_id="/t", now=datetime.now(UTC))
    error = caught.value
    assert error.message.startswith("The maximum size (1048576) has been exceeded. ")
    assert f"{len(body):,} bytes" in error.message
    [detail] = error.details
    assert detail.target == "body"
    assert f"{len(body):,} bytes" in detail.message
