"""mlgrid: a self-hosted event grid for the machine-learning lifecycle."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from mlgrid.client import ApiError, Client, RetryPolicy

__all__ = ["ApiError", "Client", "RetryPolicy", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy so that `import mlgrid` (the server, the pure layers) does not import httpx.
    if name in {"Client", "ApiError", "RetryPolicy"}:
        from mlgrid import client

        return getattr(client, name)
    raise AttributeError(name)
