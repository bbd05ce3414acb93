"""Checking an MLflow webhook's signature (pure).

MLflow signs ``"{delivery_id}.{timestamp}.{raw body}"`` with HMAC-SHA256 under the webhook's
secret and sends ``X-MLflow-Signature: v1,<base64 digest>``, ``X-MLflow-Delivery-Id`` and
``X-MLflow-Timestamp`` (unix seconds). A request is accepted when the digest matches (compared
in constant time) and the timestamp is within ``tolerance`` seconds of now, so a captured
request cannot be replayed later; MLflow's retries resend the same timestamp, which stays
inside the tolerance for the few seconds they take.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import Unauthorized, invalid

DEFAULT_TOLERANCE_SECONDS = 300.0


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    payload = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: str,
    *,
    delivery_id: str | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Raise 400 for missing/malformed headers, 401 for a wrong signature or a stale timestamp."""
    if not delivery_id or len(delivery_id) > 64:
        raise invalid("X-MLflow-Delivery-Id", "header is required (at most 64 characters)")
    if not timestamp:
        raise invalid("X-MLflow-Timestamp", "header is required")
    try:
        sent = int(timestamp)
    except ValueError:
        raise invalid("X-MLflow-Timestamp", "must be unix seconds") from None
    if not signature:
        raise Unauthorized(
            "X-MLflow-Signature is required: the connector has a webhookSecret",
            code=ErrorCode.INVALID_SIGNATURE,
        )
    expected = sign(secret, delivery_id, timestamp, body)
    candidates = [part.strip() for part in signature.split(" ") if part.strip()]
    if not any(hmac.compare_digest(expected.encode(), c.encode()) for c in candidates):
        raise Unauthorized("X-MLflow-Signature does not match", code=ErrorCode.INVALID_SIGNATURE)
    if abs(now - sent) > tolerance:
        raise Unauthorized(
            f"X-MLflow-Timestamp is more than {tolerance:g} s away from the server's clock",
            code=ErrorCode.STALE_WEBHOOK,
        )
