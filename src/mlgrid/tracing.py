"""OpenTelemetry traces: publish, routing, each delivery attempt and each workspace change.

Nothing is traced unless the admin configures an OTLP endpoint (``otlp_endpoint``): then the
server has its own ``TracerProvider`` (never the global one: no global state) exporting in
batches over OTLP/HTTP. Tests hand in an exporter of their own (the SDK's in-memory one).

Spans are linked across the event's journey by W3C trace context, as the CloudEvents
distributed-tracing extension prescribes: a publish continues the request's ``traceparent``
header, or else the ``traceparent`` attribute of the first CloudEvent it carries; a delivery
attempt continues the event's own ``traceparent`` (a CloudEvent that carried one), or else the
context stored with the event (``events.traceparent``: the workspace change that emitted an ML
event, whose Event Grid schema has no such attribute), and sends
its own context to the endpoint in the ``traceparent`` header, so a tracing backend shows
training run → event → receiver as one trace. Events are never rewritten: what a publisher
sent is what subscribers get.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import NoOpTracer, Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["SpanKind", "Tracing"]

_PROPAGATOR = TraceContextTextMapPropagator()
SERVICE_NAME = "mlgrid"


class Tracing:
    """The server's tracer and how trace context goes in and out of events and requests."""

    def __init__(self, tracer: Tracer, provider: TracerProvider | None = None) -> None:
        self.tracer = tracer
        self._provider = provider

    @classmethod
    def disabled(cls) -> Tracing:
        """No spans, no export, next to no cost (OpenTelemetry's no-op tracer)."""
        return cls(NoOpTracer())

    @classmethod
    def with_exporter(cls, exporter: SpanExporter, *, batch: bool = False) -> Tracing:
        provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
        provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
        return cls(provider.get_tracer("mlgrid"), provider)

    @classmethod
    def from_endpoint(cls, endpoint: str) -> Tracing:
        """OTLP/HTTP export to ``endpoint`` (a collector's base URL, ``.../v1/traces`` added
        unless given), or :meth:`disabled` for an empty endpoint."""
        if not endpoint.strip():
            return cls.disabled()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        url = endpoint.rstrip("/")
        if not url.endswith("/v1/traces"):
            url += "/v1/traces"
        return cls.with_exporter(OTLPSpanExporter(endpoint=url), batch=True)

    @property
    def enabled(self) -> bool:
        return self._provider is not None

    def shutdown(self) -> None:
        """Flush what is buffered and stop exporting (at server shutdown)."""
        if self._provider is not None:
            self._provider.shutdown()

    # --- context in and out -----------------------------------------------------------------

    def extract(self, carrier: Mapping[str, Any] | None) -> Context | None:
        """The trace context in ``carrier`` (HTTP headers, or a CloudEvent's attributes), or
        ``None`` when it holds no valid ``traceparent`` (or tracing is off: the hot paths of
        publish and delivery then skip the look-up)."""
        if not carrier or not self.enabled:
            return None
        values = {k.lower(): str(v) for k, v in carrier.items() if k.lower() in ("traceparent", "tracestate")}
        if "traceparent" not in values:
            return None
        context = _PROPAGATOR.extract(values)
        span = trace.get_current_span(context)
        return context if span.get_span_context().is_valid else None

    def parse(self, traceparent: str | None) -> Context | None:
        """The context of a stored ``traceparent`` (an event's, see ``events.traceparent``)."""
        if traceparent is None or not self.enabled:
            return None
        return self.extract({"traceparent": traceparent})

    def current_traceparent(self) -> str | None:
        """The ``traceparent`` of the current span, to store with what it creates (the events
        of a workspace change); ``None`` when tracing is off or no span is recording."""
        if not self.enabled:
            return None
        return self.inject(trace.get_current_span()).get("traceparent")

    def inject(self, span: Span) -> dict[str, str]:
        """``{"traceparent": ..., ["tracestate": ...]}`` of ``span``; empty when tracing is off
        (nothing is added to requests then)."""
        carrier: dict[str, str] = {}
        if self.enabled and span.get_span_context().is_valid:
            _PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
        return carrier

    @staticmethod
    def add_links(span: Span, contexts: Iterable[Context | None]) -> None:
        """Link ``span`` to each valid context of ``contexts``: a batch (one pull receive of
        several events, each of its own trace) is not the child of any one of them."""
        for context in contexts:
            if context is not None:
                linked = trace.get_current_span(context).get_span_context()
                if linked.is_valid:
                    span.add_link(linked)

    @contextmanager
    def span(
        self,
        name: str,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        parent: Context | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Iterator[Span]:
        """A span, child of ``parent`` when given, else of the current span (if any)."""
        with self.tracer.start_as_current_span(
            name, context=parent, kind=kind, attributes=dict(attributes or {})
        ) as span:
            yield span
