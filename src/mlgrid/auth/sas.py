"""Event Grid shared access signatures (SAS tokens), byte-compatible with Azure's.

A token is ``r=<resource>&e=<expiry>&s=<signature>`` where each value is URL-encoded and the
signature is ``base64(HMAC-SHA256(base64decode(topic key), "r=<resource>&e=<expiry>"))`` computed
over the resource and expiry *as they appear in the token*, still encoded. Verification therefore
never re-encodes anything: it signs the exact characters it received, so it accepts whatever
encoding a client library chose (Python's ``quote``, .NET's ``HttpUtility.UrlEncode`` with its
lower-case escapes and ``+`` for spaces, Java's ``URLEncoder``).

Expiry formats accepted (times without an offset are UTC, as every SDK means them):

* ``str(datetime)`` — what ``azure.eventgrid.generate_sas`` writes: ``2026-11-22 10:00:00``,
  ``2026-11-22 10:00:00.250000+00:00``;
* ISO 8601 — ``2026-11-22T10:00:00Z``, ``2026-11-22T12:00:00+02:00``, any fraction of a second
  (``.1234567`` as .NET's round-trip format writes, truncated to microseconds);
* en-US ``M/d/yyyy h:mm:ss tt`` — what the .NET and Java SDKs write: ``11/22/2026 10:00:00 AM``
  (an offset after it, as ``DateTimeOffset`` prints, is honoured; any Unicode space may separate
  the time from ``AM``/``PM``, since recent ICU versions print a narrow no-break space there).

Resource check. The official SDK signs ``<endpoint the client was given>?apiVersion=...``. The
host part of that URL is whatever name the client used to reach the server (``localhost``, a
container name, a reverse proxy), so comparing it would reject valid tokens for reasons that have
nothing to do with security. The check therefore compares only the *path*, case-insensitively:
the resource's path must contain the expected prefix (``/topics/t1``) on segment boundaries —
followed by the end, ``/`` or ``:`` (``/topics/t1:publish``) — so ``/topics/t1`` never accepts
``/topics/t10``. The prefix may appear after a leading mount path (``/mlgrid/topics/t1/...``) so
a server behind a path-prefixing proxy still works. Keys are per topic, so the signature
already ties a token to the topic whose key signed it; the resource check is defence in depth
and turns "the client signed the wrong URL" into a precise error instead of a silent accept.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote, unquote, unquote_plus, urlsplit

from mlgrid.errors import Unauthorized

_SIGNATURE_BYTES = hashlib.sha256().digest_size
_SHARED_ACCESS_SIGNATURE = "sharedaccesssignature"
_SHOWN_CHARACTERS = 80
_EN_US = re.compile(
    r"""^(?P<month>\d{1,2})/(?P<day>\d{1,2})/(?P<year>\d{4})\s+
        (?P<hour>\d{1,2}):(?P<minute>\d{2}):(?P<second>\d{2})
        (?:\s*(?P<half>[AaPp][Mm]))?
        (?:\s*(?P<offset>Z|[+-]\d{2}:?\d{2}))?$""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class SasToken:
    """A parsed SAS token: what it claims, and what to check the signature against."""

    resource: str
    """The ``r`` field, URL-decoded."""
    expires: datetime
    """The ``e`` field as an aware UTC datetime."""
    signed_text: str = field(repr=False)
    """``r=<raw r>&e=<raw e>`` exactly as received: the bytes the signature covers."""
    signature: bytes = field(repr=False)
    """The ``s`` field decoded to the 32 bytes of an HMAC-SHA256."""


def generate_sas(endpoint: str, key: str, expires: datetime) -> str:
    """A SAS token for ``endpoint`` valid until ``expires``, signed with a topic key.

    ``endpoint`` is the publish URL (``http://host:8780/topics/t1/api/events``). The expiry is
    written in ISO 8601 UTC (a naive ``expires`` is taken as UTC). ``verify_sas`` and Azure's
    format both accept the result; any Event Grid SAS reader can check it.
    """
    if not endpoint:
        raise ValueError("a SAS token needs the endpoint it is for")
    expiry_text = _format_utc(_as_utc(expires))
    unsigned = f"r={quote(endpoint, safe='')}&e={quote(expiry_text, safe='')}"
    decoded_key = _decode_key(key)
    if decoded_key is None:
        raise ValueError("a topic key must be non-empty base64")
    signature = base64.b64encode(_sign(decoded_key, unsigned)).decode("ascii")
    return f"{unsigned}&s={quote(signature, safe='')}"


def verify_sas(
    token: str,
    key1: str,
    key2: str,
    expected_resource_prefix: str | Iterable[str] | None,
    now: datetime,
) -> None:
    """Accept ``token`` if signed with ``key1`` or ``key2``, unexpired at ``now`` and for this resource.

    ``expected_resource_prefix`` is the topic's path (``/topics/t1``) or its endpoint URL (only
    the path is used, see the module docstring), several of them when a resource has aliases
    (``("/systemTopics/ws", "/workspaces/ws")``), or None to skip the resource check.

    Raises ``Unauthorized`` saying which check failed: malformed, signature mismatch, expired,
    or issued for another resource. The signature is checked before the claims it protects, so
    the expiry and resource messages only ever describe a token signed with a valid key.
    """
    parsed = parse_sas_token(token)
    if not signature_matches(parsed, key1, key2):
        raise Unauthorized("SAS token signature does not match the topic's key1 or key2")
    if _as_utc(now) >= parsed.expires:
        raise Unauthorized(f"SAS token expired at {_format_utc(parsed.expires)}")
    if expected_resource_prefix is None:
        return
    prefixes = (
        [expected_resource_prefix]
        if isinstance(expected_resource_prefix, str)
        else list(expected_resource_prefix)
    )
    if not any(resource_matches(parsed.resource, prefix) for prefix in prefixes):
        expected = " or ".join(_path_of(prefix) or "/" for prefix in prefixes)
        raise Unauthorized(
            f"SAS token was issued for {_shown(parsed.resource)}, not for this topic ({expected})"
        )


def parse_sas_token(token: str) -> SasToken:
    """Split a token into its fields; ``Unauthorized`` naming what is wrong when it is malformed.

    A leading ``SharedAccessSignature`` scheme word is tolerated, so the value of an
    ``Authorization`` header can be passed as it is.
    """
    text = without_scheme(token)
    fields: dict[str, str] = {}
    for part in text.split("&"):
        name, separator, value = part.partition("=")
        name = name.strip().lower()
        if not separator or not name:
            raise _malformed(f"{_shown(part)} is not a name=value pair")
        if name in fields:
            raise _malformed(f"'{name}' appears more than once")
        fields[name] = value
    for name, meaning in (("r", "resource"), ("e", "expiry"), ("s", "signature")):
        if not fields.get(name):
            raise _malformed(f"missing '{name}' ({meaning})")
    raw_resource, raw_expiry, raw_signature = fields["r"], fields["e"], fields["s"]
    return SasToken(
        resource=unquote_plus(raw_resource),
        expires=_parse_raw_expiry(raw_expiry),
        signed_text=f"r={raw_resource}&e={raw_expiry}",
        signature=_parse_signature(raw_signature),
    )


def without_scheme(token: str) -> str:
    """``token`` stripped of surrounding space and of a leading ``SharedAccessSignature`` word.

    ``aeg-sas-token`` normally holds the bare token, but a value copied from an ``Authorization``
    header keeps the scheme word; both are accepted.
    """
    text = token.strip()
    scheme, _, rest = text.partition(" ")
    if scheme.lower() == _SHARED_ACCESS_SIGNATURE and rest.strip():
        return rest.strip()
    return text


def signature_matches(token: SasToken, key1: str, key2: str) -> bool:
    """Whether the token is signed with either key, in time independent of which one (or none).

    Both keys are always computed and compared, so response time tells nothing about which key
    signed or how much of a forged signature was right. An empty or undecodable key never matches
    (an HMAC under an empty key would otherwise be forgeable by anyone).
    """
    matched = False
    for key in (key1, key2):
        decoded = _decode_key(key)
        expected = _sign(decoded if decoded is not None else b"", token.signed_text)
        same = hmac.compare_digest(expected, token.signature)
        matched = matched | (same and decoded is not None)
    return matched


def parse_sas_expiry(text: str) -> datetime:
    """Parse a decoded ``e`` value in any accepted format into an aware UTC datetime.

    Raises ``ValueError`` for anything else.
    """
    text = text.strip()
    match = _EN_US.match(text)
    if match is not None:
        return _from_en_us(match)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an expiry time (expected ISO 8601, '2026-11-22 10:00:00+00:00' "
            "or '11/22/2026 10:00:00 AM')"
        ) from None
    return _as_utc(parsed)


def resource_matches(resource: str, expected_prefix: str) -> bool:
    """Whether the path of ``resource`` contains ``expected_prefix`` on segment boundaries.

    Case-insensitive; scheme, host, port and query are ignored (see the module docstring).
    """
    path = _path_of(resource)
    prefix = _path_of(expected_prefix)
    if not prefix:
        return True
    start = path.find(prefix)
    while start != -1:
        end = start + len(prefix)
        if end == len(path) or path[end] in "/:":
            return True
        start = path.find(prefix, start + 1)
    return False


def _parse_raw_expiry(raw: str) -> datetime:
    """Decode and parse ``e``. ``%2B``-style encoders and ``+``-for-space encoders both appear in
    the wild, so a literal ``+`` is first read as itself (an offset sign) and then as a space."""
    candidates = dict.fromkeys((unquote(raw), unquote_plus(raw)))
    for candidate in candidates:
        try:
            return parse_sas_expiry(candidate)
        except ValueError:
            continue
    raise _malformed(
        f"'e' ({_shown(unquote(raw))}) is not an expiry time; expected ISO 8601 "
        "(2026-11-22T10:00:00Z), '2026-11-22 10:00:00+00:00' or '11/22/2026 10:00:00 AM'"
    )


def _parse_signature(raw: str) -> bytes:
    # A '+' that some layer already turned into a space is put back: base64 has no spaces.
    text = unquote(raw).replace(" ", "+")
    text += "=" * (-len(text) % 4)
    try:
        signature = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("'s' (signature) is not base64") from None
    if len(signature) != _SIGNATURE_BYTES:
        raise _malformed(f"'s' (signature) is {len(signature)} bytes, an HMAC-SHA256 is {_SIGNATURE_BYTES}")
    return signature


def _decode_key(key: str) -> bytes | None:
    """The HMAC key for a topic key, decoded as the official SDK does; None if unusable."""
    if not key:
        return None
    try:
        decoded = base64.b64decode(key)
    except (binascii.Error, ValueError):
        return None
    return decoded or None


def _sign(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def _from_en_us(match: re.Match[str]) -> datetime:
    hour = int(match["hour"])
    half = match["half"]
    if half is not None:
        if not 1 <= hour <= 12:
            raise ValueError(f"hour {hour} is not valid with {half}")
        hour = hour % 12 + (12 if half.lower() == "pm" else 0)
    zone: timezone = UTC
    offset = match["offset"]
    if offset is not None and offset != "Z":
        digits = offset[1:].replace(":", "")
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        zone = timezone(-delta if offset[0] == "-" else delta)
    parsed = datetime(
        int(match["year"]),
        int(match["month"]),
        int(match["day"]),
        hour,
        int(match["minute"]),
        int(match["second"]),
        tzinfo=zone,
    )
    return parsed.astimezone(UTC)


def _as_utc(moment: datetime) -> datetime:
    """Naive datetimes are UTC (as the SDKs mean them); aware ones are converted to UTC."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _format_utc(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _path_of(resource: str) -> str:
    """Lower-case path of a decoded URL or path: no query, fragment or trailing slash; a leading one."""
    text = resource.strip()
    try:
        path = urlsplit(text).path
    except ValueError:  # an unbalanced '[' in the host part
        path = text.split("?", 1)[0].split("#", 1)[0]
    path = path.lower().rstrip("/")
    if path and not path.startswith("/"):
        path = "/" + path
    return path


def _shown(text: str) -> str:
    """Quote client-supplied text in a message, shortened so a huge header cannot bloat a log."""
    if len(text) > _SHOWN_CHARACTERS:
        text = text[:_SHOWN_CHARACTERS] + "..."
    return repr(text)


def _malformed(reason: str) -> Unauthorized:
    return Unauthorized(f"SAS token is malformed: {reason}; expected r=<resource>&e=<expiry>&s=<signature>")
