"""Principal tokens and topic keys."""

from __future__ import annotations

import base64
import hashlib

from mlgrid.auth.tokens import (
    TOKEN_PREFIX,
    hash_token,
    looks_like_token,
    new_token,
    new_topic_key,
    token_lookup_key,
    token_matches,
)


def test_new_token_has_prefix_and_256_random_bits() -> None:
    token = new_token()
    assert token.startswith("mlg_")
    body = token[len(TOKEN_PREFIX) :]
    assert len(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))) == 32
    assert set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_new_tokens_differ() -> None:
    assert len({new_token() for _ in range(100)}) == 100


def test_hash_is_prefixed_sha256_hex_and_deterministic() -> None:
    token = "mlg_example"
    assert hash_token(token) == "sha256:" + hashlib.sha256(b"mlg_example").hexdigest()
    assert hash_token(token) == hash_token(token)
    assert hash_token(token) != hash_token(token + "x")


def test_lookup_key_is_the_stored_hash() -> None:
    token = new_token()
    assert token_lookup_key(token) == hash_token(token)


def test_token_matches_its_hash_only() -> None:
    token = new_token()
    stored = hash_token(token)
    assert token_matches(token, stored)
    assert not token_matches(new_token(), stored)
    assert not token_matches(token, "")


def test_hash_of_unknown_algorithm_never_matches() -> None:
    token = new_token()
    bare_hex = hashlib.sha256(token.encode()).hexdigest()
    assert not token_matches(token, bare_hex)
    assert not token_matches(token, "md5:" + bare_hex)


def test_looks_like_token() -> None:
    assert looks_like_token(new_token())
    assert not looks_like_token("mlg_short")
    assert not looks_like_token("x" * 47)


def test_topic_key_is_standard_base64_of_32_bytes_like_azure() -> None:
    key = new_topic_key()
    assert len(key) == 44
    assert len(base64.b64decode(key, validate=True)) == 32
    assert new_topic_key() != key
