"""Secrets at rest: sealing, tampering, the key file and the key setting."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlgrid.auth.private_files import create_private_file, write_private_file
from mlgrid.auth.secretbox import (
    SecretBox,
    SecretKeyError,
    SecretUnreadable,
    encode_key,
    is_sealed,
    key_from_setting,
    load_or_create_key,
    new_key,
)
from mlgrid.errors import InvalidField

KEY = bytes(range(32))
BOX = SecretBox(KEY)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask that would leave files world-readable, to prove the mode is set explicitly."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@given(st.text())
def test_seal_open_round_trip(plaintext: str) -> None:
    sealed = BOX.seal(plaintext)
    assert is_sealed(sealed)
    assert BOX.open(sealed) == plaintext


def test_sealed_value_hides_plaintext_and_differs_each_time() -> None:
    url = "https://example.org/hook?code=secret"
    first, second = BOX.seal(url), BOX.seal(url)
    assert first != second
    assert "secret" not in first
    assert first.startswith(f"v1.{BOX.key_id}.")


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_tampered_payload_is_refused(position: int) -> None:
    sealed = BOX.seal("https://example.org/hook?code=secret")
    header, payload = sealed.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw[position] ^= 0x01
    altered = header + "." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(SecretUnreadable, match="integrity check"):
        BOX.open(altered)


def test_truncated_payload_is_refused() -> None:
    sealed = BOX.seal("x")
    with pytest.raises(SecretUnreadable, match="too short"):
        BOX.open(sealed[:20])


def test_value_sealed_with_another_key_says_so() -> None:
    other = SecretBox(new_key())
    with pytest.raises(SecretUnreadable, match="another secret key") as caught:
        BOX.open(other.seal("hello"))
    assert caught.value.status == 500


def test_swapping_the_key_id_does_not_help() -> None:
    other = SecretBox(new_key())
    sealed = other.seal("hello")
    forged = f"v1.{BOX.key_id}." + sealed.rsplit(".", 1)[1]
    with pytest.raises(SecretUnreadable, match="integrity check"):
        BOX.open(forged)


def test_context_binds_value_to_its_record() -> None:
    sealed = BOX.seal("key-material", context="topic/t1/key1")
    assert BOX.open(sealed, context="topic/t1/key1") == "key-material"
    with pytest.raises(SecretUnreadable, match="context"):
        BOX.open(sealed, context="topic/t2/key1")
    with pytest.raises(SecretUnreadable):
        BOX.open(sealed)


@pytest.mark.parametrize("text", ["", "plaintext", "v1.zzzzzzzz.abc", "v2.00000000.abcd"])
def test_unsealed_text_is_refused(text: str) -> None:
    with pytest.raises(SecretUnreadable, match="not a sealed value"):
        BOX.open(text)


def test_repr_never_shows_the_key() -> None:
    shown = repr(BOX) + str(BOX)
    assert BOX.key_id in shown
    assert encode_key(KEY) not in shown
    assert KEY.hex() not in shown
    assert base64.b64encode(KEY).decode() not in shown
    assert not hasattr(BOX, "__dict__")


def test_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SecretBox(b"short")


def test_load_or_create_key_creates_a_private_file(tmp_path: Path, permissive_umask: None) -> None:
    path = tmp_path / "data" / "secret.key"
    key = load_or_create_key(path)
    assert len(key) == 32
    assert _mode(path) == 0o600
    assert load_or_create_key(path) == key
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]


def test_load_or_create_key_accepts_the_data_directory(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path)
    assert (tmp_path / "secret.key").exists()
    assert load_or_create_key(tmp_path / "secret.key") == key


def test_load_or_create_key_reads_an_existing_key(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_text(KEY.hex() + "\n")
    assert load_or_create_key(path) == KEY


def test_corrupt_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_text("not a key")
    with pytest.raises(SecretKeyError, match=r"secret\.key"):
        load_or_create_key(path)


def test_create_private_file_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    assert create_private_file(path, b"first")
    assert not create_private_file(path, b"second")
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["admin.token"]


def test_write_private_file_replaces_and_stays_private(tmp_path: Path, permissive_umask: None) -> None:
    path = tmp_path / "admin.token"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    write_private_file(path, b"new")
    assert path.read_bytes() == b"new"
    assert _mode(path) == 0o600


@pytest.mark.parametrize(
    "text",
    [
        encode_key(KEY),
        encode_key(KEY).rstrip("="),
        base64.b64encode(KEY).decode(),
        KEY.hex(),
        KEY.hex().upper(),
        "  " + encode_key(KEY) + "\n",
    ],
)
def test_key_from_setting_accepts_base64_and_hex(text: str) -> None:
    assert key_from_setting(text) == KEY


@pytest.mark.parametrize("text", ["", "hunter2", base64.b64encode(b"x" * 16).decode(), "zz" * 32])
def test_key_from_setting_refuses_anything_else(text: str) -> None:
    with pytest.raises(InvalidField) as caught:
        key_from_setting(text)
    assert caught.value.field_name == "secret_key"
    assert "openssl rand" in caught.value.message
