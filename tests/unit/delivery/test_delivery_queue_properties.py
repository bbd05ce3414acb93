"""Validation of the queue destinations' ``destination.properties`` (SPEC §4)."""

from __future__ import annotations

from typing import Any

import pytest

from mlgrid.body import parse
from mlgrid.delivery.queue_destinations.properties import (
    NatsJetStreamProperties,
    QueueDestinationProperties,
    RabbitMqProperties,
    RedisStreamProperties,
)
from mlgrid.errors import InvalidField

PREFIX = "properties.destination.properties"


def _parser(model: type[QueueDestinationProperties]) -> Any:
    """The canonical properties of ``raw`` under ``prefix``, as the subscription body reads them."""

    def read(raw: object, prefix: str) -> dict[str, Any]:
        return parse(model, raw, root=prefix).as_properties()

    return read


parse_redis_stream_properties = _parser(RedisStreamProperties)
parse_nats_jetstream_properties = _parser(NatsJetStreamProperties)
parse_rabbitmq_properties = _parser(RabbitMqProperties)


def _error(parse: Any, raw: object) -> InvalidField:
    with pytest.raises(InvalidField) as info:
        parse(raw, PREFIX)
    return info.value


# -- RedisStream ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://localhost",
        "rediss://:s3cret@cache.example.org:6380/2",
        "redis://user:pass@[::1]:6379",
        "REDIS://host/",
        "unix:///var/run/redis.sock",
        "redis://host/0?ssl_cert_reqs=none&db=3",
    ],
)
def test_redis_urls_accepted(url: str) -> None:
    assert parse_redis_stream_properties({"url": url, "stream": "ml-events"}, PREFIX) == {
        "url": url,
        "stream": "ml-events",
    }


def test_redis_property_names_ignore_case() -> None:
    parsed = parse_redis_stream_properties({"URL": "redis://h", "Stream": "s"}, PREFIX)
    assert parsed == {"url": "redis://h", "stream": "s"}


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"stream": "s"}, "url", "is required"),
        ({"url": 5, "stream": "s"}, "url", "is required"),
        ({"url": "http://h", "stream": "s"}, "url", "redis://"),
        ({"url": "redis://", "stream": "s"}, "url", "host"),
        ({"url": "redis://h:99999", "stream": "s"}, "url", "not a valid URL"),
        ({"url": "redis://h /0", "stream": "s"}, "url", "whitespace"),
        ({"url": "redis://h/" + "x" * 2100, "stream": "s"}, "url", "2048"),
        ({"url": "redis://h/zero", "stream": "s"}, "url", "database number"),
        ({"url": "redis://h/0?socket_timeout=1", "stream": "s"}, "url", "socket_timeout"),
        ({"url": "redis://h/0?db=x", "stream": "s"}, "url", "invalid value"),
        ({"url": "redis://h#frag", "stream": "s"}, "url", "fragment"),
        ({"url": "unix://host/sock", "stream": "s"}, "url", "unix:///"),
        ({"url": "redis://h"}, "stream", "is required"),
        ({"url": "redis://h", "stream": "  "}, "stream", "non-empty"),
        ({"url": "redis://h", "stream": "s" * 257}, "stream", "256"),
    ],
)
def test_redis_invalid_properties_name_the_field(raw: dict[str, Any], field: str, words: str) -> None:
    error = _error(parse_redis_stream_properties, raw)
    assert error.field_name == f"{PREFIX}.{field}"
    assert words in error.message


def test_unknown_and_repeated_properties_are_refused() -> None:
    unknown = _error(parse_redis_stream_properties, {"url": "redis://h", "stream": "s", "maxLen": 5})
    assert unknown.field_name == f"{PREFIX}.maxLen"
    assert "unknown property" in unknown.message
    repeated = _error(parse_redis_stream_properties, {"url": "redis://h", "stream": "s", "STREAM": "t"})
    assert repeated.field_name == f"{PREFIX}.STREAM"
    not_object = _error(parse_redis_stream_properties, ["redis://h"])
    assert not_object.field_name == PREFIX


# -- NatsJetStream ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "nats://127.0.0.1:4222",
        "nats://token@h",
        "tls://u:p@nats.example.org:4443",
        "wss://h/nats",
        "ws://h:8080",
    ],
)
def test_nats_urls_accepted(url: str) -> None:
    parsed = parse_nats_jetstream_properties({"url": url, "subject": "ml.events.models"}, PREFIX)
    assert parsed == {"url": url, "subject": "ml.events.models"}


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"subject": "a"}, "url", "nats://"),
        ({"url": "redis://h", "subject": "a"}, "url", "nats://"),
        ({"url": "nats://h?x=1", "subject": "a"}, "url", "query"),
        ({"url": "nats://h/path", "subject": "a"}, "url", "path"),
        ({"url": "nats://h"}, "subject", "is required"),
        ({"url": "nats://h", "subject": "a.*"}, "subject", "wildcards"),
        ({"url": "nats://h", "subject": "a.>"}, "subject", "wildcards"),
        ({"url": "nats://h", "subject": "a..b"}, "subject", "dot-separated"),
        ({"url": "nats://h", "subject": ".a"}, "subject", "dot-separated"),
        ({"url": "nats://h", "subject": "a b"}, "subject", "whitespace"),
        ({"url": "nats://h", "subject": "a" * 300}, "subject", "256"),
    ],
)
def test_nats_invalid_properties_name_the_field(raw: dict[str, Any], field: str, words: str) -> None:
    error = _error(parse_nats_jetstream_properties, raw)
    assert error.field_name == f"{PREFIX}.{field}"
    assert words in error.message


# -- RabbitMQ ---------------------------------------------------------------------------------


def test_rabbitmq_properties_accepted() -> None:
    raw = {"url": "amqp://guest:guest@127.0.0.1:5672/", "exchange": "ml.events", "routingKey": "models.#"}
    assert parse_rabbitmq_properties(raw, PREFIX) == raw


def test_rabbitmq_default_exchange_and_missing_routing_key() -> None:
    assert parse_rabbitmq_properties({"url": "amqps://h/vhost", "exchange": ""}, PREFIX) == {
        "url": "amqps://h/vhost",
        "exchange": "",
        "routingKey": "",
    }


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"exchange": "x"}, "url", "amqp://"),
        ({"url": "http://h", "exchange": "x"}, "url", "amqps://"),
        ({"url": "amqp://h"}, "exchange", "is required"),
        ({"url": "amqp://h", "exchange": 3}, "exchange", "is required"),
        ({"url": "amqp://h", "exchange": "x" * 256}, "exchange", "255 bytes"),
        ({"url": "amqp://h", "exchange": "ml events"}, "exchange", "letters, digits"),
        ({"url": "amqp://h", "exchange": "x", "routingKey": 5}, "routingKey", "string"),
        ({"url": "amqp://h", "exchange": "x", "routingKey": "é" * 128}, "routingKey", "255 bytes"),
    ],
)
def test_rabbitmq_invalid_properties_name_the_field(raw: dict[str, Any], field: str, words: str) -> None:
    error = _error(parse_rabbitmq_properties, raw)
    assert error.field_name == f"{PREFIX}.{field}"
    assert words in error.message
