"""Outbox rows (``store/mlflow_outbox.py``) → an ``Observation`` of partial facts for the reconciler.

The plugin records what changed, in MLflow's transaction: a run's new status (and the one it
replaced), a new model version, an alias set (with its previous version) or deleted. What the
events also carry but a row does not — a run's tags, params and experiment name, a version's
tags and description — is read from MLflow's REST API in one batch (``runs/search`` by id,
``model-versions/get``), exactly as polling reads it, so an event looks the same whichever
intake produced it. The status, end time and alias versions always come from the row: REST
shows only the latest state, the row shows this change.

A row that cannot be understood (unknown kind, missing field) is logged and skipped: one bad
row must not stop the outbox; the full sweep finds whatever it described.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from mlgrid.connectors.mlflow_client import MlflowClient, MlflowRejected
from mlgrid.connectors.observation import (
    AliasChange,
    Change,
    Observation,
    RunChange,
    RunObservation,
    VersionObservation,
)
from mlgrid.domain.records import ConnectorRow
from mlgrid.store.mlflow_outbox import OutboxRow

log = logging.getLogger("mlgrid.connectors")

# The plugin's row kinds (``mlgrid_mlflow_outbox.capture.KINDS``).
RUN_CREATED = "run_created"
RUN_STATUS = "run_status"
MODEL_VERSION_CREATED = "model_version_created"
ALIAS_SET = "alias_set"
ALIAS_DELETED = "alias_deleted"
KINDS = (RUN_CREATED, RUN_STATUS, MODEL_VERSION_CREATED, ALIAS_SET, ALIAS_DELETED)
RUN_KINDS = frozenset({RUN_CREATED, RUN_STATUS})


def _optional_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)


def run_change(row: OutboxRow, known: RunObservation | None, experiment_name: str) -> RunChange:
    """A run row as a ``RunChange``; ``known`` (from REST) supplies tags, params and names."""
    p = row.payload
    run_id, status = str(p["run_id"]), str(p["status"])
    base = known or RunObservation(run_id, str(p["experiment_id"]), experiment_name, status)
    run = replace(
        base,
        status=status,
        end_time_ms=_optional_int(p.get("end_time")),
        start_time_ms=_optional_int(p.get("start_time")) or base.start_time_ms,
    )
    created = row.kind == RUN_CREATED
    previous = None if created else _optional_text(p.get("old_status"))
    return RunChange(run, previous=previous, created=created, at_ms=row.recorded_at_ms, row_id=row.id)


def alias_change(row: OutboxRow) -> AliasChange:
    p = row.payload
    return AliasChange(
        model=str(p["name"]),
        alias=str(p["alias"]),
        version=str(p["version"]),
        previous=_optional_text(p.get("previous_version")),
        deleted=row.kind == ALIAS_DELETED,
        at_ms=row.recorded_at_ms,
        row_id=row.id,
    )


def version_from_row(row: OutboxRow) -> VersionObservation:
    p = row.payload
    return VersionObservation(
        name=str(p["name"]),
        version=str(p["version"]),
        source=str(p.get("source") or ""),
        run_id=str(p.get("run_id") or ""),
        creation_ms=row.recorded_at_ms,
    )


EXPERIMENTS_TTL = 60.0
"""Seconds the experiment list is reused between batches (a renamed experiment shows its new
name in events within this long; an experiment id not in the list reloads it at once)."""


@dataclass
class Experiments:
    """The experiment names (and the followed ids) a connector's drain reuses between batches:
    a run row then costs one REST request (``runs/search`` by id), not two."""

    names: dict[str, str] = field(default_factory=dict)
    followed: set[str] | None = None
    loaded_at: float = -EXPERIMENTS_TTL

    async def load(self, connector: ConnectorRow, client: MlflowClient, needed: set[str]) -> None:
        fresh = time.monotonic() - self.loaded_at < EXPERIMENTS_TTL
        if fresh and needed <= set(self.names):
            return
        experiments = await client.experiments()
        self.names = {e.experiment_id: e.name for e in experiments}
        self.followed = None
        if connector.experiments is not None:
            wanted = set(connector.experiments)
            self.followed = {e.experiment_id for e in experiments if e.name in wanted}
        self.loaded_at = time.monotonic()


async def observe(
    connector: ConnectorRow,
    client: MlflowClient,
    rows: list[OutboxRow],
    experiments: Experiments | None = None,
) -> Observation:
    """The batch as one observation (runs of experiments the connector does not follow are left out)."""
    run_rows = [r for r in rows if r.kind in RUN_KINDS]
    names: dict[str, str] = {}
    followed: set[str] | None = None
    runs: dict[str, RunObservation] = {}
    if run_rows:
        experiments = experiments or Experiments()
        await experiments.load(connector, client, {str(r.payload.get("experiment_id")) for r in run_rows})
        names, followed = experiments.names, experiments.followed
        ids = sorted(names) if followed is None else sorted(followed)
        run_ids = sorted({str(r.payload.get("run_id")) for r in run_rows})
        runs = {r.run_id: r for r in await client.runs_by_id(ids, run_ids, names)}
    changes: list[Change] = []
    versions: list[VersionObservation] = []
    for row in rows:
        try:
            if row.kind in RUN_KINDS:
                experiment_id = str(row.payload["experiment_id"])
                if followed is not None and experiment_id not in followed:
                    continue
                run_id = str(row.payload["run_id"])
                changes.append(run_change(row, runs.get(run_id), names.get(experiment_id, "")))
            elif row.kind == MODEL_VERSION_CREATED:
                versions.append(await _version(client, row))
            elif row.kind in (ALIAS_SET, ALIAS_DELETED):
                changes.append(alias_change(row))
            else:
                log.warning("outbox row %s has an unknown kind %r; skipped", row.id, row.kind)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("outbox row %s (%s) is malformed: %r; skipped", row.id, row.kind, exc)
    return Observation(versions=tuple(versions), changes=tuple(changes))


async def _version(client: MlflowClient, row: OutboxRow) -> VersionObservation:
    from_row = version_from_row(row)
    try:
        found = await client.model_version(from_row.name, from_row.version)
    except MlflowRejected:  # deleted since: the row still says it was registered
        return from_row
    return replace(found, creation_ms=found.creation_ms or from_row.creation_ms)
