"""Standard Webhooks signatures for push deliveries (SPEC §6.1).

A subscription may carry a write-only ``signingSecret`` of the form ``whsec_<base64 key>``.
Every request to its endpoint then carries ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, which any
Standard Webhooks library verifies, so receivers need no mlgrid-specific code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from mlgrid.errors import invalid

__all__ = [
    "MAX_SECRET_BYTES",
    "MIN_SECRET_BYTES",
    "SECRET_FIELD",
    "SECRET_PREFIX",
    "generate_signing_secret",
    "sign",
    "validate_signing_secret",
    "verify",
]

SECRET_PREFIX = "whsec_"
SECRET_FIELD = "properties.destination.properties.signingSecret"
#: The Standard Webhooks specification asks for keys of 24 to 64 bytes.
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
_GENERATED_SECRET_BYTES = 32


def _decode_key(secret: str) -> bytes | None:
    """The raw key of ``whsec_<base64>``, or None when it is not that shape.

    Padding may be omitted (some generators strip it); anything that is not base64 is refused
    instead of being silently skipped, as lenient decoders do.
    """
    if not secret.startswith(SECRET_PREFIX):
        return None
    encoded = secret[len(SECRET_PREFIX) :]
    if not encoded or len(encoded) % 4 == 1:
        return None
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def validate_signing_secret(value: object) -> str:
    """Check a ``signingSecret`` from an API body and return it unchanged.

    Raises ``InvalidField`` naming ``properties.destination.properties.signingSecret`` (never
    echoing the value: it is a secret).
    """
    if not isinstance(value, str):
        raise invalid(SECRET_FIELD, "must be a string of the form whsec_<base64>")
    key = _decode_key(value.strip())
    if key is None or value != value.strip():
        raise invalid(SECRET_FIELD, "must be 'whsec_' followed by a base64-encoded key")
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise invalid(
            SECRET_FIELD,
            f"the key must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes once base64-decoded "
            f"(got {len(key)})",
        )
    return value


def generate_signing_secret() -> str:
    """A new random secret (32 bytes), for users who ask the server to pick one."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_GENERATED_SECRET_BYTES)).decode("ascii")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one request: ``v1,<base64 HMAC-SHA256>``.

    The signed content is ``f"{msg_id}.{timestamp}."`` followed by the exact body bytes.
    """
    key = _decode_key(secret)
    if key is None:
        raise ValueError("not a whsec_ signing secret")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify(secret: str, msg_id: str, timestamp: int, body: bytes, signature_header: str) -> bool:
    """True if any ``v1`` signature in ``signature_header`` (space-separated) matches.

    For mlgrid's own consumer helpers and tests; the freshness of ``timestamp`` is the
    caller's policy, since this module reads no clock.
    """
    expected = sign(secret, msg_id, timestamp, body).encode("ascii")
    for candidate in signature_header.split():
        encoded = candidate.encode("ascii", "replace")
        if candidate.startswith("v1,") and hmac.compare_digest(encoded, expected):
            return True
    return False
