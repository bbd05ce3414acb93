"""The services of one running server, built once at start and passed to the API.

``api/`` reaches them through ``request.app.state.runtime`` (``api.deps.runtime``); nothing is
global. The broker core is built first by ``server.open_runtime``; each layer above it sets its
own typed field in its ``setup`` coroutine, in the order ``server.EXTENSIONS`` gives, so a route
or a later layer reads ``rt.delivery.dispatcher`` and the type checker knows what it gets.
A field a layer has not set yet is simply absent (reading it raises ``AttributeError``): the
start-up order, not a ``None`` check at every use, is what guarantees it is there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlgrid.auth.secretbox import SecretBox
from mlgrid.blobs import Blobs
from mlgrid.broker.access import AccessService
from mlgrid.broker.ingest import Ingestor
from mlgrid.broker.routing import Router
from mlgrid.broker.topics import TopicService
from mlgrid.cluster.node import Node
from mlgrid.config import Settings
from mlgrid.metrics import Metrics
from mlgrid.store.database import Database
from mlgrid.tracing import Tracing

if TYPE_CHECKING:
    from mlgrid.broker.subscriptions import SubscriptionService
    from mlgrid.connectors.poller import ConnectorPoller
    from mlgrid.connectors.service import ConnectorService
    from mlgrid.delivery.dead_letters import DeadLetterService
    from mlgrid.delivery.dispatcher import Dispatcher
    from mlgrid.delivery.manage import DeliveryManager
    from mlgrid.delivery.pull import PullService
    from mlgrid.ui.common import UiState
    from mlgrid.workspace.datasets import DatasetService
    from mlgrid.workspace.drift_monitors import DriftMonitorService
    from mlgrid.workspace.drift_scheduler import DriftScheduler
    from mlgrid.workspace.endpoints import EndpointService
    from mlgrid.workspace.jobs import JobRunner
    from mlgrid.workspace.models import ModelService
    from mlgrid.workspace.processes import Containment
    from mlgrid.workspace.runs import RunService
    from mlgrid.workspace.service import WorkspaceService

#: A coroutine run once at start-up (after the ingest writer runs) or at shutdown.
Hook = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class DeliveryServices:
    """The delivery layer (``delivery.setup``)."""

    dispatcher: Dispatcher
    pull: PullService
    deliveries: DeliveryManager
    dead_letters: DeadLetterService
    node_id: str


@dataclass(frozen=True)
class WorkspaceServices:
    """The ML workspace (``workspace.setup``): the shared core and the per-resource services."""

    core: WorkspaceService
    runs: RunService
    jobs: JobRunner
    models: ModelService
    datasets: DatasetService
    containment: Containment
    """How job commands, entry scripts and models run (``workspace.processes``)."""


@dataclass(frozen=True)
class DriftServices:
    """Data-drift monitors (``workspace.drift_setup``)."""

    monitors: DriftMonitorService
    scheduler: DriftScheduler


@dataclass(frozen=True)
class ConnectorServices:
    """Sources outside mlgrid (``connectors.setup``): the MLflow connectors and their poller."""

    service: ConnectorService
    poller: ConnectorPoller


@dataclass
class Runtime:
    settings: Settings
    db: Database
    box: SecretBox
    subscription_id: str
    metrics: Metrics
    access: AccessService
    topics: TopicService
    router: Router
    ingestor: Ingestor
    admin_token_path: str
    #: Every file the server keeps (workspace files, job logs, dead letters): ``mlgrid.blobs``.
    blobs: Blobs
    #: This process as a node: its id, heartbeat, leases of background duties (``cluster/``).
    node: Node
    #: OpenTelemetry spans (``tracing.py``); a no-op unless ``otlp_endpoint`` is set.
    tracing: Tracing = field(default_factory=Tracing.disabled)
    # Set by the layers' setup coroutines, in start-up order.
    subscriptions: SubscriptionService = field(init=False)
    delivery: DeliveryServices = field(init=False)
    workspace: WorkspaceServices = field(init=False)
    drift: DriftServices = field(init=False)
    endpoints: EndpointService = field(init=False)
    connectors: ConnectorServices = field(init=False)
    #: The web UI's state; ``None`` when the server runs with the UI off.
    ui: UiState | None = None
    #: Run once the ingest writer runs (in order), and at shutdown (in reverse order).
    starters: list[Hook] = field(default_factory=list)
    closers: list[Hook] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
