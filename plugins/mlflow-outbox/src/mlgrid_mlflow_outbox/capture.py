"""The outbox table and the mapper listeners that fill it inside MLflow's own flush.

MLflow's SQL stores change runs, model versions and aliases through the ORM; SQLAlchemy calls
mapper listeners during the flush with the flush's own connection, so a row written there
commits or rolls back with MLflow's change — no change without its row, no row without its
change. Old and new run status come from the attribute history, so a second
``set_terminated`` (FINISHED → FINISHED) records nothing.

Mapper listeners are process-wide (they belong to MLflow's model classes); they act only on
connections whose engine was attached by this plugin's store builders, so any other SQL store
in the same process is left alone.

A fault in building a row is logged and swallowed: MLflow's write goes on, and mlgrid's
periodic full sweep finds what the outbox missed. The INSERT itself goes to a table created at
start-up; it fails only when MLflow's own write would.
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from mlgrid_mlflow_outbox import NOTIFY_CHANNEL, OUTBOX_TABLE

log = logging.getLogger("mlgrid_mlflow_outbox")

metadata = sa.MetaData()

#: One row per change. ``id`` orders rows of one object (changes to one row are serialised by
#: its row lock) but NOT commits across objects on PostgreSQL: drain by deleting what you
#: read (``FOR UPDATE SKIP LOCKED``), never by ``id > watermark``.
outbox = sa.Table(
    OUTBOX_TABLE,
    metadata,
    sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    sa.Column("recorded_at_ms", sa.BigInteger(), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("object_key", sa.String(600), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
)

RUN_CREATED = "run_created"
RUN_STATUS = "run_status"
MODEL_VERSION_CREATED = "model_version_created"
ALIAS_SET = "alias_set"
ALIAS_DELETED = "alias_deleted"
KINDS = (RUN_CREATED, RUN_STATUS, MODEL_VERSION_CREATED, ALIAS_SET, ALIAS_DELETED)

_attached: weakref.WeakSet[Engine] = weakref.WeakSet()
_listening = False


def attach(engine: Engine) -> None:
    """Create the outbox table when missing and capture changes made through ``engine``."""
    from mlgrid_mlflow_outbox.compat import require_compatible

    require_compatible()
    metadata.create_all(engine, checkfirst=True)
    _attached.add(engine)
    _listen()


def _listen() -> None:
    global _listening
    if _listening:
        return
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersion, SqlRegisteredModelAlias
    from mlflow.store.tracking.dbmodels.models import SqlRun

    event.listen(SqlRun, "after_insert", _run_inserted)
    event.listen(SqlRun, "after_update", _run_updated)
    event.listen(SqlModelVersion, "after_insert", _version_inserted)
    event.listen(SqlRegisteredModelAlias, "after_insert", _alias_inserted)
    event.listen(SqlRegisteredModelAlias, "after_update", _alias_updated)
    event.listen(SqlRegisteredModelAlias, "after_delete", _alias_deleted)
    _listening = True


def _captured(connection: Connection) -> bool:
    return connection.engine in _attached


#: PostgreSQL: the row and its wake-up in one statement (one round trip). The notification is
#: delivered at commit and folded with the transaction's other identical ones.
_PG_INSERT_AND_NOTIFY = sa.text(
    f"WITH row AS (INSERT INTO {OUTBOX_TABLE} (recorded_at_ms, kind, object_key, payload) "
    "VALUES (:recorded_at_ms, :kind, :object_key, :payload) RETURNING id) "
    f"SELECT pg_notify('{NOTIFY_CHANNEL}', '') FROM row"
)


def _write(connection: Connection, kind: str, object_key: str, payload: dict[str, Any]) -> None:
    values = {
        "recorded_at_ms": int(time.time() * 1000),
        "kind": kind,
        "object_key": object_key,
        "payload": json.dumps(payload, separators=(",", ":"), sort_keys=True),
    }
    if connection.dialect.name == "postgresql":
        connection.execute(_PG_INSERT_AND_NOTIFY, values)
    else:
        connection.execute(outbox.insert().values(**values))


def _old_value(target: Any, attribute: str) -> Any:
    history = sa.inspect(target).attrs[attribute].history
    return history.deleted[0] if history.deleted else None


def _changed(target: Any, attribute: str) -> bool:
    return bool(sa.inspect(target).attrs[attribute].history.has_changes())


def _workspace(target: Any) -> str | None:
    value = getattr(target, "workspace", None)
    return None if value is None else str(value)


def _guarded(build: Any) -> Any:
    """Run a listener; a fault in building the row is logged, never raised into MLflow."""

    def listener(mapper: Any, connection: Connection, target: Any) -> None:
        if not _captured(connection):
            return
        try:
            row = build(target)
        except Exception:  # a bug here must not fail MLflow's write
            log.exception("mlgrid outbox: could not describe a change of %s", type(target).__name__)
            return
        if row is not None:
            _write(connection, *row)

    listener.__name__ = build.__name__
    return listener


@_guarded
def _run_inserted(target: Any) -> tuple[str, str, dict[str, Any]] | None:
    return RUN_CREATED, f"run:{target.run_uuid}", {
        "run_id": target.run_uuid,
        "experiment_id": str(target.experiment_id),
        "status": target.status,
        "start_time": target.start_time,
        "end_time": target.end_time,
        "workspace": _workspace(target),
    }


@_guarded
def _run_updated(target: Any) -> tuple[str, str, dict[str, Any]] | None:
    if not _changed(target, "status"):
        return None
    old = _old_value(target, "status")
    if old == target.status:
        return None
    return RUN_STATUS, f"run:{target.run_uuid}", {
        "run_id": target.run_uuid,
        "experiment_id": str(target.experiment_id),
        "old_status": old,
        "status": target.status,
        "end_time": target.end_time,
        "workspace": _workspace(target),
    }


@_guarded
def _version_inserted(target: Any) -> tuple[str, str, dict[str, Any]] | None:
    return MODEL_VERSION_CREATED, f"model_version:{target.name}/{target.version}", {
        "name": target.name,
        "version": str(target.version),
        "run_id": target.run_id,
        "source": target.source,
        "workspace": _workspace(target),
    }


@_guarded
def _alias_inserted(target: Any) -> tuple[str, str, dict[str, Any]] | None:
    return ALIAS_SET, f"alias:{target.name}@{target.alias}", {
        "name": target.name,
        "alias": target.alias,
        "version": str(target.version),
        "previous_version": None,
        "workspace": _workspace(target),
    }


@_guarded
def _alias_updated(target: Any) -> tuple[str, str, dict[str, Any]] | None:
    if not _changed(target, "version"):
        return None
    previous = _old_value(target, "version")
    if previous is not None and str(previous) == str(target.version):
        return None
    return ALIAS_SET, f"alias:{target.name}@{target.alias}", {
        "name": target.name,
        "alias": target.alias,
        "version": str(target.version),
        "previous_version": None if previous is None else str(previous),
        "workspace": _workspace(target),
    }


@_guarded
def _alias_deleted(target: Any) -> tuple[str, str, dict[str, Any]] | None:
    return ALIAS_DELETED, f"alias:{target.name}@{target.alias}", {
        "name": target.name,
        "alias": target.alias,
        "version": str(target.version),
        "workspace": _workspace(target),
    }
