"""A connector body: every bad field is a 400 naming it; good bodies take the defaults."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mlgrid.connectors.config import ConnectorSpec, parse_put, read_patch
from mlgrid.errors import InvalidField


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ({}, "properties.trackingUri"),
        ({"trackingUri": "ftp://x"}, "properties.trackingUri"),
        ({"trackingUri": "http://u:p@x"}, "properties.trackingUri"),
        ({"trackingUri": "http://x?code=1"}, "properties.trackingUri"),
        ({"trackingUri": "http://x", "pollIntervalSeconds": 0}, "properties.pollIntervalSeconds"),
        ({"trackingUri": "http://x", "pollIntervalSeconds": 3601}, "properties.pollIntervalSeconds"),
        ({"trackingUri": "http://x", "pollIntervalSeconds": True}, "properties.pollIntervalSeconds"),
        ({"trackingUri": "http://x", "fullSweepMinutes": "1"}, "properties.fullSweepMinutes"),
        (
            {"trackingUri": "http://x", "deploymentAliases": ["ok", "no spaces"]},
            "properties.deploymentAliases[1]",
        ),
        ({"trackingUri": "http://x", "deploymentAliases": ["latest"]}, "properties.deploymentAliases[0]"),
        ({"trackingUri": "http://x", "deploymentAliases": "champion"}, "properties.deploymentAliases"),
        ({"trackingUri": "http://x", "experiments": "all"}, "properties.experiments"),
        ({"trackingUri": "http://x", "experiments": [""]}, "properties.experiments[0]"),
        ({"trackingUri": "http://x", "kind": "Kubeflow"}, "properties.kind"),
        ({"trackingUri": "http://x", "token": ""}, "properties.token"),
        ({"trackingUri": "http://x", "backfill": "yes"}, "properties.backfill"),
        ({"trackingUri": "http://x", "surprise": 1}, "properties.surprise"),
    ],
)
def test_bad_fields_are_named(properties: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidField) as raised:
        parse_put({"properties": properties})
    assert raised.value.field_name == field
    assert raised.value.status == 400


def test_defaults_and_exact_numbers() -> None:
    spec = parse_put(
        {"properties": {"trackingUri": "http://mlflow:5000/", "pollIntervalSeconds": Decimal("2.5")}}
    )
    assert spec == ConnectorSpec(tracking_uri="http://mlflow:5000", poll_interval=2.5)
    assert spec.deployment_aliases == ("champion",) and spec.experiments is None


def test_patch_changes_only_what_it_names() -> None:
    current = ConnectorSpec(tracking_uri="http://a", experiments=["x"], poll_interval=3)
    spec, given = read_patch({"properties": {"paused": True}}).apply(current)
    assert given == {"paused"} and spec.paused and spec.experiments == ["x"] and spec.poll_interval == 3
    with pytest.raises(InvalidField):
        read_patch({"properties": {"kind": "Other"}}).apply(current)


SECRET_URL = "postgresql://mlgrid:hunter2@db:5432/mlflow"


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ({"intake": "outbox"}, "properties.databaseUrl"),  # required with intake outbox
        ({"intake": "webhook", "databaseUrl": SECRET_URL}, "properties.intake"),
        ({"intake": "outbox", "databaseUrl": "mysql://u:hunter2@db/mlflow"}, "properties.databaseUrl"),
        ({"intake": "outbox", "databaseUrl": "postgresql://u:hunter2@db"}, "properties.databaseUrl"),
        ({"intake": "outbox", "databaseUrl": "postgresql://u:hunter2@db:99999/x"}, "properties.databaseUrl"),
        ({"intake": "outbox", "databaseUrl": "sqlite://"}, "properties.databaseUrl"),
        ({"intake": "outbox", "databaseUrl": "sqlite:///:memory:"}, "properties.databaseUrl"),
        ({"intake": "outbox", "databaseUrl": 5}, "properties.databaseUrl"),
    ],
)
def test_intake_and_database_url_are_validated_without_echoing_the_url(
    properties: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidField) as caught:
        parse_put({"properties": {"trackingUri": "http://x", **properties}})
    assert caught.value.field_name == field
    assert "hunter2" not in str(caught.value)


def test_outbox_intake_accepts_the_plugins_spellings() -> None:
    for url in (SECRET_URL, "mlgrid+postgresql://db/mlflow", "postgresql+psycopg://db/mlflow",
                "sqlite:////var/lib/mlflow/mlflow.db", "mlgrid+sqlite:////var/lib/mlflow.db"):
        spec = parse_put({"properties": {"trackingUri": "http://x", "intake": "outbox", "databaseUrl": url}})
        assert spec.intake == "outbox" and spec.database_url == url
    assert parse_put({"properties": {"trackingUri": "http://x"}}).intake == "polling"
    current = ConnectorSpec("http://x", intake="outbox")
    spec, given = read_patch({"properties": {"intake": "polling"}}).apply(current)
    assert spec.intake == "polling" and given == {"intake"}
