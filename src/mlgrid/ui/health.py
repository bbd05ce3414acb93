"""Delivery health of event subscriptions, as the topics and subscription pages show it.

The API lists deliveries one by one; a health summary needs counts, the latest failure and
the circuit breaker of the endpoint, which only the server has. They are read here, after
the same permission check the deliveries route makes (``READ_SUBSCRIPTIONS`` on the topic's
scope). The circuit state is the serving node's view: each node keeps its own breakers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from mlgrid.api.topics import scope_of
from mlgrid.auth.roles import Action, Principal
from mlgrid.broker.activity import ActivityService, LastFailure
from mlgrid.broker.topics import Topic
from mlgrid.delivery.circuit import endpoint_key
from mlgrid.domain.endpoints import EndpointType
from mlgrid.domain.subscription import Subscription
from mlgrid.runtime import Runtime

FAILURE_STATES = ("pending", "deadLettered", "dropped")
#: Outcomes recorded on deliveries that are not failures (a success, and the pull steps).
NOT_FAILURES = frozenset({"Succeeded", "Received", "Acknowledged", "Released"})


@dataclass(frozen=True)
class DeliveryHealth:
    counts: dict[str, int]
    dead_letters: int
    last_failure: LastFailure | None
    newest_delivered: int | None = None  # the highest delivered delivery id
    circuit: str | None = None  # closed | open | half-open (push destinations on this node)
    consecutive_failures: int = 0  # of the endpoint (shared by subscriptions to one host)
    circuit_open_until: datetime | None = None

    @property
    def status(self) -> str:
        """One word for a badge.

        ``unhealthy``: the endpoint's circuit is tripped. ``retrying`` / ``failing``: the newest
        failed delivery is newer than the newest delivered one, and is still being retried /
        ended dead-lettered or dropped. ``healthy``: events get through (older failures stay
        visible in the counts). ``idle``: nothing was delivered yet.
        """
        if self.circuit in ("open", "half-open"):
            return "unhealthy"
        failure = self.last_failure
        recovered = failure is not None and (self.newest_delivered or 0) > failure.delivery_id
        if failure is not None and not recovered:
            return "retrying" if failure.state == "pending" else "failing"
        if any(self.counts.values()):
            return "healthy"
        return "idle"


async def subscription_health(
    rt: Runtime, activity: ActivityService, principal: Principal, topic: Topic, name: str
) -> DeliveryHealth:
    """Counts per state, dead letters, last failure and circuit of one subscription."""
    await rt.access.require(principal, scope_of(topic), Action.READ_SUBSCRIPTIONS)
    sub: Subscription = await rt.subscriptions.find(topic, name)
    known = await activity.delivery_counts(sub.id, FAILURE_STATES, NOT_FAILURES)
    health = DeliveryHealth(known.by_state, known.dead_letters, known.last_failure, known.newest_delivered)
    dispatcher = rt.delivery.dispatcher
    if sub.endpoint_type != EndpointType.WEBHOOK or not sub.endpoint_url:
        return health
    snapshot = dispatcher.circuits.state(endpoint_key(sub.endpoint_url), datetime.now(UTC))
    return replace(
        health,
        circuit=str(snapshot.state.value),
        consecutive_failures=snapshot.consecutive_failures,
        circuit_open_until=snapshot.open_until,
    )


async def subscription_id(rt: Runtime, topic: Topic, name: str) -> str:
    """The internal id of a subscription (the caller has checked the principal's rights)."""
    sub: Subscription = await rt.subscriptions.find(topic, name)
    return sub.id
