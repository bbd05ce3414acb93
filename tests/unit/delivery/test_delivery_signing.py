"""Standard Webhooks signing, checked against the reference library."""

from __future__ import annotations

import base64
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from mlgrid.delivery.signing import generate_signing_secret, sign, validate_signing_secret, verify
from mlgrid.errors import InvalidField

FIELD = "properties.destination.properties.signingSecret"
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def headers_for(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def test_signature_verifies_with_standardwebhooks() -> None:
    body = b'[{"id":"e1","data":{"x":1}}]'
    now = int(time.time())
    signature = sign(SECRET, "e1", now, body)
    assert signature.startswith("v1,")
    assert Webhook(SECRET).verify(body, headers_for("e1", now, signature)) == [{"id": "e1", "data": {"x": 1}}]


def test_signature_covers_id_timestamp_and_body() -> None:
    body = b'{"a":1}'
    now = int(time.time())
    signature = sign(SECRET, "e1", now, body)
    webhook = Webhook(SECRET)
    with pytest.raises(WebhookVerificationError):
        webhook.verify(b'{"a":2}', headers_for("e1", now, signature))
    with pytest.raises(WebhookVerificationError):
        webhook.verify(body, headers_for("e2", now, signature))
    with pytest.raises(WebhookVerificationError):
        webhook.verify(body, headers_for("e1", now - 1, signature))


def test_signature_is_the_documented_hmac() -> None:
    import hashlib
    import hmac

    key = bytes(range(32))
    expected = base64.b64encode(hmac.new(key, b"msg_1.1700000000.hello", hashlib.sha256).digest()).decode()
    assert sign(SECRET, "msg_1", 1700000000, b"hello") == f"v1,{expected}"


@settings(max_examples=50)
@given(body=st.binary(max_size=2048).map(lambda b: b.hex().encode()), msg_id=st.uuids().map(str))
def test_any_body_verifies(body: bytes, msg_id: str) -> None:
    secret = generate_signing_secret()
    now = int(time.time())
    signature = sign(secret, msg_id, now, body)
    Webhook(secret).verify(body, headers_for(msg_id, now, signature), json_parse=False)
    assert verify(secret, msg_id, now, body, signature)


def test_verify_accepts_one_of_several_signatures() -> None:
    signature = sign(SECRET, "m", 5, b"x")
    assert verify(SECRET, "m", 5, b"x", f"v1,AAAA {signature}")
    assert not verify(SECRET, "m", 5, b"y", signature)
    assert not verify(SECRET, "m", 5, b"x", signature.replace("v1,", "v2,"))


def test_generated_secrets_are_valid_and_distinct() -> None:
    first, second = generate_signing_secret(), generate_signing_secret()
    assert first != second
    assert validate_signing_secret(first) == first
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32


def test_unpadded_secret_is_accepted() -> None:
    secret = "whsec_" + base64.b64encode(bytes(range(25))).decode().rstrip("=")
    assert validate_signing_secret(secret) == secret
    now = int(time.time())
    signature = sign(secret, "id", now, b"{}")
    Webhook(secret).verify(b"{}", headers_for("id", now, signature))


@pytest.mark.parametrize(
    "value",
    [
        None,
        42,
        "",
        "whsec_",
        base64.b64encode(bytes(32)).decode(),  # no prefix
        "whsec_!!!notbase64!!!",
        "whsec_" + base64.b64encode(bytes(16)).decode(),  # too short
        "whsec_" + base64.b64encode(bytes(65)).decode(),  # too long
        " " + SECRET,
    ],
)
def test_invalid_secrets_name_the_field(value: object) -> None:
    with pytest.raises(InvalidField) as caught:
        validate_signing_secret(value)
    assert caught.value.field_name == FIELD
    assert FIELD in caught.value.message
    assert caught.value.status == 400


def test_error_never_echoes_the_secret() -> None:
    bad = "whsec_" + base64.b64encode(b"short-secret").decode()
    with pytest.raises(InvalidField) as caught:
        validate_signing_secret(bad)
    assert bad not in caught.value.message


def test_sign_refuses_a_malformed_secret() -> None:
    with pytest.raises(ValueError):
        sign("nope", "id", 1, b"")
