"""The Python SDK: ``from mlgrid import Client``."""

from mlgrid.client.client import Client
from mlgrid.client.http import ApiError, RetryPolicy

__all__ = ["ApiError", "Client", "RetryPolicy"]
