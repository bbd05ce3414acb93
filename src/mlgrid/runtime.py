"""The services of one running server, built once at start and passed to the API.

``api/`` reaches them through ``request.app.state.runtime``; nothing is global.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from mlgrid.auth.secretbox import SecretBox
from mlgrid.broker.access import AccessService
from mlgrid.broker.ingest import Ingestor
from mlgrid.broker.routing import Router
from mlgrid.broker.topics import TopicService
from mlgrid.config import Settings
from mlgrid.metrics import Metrics
from mlgrid.store.database import Database


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
    # Services added by later layers (subscriptions, dispatcher, workspace) register here.
    services: dict[str, Any] = field(default_factory=dict)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
