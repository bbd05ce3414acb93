"""Prometheus metrics with Azure Event Grid's meanings (SPEC §10).

One ``Metrics`` object per server, on its own registry (no process-global collectors), so
several apps in one test process never share counters.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: Labelled children remembered by ``Metrics.child``; past this many the memo starts over.
_MAX_CHILDREN = 100_000


class Metrics:
    def __init__(self) -> None:
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.published = Counter(
            "mlgrid_published_events",
            "Events accepted by a topic (PublishSuccessCount).",
            ["topic"],
            registry=r,
        )
        self.publish_failures = Counter(
            "mlgrid_publish_failed_events",
            "Publish requests rejected, by error code (PublishFailCount).",
            ["topic", "error"],
            registry=r,
        )
        self.publish_latency = Histogram(
            "mlgrid_publish_latency_seconds",
            "Time from receiving a publish request to its durable commit (PublishSuccessLatencyInMs).",
            ["topic"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.matched = Counter(
            "mlgrid_matched_events",
            "Events that matched a subscription, counted per subscription (MatchedEventCount).",
            ["topic", "subscription"],
            registry=r,
        )
        self.unmatched = Counter(
            "mlgrid_unmatched_events",
            "Events that matched no subscription (UnmatchedEventCount).",
            ["topic"],
            registry=r,
        )
        self.delivery_success = Counter(
            "mlgrid_delivery_success_events",
            "Events delivered (DeliverySuccessCount).",
            ["topic", "subscription"],
            registry=r,
        )
        self.delivery_attempt_failures = Counter(
            "mlgrid_delivery_attempt_failed_events",
            "Failed delivery attempts, by outcome (DeliveryAttemptFailCount).",
            ["topic", "subscription", "outcome"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "mlgrid_dead_lettered_events",
            "Events dead-lettered, by reason (DeadLetteredCount).",
            ["topic", "subscription", "reason"],
            registry=r,
        )
        self.dropped = Counter(
            "mlgrid_dropped_events",
            "Undeliverable events dropped because no dead-letter destination was set (DroppedEventCount).",
            ["topic", "subscription", "reason"],
            registry=r,
        )
        self.destination_duration = Histogram(
            "mlgrid_destination_processing_duration_seconds",
            "Time a destination took to answer a delivery attempt (DestinationProcessingDurationInMs).",
            ["topic", "subscription"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
            registry=r,
        )
        self.queue_depth = Gauge(
            "mlgrid_dispatcher_queue_depth", "Deliveries waiting in this node's dispatcher.", registry=r
        )
        self.in_flight = Gauge(
            "mlgrid_dispatcher_in_flight", "Delivery attempts in flight on this node.", registry=r
        )

    def child(self, metric: Counter | Histogram | Gauge, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: on the per-event paths (publish, each
        delivery attempt) prometheus_client's own look-up (a lock, label checks) cost tens of
        microseconds per call."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            if len(self._children) >= _MAX_CHILDREN:
                self._children.clear()
            found = self._children[key] = metric.labels(*labels)
        return found

    def render(self) -> bytes:
        return generate_latest(self.registry)
