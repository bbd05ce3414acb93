"""The store builders MLflow finds through its entry-point groups.

Nothing here imports MLflow at module level: MLflow loads entry points while
``mlflow.tracking`` is still being imported, and an eager import of its SQL stores from here
is a circular import (it breaks ``log_model(registered_model_name=...)`` with a 500). Each
builder delegates to MLflow's own builder for the plain URI and only adds the listeners.
"""

from __future__ import annotations

import os
from typing import Any

from mlgrid_mlflow_outbox import OVERRIDE_ENV, SCHEME_PREFIX


def plain_uri(store_uri: str) -> str:
    """``mlgrid+postgresql://...`` → ``postgresql://...`` (other URIs unchanged)."""
    return store_uri[len(SCHEME_PREFIX):] if store_uri.startswith(SCHEME_PREFIX) else store_uri


def override_enabled(environ: dict[str, str] | None = None) -> bool:
    """Whether the built-in ``sqlite``/``postgresql`` schemes capture too (``MLGRID_OUTBOX=1``)."""
    value = (environ if environ is not None else os.environ).get(OVERRIDE_ENV, "")
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _tracking(store_uri: str, artifact_uri: str | None, capture: bool) -> Any:
    from mlflow.tracking._tracking_service.utils import _get_sqlalchemy_store

    store = _get_sqlalchemy_store(plain_uri(store_uri), artifact_uri)
    if capture:
        from mlgrid_mlflow_outbox.capture import attach

        attach(store.engine)
    return store


def _registry(store_uri: str, capture: bool) -> Any:
    from mlflow.tracking._model_registry.utils import _get_sqlalchemy_store

    store = _get_sqlalchemy_store(plain_uri(store_uri))
    if capture:
        from mlgrid_mlflow_outbox.capture import attach

        attach(store.engine)
    return store


def tracking_store(store_uri: str, artifact_uri: str | None = None) -> Any:
    """Builder for ``mlgrid+sqlite`` / ``mlgrid+postgresql``: always captures."""
    return _tracking(store_uri, artifact_uri, capture=True)


def tracking_store_builtin(store_uri: str, artifact_uri: str | None = None) -> Any:
    """Builder registered over the built-in schemes: captures only with ``MLGRID_OUTBOX=1``."""
    return _tracking(store_uri, artifact_uri, capture=override_enabled())


def registry_store(store_uri: str, tracking_uri: str | None = None) -> Any:
    return _registry(store_uri, capture=True)


def registry_store_builtin(store_uri: str, tracking_uri: str | None = None) -> Any:
    return _registry(store_uri, capture=override_enabled())
