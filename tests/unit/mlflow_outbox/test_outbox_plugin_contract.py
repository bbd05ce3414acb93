"""Upgrade guard and URI rules of the MLflow outbox plugin (no server needed)."""

from __future__ import annotations

import importlib.metadata

import pytest
from tests.support.mlflow_server import need_mlflow


def test_installed_mlflow_still_has_what_the_plugin_relies_on() -> None:
    need_mlflow()
    import mlflow
    from mlgrid_mlflow_outbox.compat import problems

    missing = problems()
    assert not missing, (
        f"mlflow {mlflow.__version__} moved private classes the outbox plugin uses: {missing}. "
        "Update plugins/mlflow-outbox (capture.py, compat.py) before upgrading MLflow."
    )


def test_entry_points_are_registered_for_both_store_groups() -> None:
    need_mlflow()
    for group in ("mlflow.tracking_store", "mlflow.model_registry_store"):
        names = {ep.name for ep in importlib.metadata.entry_points(group=group)
                 if ep.value.startswith("mlgrid_mlflow_outbox.")}
        assert names == {"mlgrid+sqlite", "mlgrid+postgresql", "sqlite", "postgresql"}, group


@pytest.mark.parametrize(
    ("uri", "plain"),
    [
        ("mlgrid+sqlite:////tmp/m.db", "sqlite:////tmp/m.db"),
        ("mlgrid+postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
    ],
)
def test_plain_uri(uri: str, plain: str) -> None:
    need_mlflow()
    from mlgrid_mlflow_outbox.entry import plain_uri

    assert plain_uri(uri) == plain


@pytest.mark.parametrize(
    ("value", "on"), [("1", True), ("true", True), ("on", True), ("", False), ("0", False)]
)
def test_override_switch(value: str, on: bool) -> None:
    need_mlflow()
    from mlgrid_mlflow_outbox.entry import override_enabled

    assert override_enabled({"MLGRID_OUTBOX": value}) is on


def test_the_connector_drains_the_table_and_channel_the_plugin_writes() -> None:
    """mlgrid does not import the plugin (it runs in MLflow's image): the names are repeated."""
    import mlgrid_mlflow_outbox
    from mlgrid_mlflow_outbox import capture

    from mlgrid.connectors import outbox
    from mlgrid.store import mlflow_outbox

    assert mlflow_outbox.OUTBOX_TABLE == mlgrid_mlflow_outbox.OUTBOX_TABLE
    assert mlflow_outbox.NOTIFY_CHANNEL == mlgrid_mlflow_outbox.NOTIFY_CHANNEL
    assert outbox.KINDS == capture.KINDS
