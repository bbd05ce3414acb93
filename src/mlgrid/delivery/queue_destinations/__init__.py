"""Push delivery to message brokers: Redis Streams, NATS JetStream and RabbitMQ (SPEC §4).

Each destination takes the events the dispatcher hands it (already in the subscription's
delivery schema), writes one broker message per event and answers with an ``AttemptOutcome``;
the dispatcher keeps owning retries, dead letters and the circuit breaker, exactly as for
webhooks.

* ``properties`` — validation of ``destination.properties`` for the three types (pure);
* ``message`` — the message format: body and metadata of one event (pure);
* ``connections`` — one connection per distinct URL, the endpoint-safety check before a
  connection is made, and socket errors turned into outcomes;
* ``base`` — the attempt every destination makes: lease, publish under the deadline, turn the
  client library's exception into an outcome, drop a broken connection;
* ``redis_stream``, ``nats_jetstream``, ``rabbitmq`` — the destinations;
* ``registry`` — builds the three for a server, keyed by ``endpointType``.

This ``__init__`` imports nothing, so that the pure modules can be used (by the subscription
parser, by unit tests) without loading the broker client libraries.
"""
