"""What the plugin relies on inside MLflow, checked in one place.

The plugin uses MLflow internals that are not a public API: the SQL model classes and their
columns, and the two private store builders it delegates to. When an MLflow upgrade moves any
of them, ``problems()`` names what moved, the store builders refuse to start with that list
(a clear start-up error instead of a silently empty outbox), and mlgrid's test suite fails.
"""

from __future__ import annotations

import importlib

#: (module, attribute, columns the listeners read).
REQUIRED: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("mlflow.store.tracking.dbmodels.models", "SqlRun",
     ("run_uuid", "experiment_id", "status", "start_time", "end_time")),
    ("mlflow.store.model_registry.dbmodels.models", "SqlModelVersion",
     ("name", "version", "run_id", "source")),
    ("mlflow.store.model_registry.dbmodels.models", "SqlRegisteredModelAlias",
     ("name", "alias", "version")),
    ("mlflow.tracking._tracking_service.utils", "_get_sqlalchemy_store", ()),
    ("mlflow.tracking._model_registry.utils", "_get_sqlalchemy_store", ()),
)


def problems() -> list[str]:
    """Everything the plugin needs that this MLflow lacks (empty when compatible)."""
    found: list[str] = []
    for module_name, attribute, columns in REQUIRED:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            found.append(f"{module_name} cannot be imported ({exc})")
            continue
        target = getattr(module, attribute, None)
        if target is None:
            found.append(f"{module_name}.{attribute} is gone")
            continue
        for column in columns:
            if not hasattr(target, column):
                found.append(f"{module_name}.{attribute} has no column {column!r}")
    return found


def require_compatible() -> None:
    missing = problems()
    if missing:
        import mlflow

        raise RuntimeError(
            f"mlgrid-mlflow-outbox does not support mlflow {mlflow.__version__}: "
            + "; ".join(missing)
            + ". Pin the MLflow version the plugin was released for, or upgrade the plugin."
        )
