"""Connectors in the Python SDK: an MLflow tracking server whose runs and models become events.

::

    connector = ws.create_mlflow_connector("mlflow", "http://mlflow:5000", deployment_aliases=["champion"])
    connector.refresh().state          # "Running", "Paused" or "Failing" (see .last_error)
    connector.resync()                 # a full sweep now
    connector.update(paused=True)

``token``, ``webhook_secret`` and ``database_url`` are sent once and never come back
(``has_token`` / ``has_database_url`` say whether one is set). ``intake="outbox"`` with
``database_url`` drains the MLflow outbox plugin's table instead of polling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from mlgrid.client.http import Transport, if_match_header

__all__ = ["Connector", "connector_body"]

_API_NAMES = {
    "tracking_uri": "trackingUri",
    "poll_interval_seconds": "pollIntervalSeconds",
    "full_sweep_minutes": "fullSweepMinutes",
    "deployment_aliases": "deploymentAliases",
    "webhook_secret": "webhookSecret",
    "database_url": "databaseUrl",
}


def connector_path(workspace_path: str, name: str) -> str:
    return f"{workspace_path}/connectors/{quote(name, safe='')}"


def connector_body(**settings: Any) -> dict[str, Any]:
    """``{"properties": ...}`` from SDK names (``poll_interval_seconds=5``) or API names;
    ``None`` values are left out (so they keep the server's default or current value)."""
    properties = {_API_NAMES.get(k, k): v for k, v in settings.items() if v is not None}
    return {"properties": properties}


class Connector:
    def __init__(self, http: Transport, workspace_path: str, body: Mapping[str, Any]) -> None:
        self.http = http
        self.workspace_path = workspace_path
        self.raw = dict(body)

    @property
    def name(self) -> str:
        return str(self.raw["name"])

    @property
    def etag(self) -> str:
        return str(self.raw["etag"])

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self.raw["properties"])

    @property
    def health(self) -> dict[str, Any]:
        return dict(self.raw["properties"].get("health") or {})

    @property
    def state(self) -> str:
        return str(self.health.get("state"))

    @property
    def last_error(self) -> str | None:
        error = self.health.get("lastError")
        return None if error is None else str(error)

    @property
    def tracking_uri(self) -> str:
        return str(self.raw["properties"]["trackingUri"])

    @property
    def has_token(self) -> bool:
        return bool(self.raw["properties"].get("hasToken"))

    @property
    def intake(self) -> str:
        return str(self.raw["properties"].get("intake", "polling"))

    @property
    def has_database_url(self) -> bool:
        return bool(self.raw["properties"].get("hasDatabaseUrl"))

    @property
    def path(self) -> str:
        return connector_path(self.workspace_path, self.name)

    def __repr__(self) -> str:
        return f"Connector({self.name!r}, {self.tracking_uri!r}, state={self.state!r})"

    def refresh(self) -> Connector:
        self.raw = dict(self.http.call("GET", self.path))
        return self

    def update(self, *, if_match: str | None = None, **changes: Any) -> Connector:
        """PATCH some properties (``paused=True``, ``poll_interval_seconds=30``, ``token="..."``)."""
        body = {"properties": {_API_NAMES.get(k, k): v for k, v in changes.items()}}
        self.raw = dict(self.http.call("PATCH", self.path, body, headers=if_match_header(if_match)))
        return self

    def resync(self) -> Connector:
        """Ask for a full sweep of MLflow now."""
        self.raw = dict(self.http.call("POST", f"{self.path}:resync"))
        return self

    def delete(self) -> None:
        self.http.request("DELETE", self.path)


def create(http: Transport, workspace_path: str, name: str, body: Mapping[str, Any]) -> Connector:
    return Connector(http, workspace_path, http.call("PUT", connector_path(workspace_path, name), body))


def get(http: Transport, workspace_path: str, name: str) -> Connector:
    return Connector(http, workspace_path, http.call("GET", connector_path(workspace_path, name)))


def list_all(http: Transport, workspace_path: str) -> list[Connector]:
    body = http.call("GET", f"{workspace_path}/connectors")
    return [Connector(http, workspace_path, c) for c in body.get("value", [])]


def mlflow_body(
    tracking_uri: str,
    *,
    token: str | None = None,
    poll_interval_seconds: float | None = None,
    full_sweep_minutes: float | None = None,
    experiments: Sequence[str] | None = None,
    deployment_aliases: Sequence[str] | None = None,
    webhook_secret: str | None = None,
    backfill: bool | None = None,
    intake: str | None = None,
    database_url: str | None = None,
) -> dict[str, Any]:
    return connector_body(
        kind="MLflow",
        tracking_uri=tracking_uri,
        token=token,
        poll_interval_seconds=poll_interval_seconds,
        full_sweep_minutes=full_sweep_minutes,
        experiments=None if experiments is None else list(experiments),
        deployment_aliases=None if deployment_aliases is None else list(deployment_aliases),
        webhook_secret=webhook_secret,
        backfill=backfill,
        intake=intake,
        database_url=database_url,
    )
