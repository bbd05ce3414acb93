"""Record MLflow's run and registry changes in an outbox table, in MLflow's own transaction.

Install this distribution into the MLflow server's environment and point the server at
``mlgrid+sqlite://...`` or ``mlgrid+postgresql://...`` (or keep the built-in scheme and set
``MLGRID_OUTBOX=1``). mlgrid's MLflow connector drains the table. See ``docs/mlflow.md``.
"""

OUTBOX_TABLE = "mlgrid_outbox"
OVERRIDE_ENV = "MLGRID_OUTBOX"
SCHEME_PREFIX = "mlgrid+"
NOTIFY_CHANNEL = "mlgrid_outbox"

__all__ = ["NOTIFY_CHANNEL", "OUTBOX_TABLE", "OVERRIDE_ENV", "SCHEME_PREFIX"]
