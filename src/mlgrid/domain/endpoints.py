"""Where a subscription's events go, the provisioning states of a subscription, and the states
of a model deployment."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class EndpointType(StrEnum):
    WEBHOOK = "WebHook"
    QUEUE = "Queue"
    REDIS_STREAM = "RedisStream"
    NATS_JETSTREAM = "NatsJetStream"
    RABBITMQ = "RabbitMQ"


ENDPOINT_TYPES: Final = tuple(EndpointType)
"""Every endpoint type, in the order messages list them."""


class ProvisioningState(StrEnum):
    """A subscription receives events only when ``SUCCEEDED`` (validated)."""

    SUCCEEDED = "Succeeded"
    AWAITING_MANUAL_ACTION = "AwaitingManualAction"
    FAILED = "Failed"
    CREATING = "Creating"


class DeploymentState(StrEnum):
    """The ``properties.state`` of a model deployment (a Local endpoint)."""

    DEPLOYING = "Deploying"
    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"
    FAILED = "Failed"


DEPLOYMENT_STATES: Final = tuple(DeploymentState)
