"""Encryption at rest for the small secrets the database holds.

Topic keys, webhook URLs with their query string (``?code=...``), secret delivery header values
and webhook signing secrets must come back in plaintext (to sign, to deliver, for ``listKeys``
and ``getFullUrl``), so they cannot be hashed; they are sealed with a server key instead, so a
copied database file or backup does not give them away.

The cipher is AES-256-GCM (from ``cryptography``): authenticated, so a value altered in the
database fails to open instead of decrypting to garbage, and fast enough to seal per request.
A sealed value is text, safe for any column::

    v1.<key id>.<base64url(nonce | ciphertext | tag)>

* ``v1`` names the format, so a later format can be told apart;
* the key id (8 hex digits derived from the key, not the key) makes "this value was sealed
  with another key" a precise error — the usual mistake when several nodes share one database
  but not one ``secret_key`` — rather than a generic "tampered";
* the nonce is 12 random bytes per seal (a collision needs ~2^48 seals under one key).

An optional ``context`` (for example ``"topic/t1/key1"``) is bound to the value as associated
data: the value then opens only under the same context, so rows cannot be swapped for one
another by someone who can write to the database but does not hold the key.

The key lives in ``<data-dir>/secret.key`` (created on first start, mode 0600) unless the
``secret_key`` setting gives it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mlgrid.auth.private_files import create_private_file
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import MlgridError, invalid

KEY_BYTES = 32
"""AES-256."""

KEY_FILE_NAME = "secret.key"

_FORMAT = "v1"
_NONCE_BYTES = 12
_TAG_BYTES = 16
_SEALED = re.compile(r"^v1\.([0-9a-f]{8})\.([A-Za-z0-9_-]+)$")
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}$")
_KEY_HELP = f"must be {KEY_BYTES} random bytes in base64 or hex, e.g. the output of `openssl rand -base64 32`"


@dataclass
class SecretUnreadable(MlgridError):
    """A sealed value could not be opened: altered, sealed under another key, or not sealed at all.

    A server-side fault (500), never the caller's: the message says which of the three it is so
    the operator knows whether to look for a wrong ``secret_key`` or for a damaged row.
    """

    code: str = ErrorCode.SECRET_UNREADABLE
    status: int = 500


@dataclass
class SecretKeyError(MlgridError):
    """The key file exists but does not hold a usable key (the server refuses to start)."""

    code: str = ErrorCode.SECRET_KEY_INVALID
    status: int = 500


class SecretBox:
    """Seals and opens small strings with one AES-256-GCM key.

    The key is not kept as an attribute and never appears in ``repr``; only its id does.
    """

    __slots__ = ("_aead", "_key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a secret box key is {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)
        self._key_id = key_id(key)

    @property
    def key_id(self) -> str:
        """Eight hex digits identifying the key (safe to log: derived one-way from the key)."""
        return self._key_id

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self._key_id!r})"

    def seal(self, plaintext: str, *, context: str = "") -> str:
        """Encrypt ``plaintext``; the result opens only with this key and the same ``context``."""
        header = f"{_FORMAT}.{self._key_id}"
        nonce = secrets.token_bytes(_NONCE_BYTES)
        ciphertext = self._aead.encrypt(nonce, plaintext.encode("utf-8"), _associated_data(header, context))
        payload = base64.urlsafe_b64encode(nonce + ciphertext).rstrip(b"=").decode("ascii")
        return f"{header}.{payload}"

    def open(self, token: str, *, context: str = "") -> str:
        """Decrypt a value made by ``seal``; raise ``SecretUnreadable`` saying why it cannot be."""
        match = _SEALED.match(token)
        if match is None:
            raise SecretUnreadable("stored secret is not a sealed value (expected v1.<key id>.<data>)")
        sealed_key_id, payload = match.groups()
        if sealed_key_id != self._key_id:
            raise SecretUnreadable(
                f"stored secret was sealed with another secret key (key id {sealed_key_id}, this server's "
                f"is {self._key_id}); every node on one database must use the same secret_key"
            )
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        except (binascii.Error, ValueError) as exc:
            raise SecretUnreadable("stored secret is damaged: its data is not base64") from exc
        if len(raw) < _NONCE_BYTES + _TAG_BYTES:
            raise SecretUnreadable("stored secret is damaged: too short to hold a nonce and a tag")
        nonce, ciphertext = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        header = f"{_FORMAT}.{sealed_key_id}"
        try:
            plaintext = self._aead.decrypt(nonce, ciphertext, _associated_data(header, context))
        except InvalidTag as exc:
            raise SecretUnreadable(
                "stored secret failed its integrity check: it was altered, or it belongs to another "
                "record (context mismatch)"
            ) from exc
        return plaintext.decode("utf-8")


def is_sealed(text: str) -> bool:
    """Whether ``text`` has the shape of a sealed value (useful to migrate plaintext columns)."""
    return _SEALED.match(text) is not None


def key_id(key: bytes) -> str:
    """The public id of ``key``: 8 hex digits of a domain-separated SHA-256 of it."""
    return hashlib.sha256(b"mlgrid secretbox key id\x00" + key).hexdigest()[:8]


def new_key() -> bytes:
    """A fresh random key for a ``SecretBox``."""
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    """The text form of a key, as written to ``secret.key`` and accepted by ``key_from_setting``."""
    return base64.urlsafe_b64encode(key).decode("ascii")


def key_from_setting(text: str) -> bytes:
    """Decode the ``secret_key`` setting: 32 bytes as base64 (standard or URL-safe) or 64 hex digits.

    Raises ``InvalidField`` naming ``secret_key``. A passphrase is refused rather than stretched
    into a key: a short human string would quietly become the weakest link of every sealed value.
    """
    try:
        return _decode_key(text)
    except ValueError as exc:
        raise invalid("secret_key", f"{exc}; it {_KEY_HELP}") from exc


def load_or_create_key(path: Path) -> bytes:
    """Read the key file, creating it (random key, mode 0600, atomically) when it does not exist.

    ``path`` is the key file (``<data-dir>/secret.key``) or the data directory itself, in which
    case ``secret.key`` inside it is used. When two processes create the file at the same moment
    both end up with the key that won the race.
    """
    if path.is_dir():
        path = path / KEY_FILE_NAME
    if not path.exists():
        key = new_key()
        if create_private_file(path, (encode_key(key) + "\n").encode("ascii")):
            return key
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError as exc:
        raise SecretKeyError(f"{path}: the secret key file is not text; it {_KEY_HELP}") from exc
    try:
        return _decode_key(text)
    except ValueError as exc:
        raise SecretKeyError(f"{path}: {exc}; it {_KEY_HELP}") from exc


def _decode_key(text: str) -> bytes:
    """Decode a key in any accepted text form; ``ValueError`` with a short reason otherwise."""
    text = text.strip()
    if not text:
        raise ValueError("the key is empty")
    if _HEX_KEY.match(text):
        return bytes.fromhex(text)
    standard = text.replace("-", "+").replace("_", "/")
    standard += "=" * (-len(standard) % 4)
    try:
        key = base64.b64decode(standard, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the key is neither base64 nor hex") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"the key decodes to {len(key)} bytes, not {KEY_BYTES}")
    return key


def _associated_data(header: str, context: str) -> bytes:
    """Authenticated but unencrypted data: the format and key id, and the caller's context."""
    return header.encode("ascii") + b"\x00" + context.encode("utf-8")
