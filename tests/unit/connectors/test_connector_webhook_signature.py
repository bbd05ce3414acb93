"""MLflow's webhook signature: what MLflow signs verifies; anything altered or stale does not."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlgrid.connectors.webhook_signature import sign, verify
from mlgrid.errors import InvalidField, Unauthorized

NOW = 1_800_000_000.0


def mlflow_signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """Written out as MLflow documents it, independently of ``sign``."""
    payload = f"{delivery_id}.{timestamp}.{body.decode()}"
    digest = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@given(secret=st.text(min_size=1, max_size=40), body=st.text(max_size=200), skew=st.integers(-300, 300))
def test_what_mlflow_signs_verifies(secret: str, body: str, skew: int) -> None:
    timestamp = str(int(NOW) + skew)
    signature = mlflow_signature(secret, "d-1", timestamp, body.encode())
    assert signature == sign(secret, "d-1", timestamp, body.encode())
    verify(secret, delivery_id="d-1", timestamp=timestamp, signature=signature, body=body.encode(), now=NOW)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"body": b'{"x": 2}'}, Unauthorized),
        ({"delivery_id": "d-2"}, Unauthorized),
        ({"secret": "other"}, Unauthorized),
        ({"timestamp": str(int(NOW) - 301)}, Unauthorized),
        ({"signature": None}, Unauthorized),
        ({"delivery_id": None}, InvalidField),
        ({"timestamp": "yesterday"}, InvalidField),
    ],
)
def test_altered_or_stale_is_refused(change: dict[str, object], error: type[Exception]) -> None:
    good: dict[str, object] = {
        "secret": "s3cret",
        "delivery_id": "d-1",
        "timestamp": str(int(NOW)),
        "body": b'{"x": 1}',
    }
    good["signature"] = sign("s3cret", "d-1", str(int(NOW)), b'{"x": 1}')
    args = {**good, **change}
    if "timestamp" in change and change["timestamp"] != "yesterday" and "signature" not in change:
        args["signature"] = sign("s3cret", "d-1", str(change["timestamp"]), b'{"x": 1}')
    with pytest.raises(error):
        verify(
            str(args["secret"]),
            delivery_id=args["delivery_id"],  # type: ignore[arg-type]
            timestamp=args["timestamp"],  # type: ignore[arg-type]
            signature=args["signature"],  # type: ignore[arg-type]
            body=args["body"],  # type: ignore[arg-type]
            now=NOW,
        )
