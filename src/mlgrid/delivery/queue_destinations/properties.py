"""``destination.properties`` of the queue destinations, validated (SPEC §4).

One pure function per ``endpointType`` turns the raw JSON object of a subscription body into
the canonical properties the destination reads from ``Subscription.destination_properties``,
or raises ``invalid(field, reason)`` naming the exact field (``<prefix>.url``). Property
names are matched case-insensitively, as ARM does; unknown names are refused so that a typo
(``routingkey`` is fine, ``routing_key`` is not) does not silently fall back to a default.

The rules check what the client library would otherwise only find out at the first
delivery, hours later: the URL scheme and its parts, the name syntax of the broker, and the
broker's length limits. Whether the stream, subject or exchange exists is *not* checked
here: it may be created after the subscription, and a delivery to it before then is a
retryable failure (see the destinations).

Connection URLs may carry credentials (``redis://:password@host``, ``amqp://user:pass@host``);
they are secrets, and the subscription service seals them at rest and redacts them in reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from mlgrid.errors import invalid

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_URL_LENGTH",
    "NATS_SCHEMES",
    "RABBITMQ_SCHEMES",
    "REDIS_SCHEMES",
    "parse_nats_jetstream_properties",
    "parse_rabbitmq_properties",
    "parse_redis_stream_properties",
]

MAX_URL_LENGTH: Final = 2048
#: Longest stream or subject name accepted (both brokers allow more; names this long are bugs).
MAX_NAME_LENGTH: Final = 256
#: AMQP ``shortstr``: exchange names and routing keys are at most 255 bytes on the wire.
MAX_AMQP_SHORTSTR_BYTES: Final = 255

REDIS_SCHEMES: Final = ("redis", "rediss", "unix")
NATS_SCHEMES: Final = ("nats", "tls", "ws", "wss")
RABBITMQ_SCHEMES: Final = ("amqp", "amqps")

# Query parameters of a Redis URL that make sense for a delivery connection. redis-py would
# pass any other name to the connection class, which fails at the first delivery.
_REDIS_QUERY: Final = {
    "db": re.compile(r"[0-9]{1,5}"),
    "ssl_cert_reqs": re.compile(r"none|optional|required", re.IGNORECASE),
    "ssl_check_hostname": re.compile(r"true|false|yes|no|1|0|on|off", re.IGNORECASE),
}
_REDIS_DB_PATH = re.compile(r"/?([0-9]{1,5})?/?")
# A NATS subject to publish to: dot-separated non-empty tokens, no wildcards, no whitespace.
_NATS_SUBJECT = re.compile(r"[^.\s*>]+(\.[^.\s*>]+)*")
# RabbitMQ refuses any other character in an exchange name (406 PRECONDITION_FAILED).
_EXCHANGE_NAME = re.compile(r"[A-Za-z0-9._:\-]*")
#: The subject and exchange rules, for the subscription body's schema.
NATS_SUBJECT = _NATS_SUBJECT
EXCHANGE_NAME = _EXCHANGE_NAME


def _members(raw: object, allowed: Sequence[str], field_prefix: str) -> dict[str, Any]:
    """The object's members under their canonical names; unknown or repeated names refused."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise invalid(field_prefix, "must be a JSON object")
    by_lower = {name.lower(): name for name in allowed}
    members: dict[str, Any] = {}
    for name, value in raw.items():
        canonical = by_lower.get(name.lower()) if isinstance(name, str) else None
        if canonical is None:
            raise invalid(f"{field_prefix}.{name}", f"unknown property; expected one of {', '.join(allowed)}")
        if canonical in members:
            raise invalid(f"{field_prefix}.{name}", "given more than once (property names ignore case)")
        members[canonical] = value
    return members


def _url(raw: object, schemes: Sequence[str], field: str) -> tuple[str, str]:
    """The URL as given and its lower-case scheme, after the checks every type shares."""
    expected = " or ".join(f"{scheme}://" for scheme in schemes)
    if not isinstance(raw, str) or not raw:
        raise invalid(field, f"is required: a {expected} URL")
    if len(raw) > MAX_URL_LENGTH or any(ch.isspace() for ch in raw):
        raise invalid(field, f"must be a URL of at most {MAX_URL_LENGTH} characters without whitespace")
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError as exc:
        raise invalid(field, f"is not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise invalid(field, f"must be a {expected} URL")
    if parts.fragment:
        raise invalid(field, "must not have a #fragment")
    if scheme == "unix":
        if not parts.path or parts.netloc:
            raise invalid(field, "must be unix:///absolute/path/to/socket")
    elif not parts.hostname:
        raise invalid(field, "must name a host")
    return raw, scheme


def _name(raw: object, field: str, what: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise invalid(field, f"is required: a non-empty {what}")
    if len(raw) > MAX_NAME_LENGTH:
        raise invalid(field, f"must be at most {MAX_NAME_LENGTH} characters")
    return raw


def parse_redis_stream_properties(raw: object, field_prefix: str) -> dict[str, Any]:
    """``{"url", "stream"}`` of a ``RedisStream`` destination.

    ``url``: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) or
    ``unix:///path/to/socket``; query parameters limited to ``db``, ``ssl_cert_reqs`` and
    ``ssl_check_hostname``. ``stream``: the key XADD appends to (created by the first entry).
    """
    props = _members(raw, ("url", "stream"), field_prefix)
    url_field = f"{field_prefix}.url"
    url, scheme = _url(props.get("url"), REDIS_SCHEMES, url_field)
    parts = urlsplit(url)
    if scheme != "unix" and not _REDIS_DB_PATH.fullmatch(parts.path):
        raise invalid(url_field, "the path may only be a database number, e.g. redis://host:6379/0")
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        pattern = _REDIS_QUERY.get(name)
        if pattern is None:
            raise invalid(
                url_field, f"query parameter {name[:64]!r} is not supported; use {', '.join(_REDIS_QUERY)}"
            )
        if not pattern.fullmatch(value):
            raise invalid(url_field, f"query parameter {name!r} has an invalid value")
    stream = _name(props.get("stream"), f"{field_prefix}.stream", "stream name")
    return {"url": url, "stream": stream}


def parse_nats_jetstream_properties(raw: object, field_prefix: str) -> dict[str, Any]:
    """``{"url", "subject"}`` of a ``NatsJetStream`` destination.

    ``url``: ``nats://[user:password@|token@]host[:port]``, ``tls://`` (TLS) or ``ws://`` /
    ``wss://`` (WebSocket), without a path or query. ``subject``: a subject to publish to
    (dot-separated tokens, no ``*``/``>`` wildcards, no whitespace) that a JetStream stream
    captures.
    """
    props = _members(raw, ("url", "subject"), field_prefix)
    url_field = f"{field_prefix}.url"
    url, scheme = _url(props.get("url"), NATS_SCHEMES, url_field)
    parts = urlsplit(url)
    if parts.query:
        raise invalid(url_field, "must not have a query string (NATS URLs take no options)")
    if scheme in ("nats", "tls") and parts.path not in ("", "/"):
        raise invalid(url_field, "must not have a path")
    subject_field = f"{field_prefix}.subject"
    subject = _name(props.get("subject"), subject_field, "subject")
    if not _NATS_SUBJECT.fullmatch(subject):
        raise invalid(subject_field, "must be dot-separated tokens without whitespace or wildcards (* and >)")
    return {"url": url, "subject": subject}


def parse_rabbitmq_properties(raw: object, field_prefix: str) -> dict[str, Any]:
    """``{"url", "exchange", "routingKey"}`` of a ``RabbitMQ`` destination.

    ``url``: ``amqp://user:password@host[:port][/vhost]`` or ``amqps://`` (TLS); aio-pika's
    query options (``heartbeat``, ``cafile``, ...) are passed through. ``exchange``: the
    exchange to publish to, ``""`` for the default exchange (which routes by queue name);
    letters, digits, ``-_.:`` only, at most 255 bytes. ``routingKey``: at most 255 bytes,
    ``""`` when left out (fanout and headers exchanges ignore it).
    """
    props = _members(raw, ("url", "exchange", "routingKey"), field_prefix)
    url, _ = _url(props.get("url"), RABBITMQ_SCHEMES, f"{field_prefix}.url")
    exchange_field = f"{field_prefix}.exchange"
    exchange = props.get("exchange")
    if not isinstance(exchange, str):
        raise invalid(exchange_field, 'is required: an exchange name ("" for the default exchange)')
    if len(exchange.encode("utf-8")) > MAX_AMQP_SHORTSTR_BYTES:
        raise invalid(exchange_field, f"must be at most {MAX_AMQP_SHORTSTR_BYTES} bytes")
    if not _EXCHANGE_NAME.fullmatch(exchange):
        raise invalid(exchange_field, "may only contain letters, digits, '-', '_', '.' and ':'")
    routing_field = f"{field_prefix}.routingKey"
    routing_key = props.get("routingKey")
    if routing_key is None:
        routing_key = ""
    if not isinstance(routing_key, str):
        raise invalid(routing_field, "must be a string")
    if len(routing_key.encode("utf-8")) > MAX_AMQP_SHORTSTR_BYTES:
        raise invalid(routing_field, f"must be at most {MAX_AMQP_SHORTSTR_BYTES} bytes")
    return {"url": url, "exchange": exchange, "routingKey": routing_key}
