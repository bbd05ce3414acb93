"""Principal bearer tokens and topic access keys.

A principal's token is shown once (``PUT /principals/{name}``, ``<data-dir>/admin.token``) and
only its hash is stored. The hash is also the lookup key: the store indexes the hash column and
finds the principal with ``WHERE token_hash = :hash``, so authenticating a request costs one
hash and one indexed read, never a scan over every principal.

Why plain SHA-256 and not a slow password hash (bcrypt, scrypt, argon2): those exist to make
guessing *low-entropy* human passwords expensive. Our tokens carry 256 bits from ``secrets``;
nobody can enumerate that space however fast the hash is, so slowing the hash down would only
slow down every request. A fast deterministic hash is also what makes the hash usable as an
index key (a salted hash could not be looked up). The same reasoning is why GitHub and others
store their random API tokens this way.

Stored hashes carry their algorithm (``sha256:<hex>``) so that a later change of algorithm can
recognise and migrate old rows instead of misreading them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

TOKEN_PREFIX = "mlg_"
"""Every principal token starts with this, so leaked tokens are easy to recognise and scan for."""

TOKEN_BYTES = 32
"""Random bytes in a principal token (256 bits)."""

TOPIC_KEY_BYTES = 32
"""Random bytes in a topic key; Azure's keys are base64 of 32 bytes as well (44 characters)."""

HASH_ALGORITHM = "sha256"
_HASH_PREFIX = HASH_ALGORITHM + ":"


def new_token() -> str:
    """A fresh principal token: ``mlg_`` followed by 32 random bytes in URL-safe base64.

    URL-safe so that it survives a shell, an environment variable and a header unquoted.
    """
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """The value stored for ``token``: ``"sha256:"`` and the hex SHA-256 of its UTF-8 bytes.

    Deterministic on purpose (see the module docstring): the result is the lookup key of the
    principal, so equal tokens must give equal hashes.
    """
    return _HASH_PREFIX + hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_lookup_key(token: str) -> str:
    """The key under which the store finds the principal holding ``token``.

    It is the stored hash itself; this name exists so call sites say what they mean ("find the
    principal for this token") rather than relying on that coincidence.
    """
    return hash_token(token)


def token_matches(token: str, stored_hash: str) -> bool:
    """Whether ``token`` is the token whose hash is ``stored_hash``, compared in constant time.

    A stored hash of an algorithm this version does not know never matches (rather than being
    compared as if it were SHA-256).
    """
    if not stored_hash.startswith(_HASH_PREFIX):
        return False
    return hmac.compare_digest(hash_token(token).encode("ascii"), stored_hash.encode("utf-8"))


def looks_like_token(text: str) -> bool:
    """Whether ``text`` has the shape of a principal token (prefix and length), without any lookup.

    Lets callers answer "that is not an mlgrid token" before touching the store, and lets the
    credential parser tell a principal token from other bearer strings in error messages.
    """
    return text.startswith(TOKEN_PREFIX) and len(text) == len(TOKEN_PREFIX) + _urlsafe_length(TOKEN_BYTES)


def new_topic_key() -> str:
    """A fresh topic access key: standard base64 of 32 random bytes, as Azure's ``key1``/``key2``.

    Standard (not URL-safe) base64 because SAS signing decodes the key with standard base64, in
    the official SDKs as here.
    """
    return base64.b64encode(secrets.token_bytes(TOPIC_KEY_BYTES)).decode("ascii")


def _urlsafe_length(byte_count: int) -> int:
    """Length of unpadded URL-safe base64 for ``byte_count`` bytes (what ``token_urlsafe`` gives)."""
    return len(base64.urlsafe_b64encode(bytes(byte_count)).rstrip(b"="))
