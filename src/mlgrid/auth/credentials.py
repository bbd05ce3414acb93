"""Which credential a publish or pull request carries.

The official clients send credentials in several places, and all of them must work:

* ``AzureKeyCredential`` with the classic publisher → ``aeg-sas-key: <key>`` header;
* ``AzureSasCredential(generate_sas(...))`` → ``aeg-sas-token: r=..&e=..&s=..`` header;
* ``AzureKeyCredential`` with the namespace publisher and the consumer client →
  ``Authorization: SharedAccessKey <key>``;
* Azure's REST docs → ``Authorization: SharedAccessSignature r=..&e=..&s=..``, and the
  ``aeg-sas-key`` / ``aeg-sas-token`` query parameters for clients that cannot set headers;
* principals (``mlgrid`` SDK, CLI, curl) → ``Authorization: Bearer <token>``.

``parse_publish_credentials`` only *recognises* the credential; checking it against a topic's
keys (``key_matches``, ``sas.verify_sas``) or a principal's stored hash is the caller's next
step. Keeping the two apart lets the HTTP layer answer "no credentials" and "wrong credentials"
with different messages, and lets this module stay free of storage.

Every credential class hides its secret from ``repr``, so logging a parsed credential is safe.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from mlgrid.auth.sas import without_scheme

KEY_HEADER = "aeg-sas-key"
TOKEN_HEADER = "aeg-sas-token"
AUTHORIZATION_HEADER = "authorization"

_SCHEMES_HELP = "use Bearer, SharedAccessKey or SharedAccessSignature"


@dataclass(frozen=True)
class KeyCredential:
    """A topic access key (``key1`` or ``key2``) sent as it is."""

    kind: ClassVar[str] = "key"
    key: str = field(repr=False)
    source: str = "aeg-sas-key header"
    """Where it came from (``"aeg-sas-key header"``...), for log lines and error messages."""


@dataclass(frozen=True)
class SasCredential:
    """A shared access signature (``r=..&e=..&s=..``), without any ``SharedAccessSignature`` word."""

    kind: ClassVar[str] = "sas"
    token: str = field(repr=False)
    source: str = "aeg-sas-token header"


@dataclass(frozen=True)
class BearerCredential:
    """A principal's token from ``Authorization: Bearer``."""

    kind: ClassVar[str] = "bearer"
    token: str = field(repr=False)
    source: str = "Authorization: Bearer"


@dataclass(frozen=True)
class NoCredential:
    """Nothing usable was sent; ``reason`` is the message for the 401 answer."""

    kind: ClassVar[str] = "none"
    reason: str = (
        "no credentials: send an aeg-sas-key or aeg-sas-token header, or an Authorization header "
        "(Bearer, SharedAccessKey or SharedAccessSignature)"
    )


Credential = KeyCredential | SasCredential | BearerCredential | NoCredential
"""What ``parse_publish_credentials`` returns; ``match`` on the class to handle each kind."""


def parse_publish_credentials(headers: Mapping[str, str], query: Mapping[str, str]) -> Credential:
    """The credential of a publish or pull request, looked up in this order:

    1. ``aeg-sas-key`` header, then query parameter;
    2. ``aeg-sas-token`` header, then query parameter;
    3. ``Authorization: SharedAccessSignature <token>``;
    4. ``Authorization: SharedAccessKey <key>``;
    5. ``Authorization: Bearer <token>``.

    Header and parameter names and the scheme word are case-insensitive; blank values count as
    absent. The first form present wins, as Azure does: a request carrying a key and a bearer
    token is judged on the key alone, never "whichever succeeds".
    """
    header = _lower_keys(headers)
    parameter = _lower_keys(query)
    for name in (KEY_HEADER, TOKEN_HEADER):
        for where, values in (("header", header), ("query parameter", parameter)):
            value = values.get(name, "").strip()
            if not value:
                continue
            source = f"{name} {where}"
            if name == KEY_HEADER:
                return KeyCredential(value, source=source)
            return SasCredential(without_scheme(value), source=source)
    authorization = header.get(AUTHORIZATION_HEADER, "").strip()
    if not authorization:
        return NoCredential()
    return _parse_authorization(authorization)


def parse_bearer(headers: Mapping[str, str]) -> BearerCredential | NoCredential:
    """The principal token of a management or workspace call (``Authorization: Bearer`` only).

    Topic keys are not accepted there, so any other scheme is reported as such rather than
    silently ignored.
    """
    authorization = _lower_keys(headers).get(AUTHORIZATION_HEADER, "").strip()
    if not authorization:
        return NoCredential("no credentials: send Authorization: Bearer <token>")
    credential = _parse_authorization(authorization)
    if isinstance(credential, BearerCredential | NoCredential):
        return credential
    return NoCredential(
        f"this call takes a principal token (Authorization: Bearer <token>), not {credential.source}"
    )


def key_matches(given: str, key1: str, key2: str) -> bool:
    """Whether ``given`` equals ``key1`` or ``key2``, in time independent of which (or whether).

    Both comparisons always run (no short-circuit), so timing tells nothing about either key.
    Empty strings never match, so a topic with an unset key cannot be opened with an empty one.
    """
    given_bytes = given.encode("utf-8")
    first = hmac.compare_digest(given_bytes, key1.encode("utf-8"))
    second = hmac.compare_digest(given_bytes, key2.encode("utf-8"))
    return bool(given) and (first | second)


def _parse_authorization(value: str) -> Credential:
    parts = value.split(None, 1)
    scheme = parts[0]
    secret = parts[1].strip() if len(parts) > 1 else ""
    lowered = scheme.lower()
    if lowered not in ("sharedaccesssignature", "sharedaccesskey", "bearer"):
        return NoCredential(f"unsupported Authorization scheme {scheme[:32]!r}; {_SCHEMES_HELP}")
    if not secret:
        return NoCredential(f"Authorization: {scheme} carries no value")
    if lowered == "sharedaccesssignature":
        return SasCredential(secret, source="Authorization: SharedAccessSignature")
    if lowered == "sharedaccesskey":
        return KeyCredential(secret, source="Authorization: SharedAccessKey")
    return BearerCredential(secret)


def _lower_keys(values: Mapping[str, str]) -> dict[str, str]:
    """Case-insensitive view of headers or query parameters (the first of repeated names wins)."""
    lowered: dict[str, str] = {}
    for name, value in values.items():
        lowered.setdefault(name.lower(), value)
    return lowered
