"""``destination.properties`` of the queue destinations, validated (SPEC §4).

One body model per ``endpointType`` (``mlgrid/body.py``: the validator and the OpenAPI schema
in one) checks the raw JSON object of a subscription body; ``as_properties`` gives the
canonical properties the destination reads from ``Subscription.destination_properties``. An
error names the exact field (``<prefix>.url``) and the reason. Property names are matched
case-insensitively, as ARM does; unknown names are refused so that a typo (``routingkey`` is
fine, ``routing_key`` is not) does not silently fall back to a default.

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
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Final
from urllib.parse import parse_qsl, urlsplit

from mlgrid.body import ArmBody, Invalid, Missing, case_insensitive, checker

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_URL_LENGTH",
    "NATS_SCHEMES",
    "RABBITMQ_SCHEMES",
    "REDIS_SCHEMES",
    "NatsJetStreamProperties",
    "QueueDestinationProperties",
    "RabbitMqProperties",
    "RedisStreamProperties",
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


def _url(raw: object, schemes: Sequence[str]) -> tuple[str, str]:
    """The URL as given and its lower-case scheme, after the checks every type shares."""
    expected = " or ".join(f"{scheme}://" for scheme in schemes)
    if not isinstance(raw, str) or not raw:
        raise Invalid(f"is required: a {expected} URL")
    if len(raw) > MAX_URL_LENGTH or any(ch.isspace() for ch in raw):
        raise Invalid(f"must be a URL of at most {MAX_URL_LENGTH} characters without whitespace")
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError as exc:
        raise Invalid(f"is not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise Invalid(f"must be a {expected} URL")
    if parts.fragment:
        raise Invalid("must not have a #fragment")
    if scheme == "unix":
        if not parts.path or parts.netloc:
            raise Invalid("must be unix:///absolute/path/to/socket")
    elif not parts.hostname:
        raise Invalid("must name a host")
    return raw, scheme


def _url_field(schemes: Sequence[str], check: Callable[[str, str], None] | None = None) -> tuple[Any, ...]:
    """``Annotated`` metadata of a connection URL: the shared checks, then ``check(url, scheme)``."""

    def checked(raw: object) -> str:
        url, scheme = _url(raw, schemes)
        if check is not None:
            check(url, scheme)
        return url

    schema = {
        "type": "string", "writeOnly": True, "maxLength": MAX_URL_LENGTH,
        "pattern": case_insensitive(list(schemes)).removesuffix("$") + "://",
        "description": "the connection URL (its password is write-only)",
    }
    expected = " or ".join(f"{scheme}://" for scheme in schemes)
    return (*checker(checked, schema), Missing(f"is required: a {expected} URL"))


def _name(what: str, rule: re.Pattern[str] | None = None, rule_text: str = "") -> tuple[Any, ...]:
    """``Annotated`` metadata of a stream or subject name (non-empty, at most 256 characters)."""

    def check(raw: object) -> str:
        if not isinstance(raw, str) or not raw.strip():
            raise Invalid(f"is required: a non-empty {what}")
        if len(raw) > MAX_NAME_LENGTH:
            raise Invalid(f"must be at most {MAX_NAME_LENGTH} characters")
        if rule is not None and not rule.fullmatch(raw):
            raise Invalid(rule_text)
        return raw

    pattern = rf"^{rule.pattern}$" if rule is not None else r"\S"
    schema = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH, "pattern": pattern}
    return (*checker(check, schema), Missing(f"is required: a non-empty {what}"))


def _redis_url(url: str, scheme: str) -> None:
    parts = urlsplit(url)
    if scheme != "unix" and not _REDIS_DB_PATH.fullmatch(parts.path):
        raise Invalid("the path may only be a database number, e.g. redis://host:6379/0")
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        pattern = _REDIS_QUERY.get(name)
        if pattern is None:
            raise Invalid(f"query parameter {name[:64]!r} is not supported; use {', '.join(_REDIS_QUERY)}")
        if not pattern.fullmatch(value):
            raise Invalid(f"query parameter {name!r} has an invalid value")


def _nats_url(url: str, scheme: str) -> None:
    parts = urlsplit(url)
    if parts.query:
        raise Invalid("must not have a query string (NATS URLs take no options)")
    if scheme in ("nats", "tls") and parts.path not in ("", "/"):
        raise Invalid("must not have a path")


def _shortstr(raw: str) -> str:
    if len(raw.encode("utf-8")) > MAX_AMQP_SHORTSTR_BYTES:
        raise Invalid(f"must be at most {MAX_AMQP_SHORTSTR_BYTES} bytes")
    return raw


_EXCHANGE_REQUIRED = 'is required: an exchange name ("" for the default exchange)'


def _exchange(raw: object) -> str:
    if not isinstance(raw, str):
        raise Invalid(_EXCHANGE_REQUIRED)
    _shortstr(raw)
    if not _EXCHANGE_NAME.fullmatch(raw):
        raise Invalid("may only contain letters, digits, '-', '_', '.' and ':'")
    return raw


def _routing_key(raw: object) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise Invalid("must be a string")
    return _shortstr(raw)


class QueueDestinationProperties(ArmBody):
    """``destination.properties`` of a queue destination."""

    def as_properties(self) -> dict[str, Any]:
        """The canonical properties (``Subscription.destination_properties``)."""
        return self.model_dump(by_alias=True)


class RedisStreamProperties(QueueDestinationProperties):
    """``{"url", "stream"}`` of a ``RedisStream`` destination.

    ``url``: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) or
    ``unix:///path/to/socket``; query parameters limited to ``db``, ``ssl_cert_reqs`` and
    ``ssl_check_hostname``. ``stream``: the key XADD appends to (created by the first entry).
    """

    url: Annotated[Any, *_url_field(REDIS_SCHEMES, _redis_url)]
    stream: Annotated[Any, *_name("stream name")]


class NatsJetStreamProperties(QueueDestinationProperties):
    """``{"url", "subject"}`` of a ``NatsJetStream`` destination.

    ``url``: ``nats://[user:password@|token@]host[:port]``, ``tls://`` (TLS) or ``ws://`` /
    ``wss://`` (WebSocket), without a path or query. ``subject``: a subject to publish to
    (dot-separated tokens, no ``*``/``>`` wildcards, no whitespace) that a JetStream stream
    captures.
    """

    url: Annotated[Any, *_url_field(NATS_SCHEMES, _nats_url)]
    subject: Annotated[Any, *_name(
        "subject", _NATS_SUBJECT, "must be dot-separated tokens without whitespace or wildcards (* and >)"
    )]


class RabbitMqProperties(QueueDestinationProperties):
    """``{"url", "exchange", "routingKey"}`` of a ``RabbitMQ`` destination.

    ``url``: ``amqp://user:password@host[:port][/vhost]`` or ``amqps://`` (TLS); aio-pika's
    query options (``heartbeat``, ``cafile``, ...) are passed through. ``exchange``: the
    exchange to publish to, ``""`` for the default exchange (which routes by queue name);
    letters, digits, ``-_.:`` only, at most 255 bytes. ``routingKey``: at most 255 bytes,
    ``""`` when left out (fanout and headers exchanges ignore it).
    """

    url: Annotated[Any, *_url_field(RABBITMQ_SCHEMES)]
    exchange: Annotated[Any, *checker(_exchange, {
        "type": "string", "maxLength": MAX_AMQP_SHORTSTR_BYTES, "pattern": f"^{_EXCHANGE_NAME.pattern}$",
        "description": 'the exchange to publish to ("" for the default exchange)',
    }), Missing(_EXCHANGE_REQUIRED)]
    routing_key: Annotated[Any, *checker(_routing_key, {
        "type": ["string", "null"],
        "description": f"at most {MAX_AMQP_SHORTSTR_BYTES} bytes; null or left out: \"\"",
    })] = None

    def as_properties(self) -> dict[str, Any]:
        return {"url": self.url, "exchange": self.exchange, "routingKey": _routing_key(self.routing_key)}
