"""The pure heart of the connector: (what it remembers, what MLflow says now) → state + events.

``reconcile`` takes the previous state of the objects the observation mentions and returns the
new states and the events to emit. It has no clock, no IO and no randomness: given the same
inputs it returns the same events with the same ids, which is what makes a crash between
reading MLflow and committing harmless (the retry re-emits identical ids; the topic's
idempotent publishing absorbs any that did commit).

Rules (``docs/mlflow.md`` has the table):

* An object never seen before is recorded at transition 0. It emits nothing when the
  connector has not completed a first sync and no backfill was asked (``emit_new`` False):
  the past is not news. Otherwise a run first seen in a terminal status, a new model version
  and a new alias emit as if the change happened now.
* A run whose status differs from the remembered one is a transition; it emits what the
  workspace's rule says for the new status. The same status again (a second
  ``set_terminated``) is no transition and emits nothing.
* A model version emits ``ModelRegistered`` once, when first seen.
* An alias named in ``deployment_aliases`` that points at a different version than remembered
  (or newly exists) emits ``ModelDeployed``; a deleted alias is a silent transition.
* Outbox changes (``observation.changes``, partial facts in commit order per object) apply on
  top of the remembered state, never beside it: a change whose new value is already
  remembered was seen (by a poll, or by a drain that crashed before deleting its rows) and
  emits nothing; a change whose previous value is not the remembered one is stale (a poll
  already saw a later state) and emits nothing either — the remembered state only moves
  forward from what was seen. A run's creation, or an alias deletion, are the same first sight
  and silent transition as in a poll. So a poll of the same history after (or before) the
  outbox finds nothing new, and the first-sight and move transitions get the numbers a poll
  would give them: switching intake never duplicates.
* A change remembers its outbox row id on the object (``ObjectState.outbox_id``); a row at or
  below it was applied already (a batch drained again after a crash before its DELETE) and
  is skipped, so even a history that comes back to an earlier value is not replayed.
* Ids: ``uuid5(connector, object, transition, event type)``; ``data.ETag`` from
  (connector, object, transition); ``data.Sequencer`` counts the object's events (for a model
  version, its version number), so it only grows.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from mlgrid.connectors import mapping
from mlgrid.connectors.observation import (
    ALIAS,
    OPEN_STATUSES,
    RUN,
    VERSION,
    AliasChange,
    AliasObservation,
    ObjectState,
    Observation,
    RunChange,
    RunObservation,
    VersionObservation,
)
from mlgrid.events import ml

_NAMESPACE = uuid.UUID("6d1f0c52-6a55-4f43-9a3e-0b8e7c1d2a90")
REGISTERED = "registered"


@dataclass(frozen=True)
class Identity:
    """What the reconciler needs to know about the connector and its workspace."""

    connector_id: str
    topic_id: str
    run_status_changed_events: str
    deployment_aliases: frozenset[str]


@dataclass
class Reconciliation:
    changed: dict[str, ObjectState] = field(default_factory=dict)
    """New or changed states by object key (unchanged objects are left out)."""
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def states(self) -> list[ObjectState]:
        return list(self.changed.values())

    def put(self, state: ObjectState) -> None:
        self.changed[state.key] = state


def event_id(connector_id: str, key: str, transition: int, event_type: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{connector_id}/{key}/{transition}/{event_type}"))


def etag(connector_id: str, key: str, transition: int) -> str:
    return uuid.uuid5(_NAMESPACE, f"{connector_id}/{key}/{transition}").hex


def _version_number(version: str, fallback: int) -> int:
    return int(version) if version.isdigit() and len(version) < 20 else fallback


def reconcile(
    identity: Identity,
    known: Mapping[str, ObjectState],
    observation: Observation,
    *,
    emit_new: bool,
    now: datetime,
    tracked_models: Collection[str] | None = None,
) -> Reconciliation:
    """See the module docstring. ``known`` holds the states of (at least) every object the
    observation mentions and, when ``observation.aliases`` is complete, every alias state;
    ``tracked_models`` (None: all) limits which models' aliases count as deleted when absent."""
    result = Reconciliation()
    seen: set[str] = set()
    for run in observation.runs:
        if run.key not in seen:
            seen.add(run.key)
            _run(identity, known.get(run.key), run, emit_new, now, result)
    for version in observation.versions:
        if version.key not in seen:
            seen.add(version.key)
            _version(identity, known.get(version.key), version, emit_new, now, result)
    if observation.aliases is not None:
        present: dict[str, AliasObservation] = {}
        for alias in observation.aliases:
            if alias.alias in identity.deployment_aliases:
                present.setdefault(alias.key, alias)
        for alias in present.values():
            _alias(identity, known.get(alias.key), alias, emit_new, now, result)
        for key, state in known.items():
            if state.kind == ALIAS and key not in present and state.value is not None:
                model = key[len(ALIAS) + 1 :].rsplit("@", 1)[0]
                if tracked_models is None or model in tracked_models:
                    result.put(replace(state, value=None, transitions=state.transitions + 1))
    for change in observation.changes:
        current = result.changed.get(change.key) or known.get(change.key)
        if _applied(current, change.row_id):
            continue  # drained before (a crash came between mlgrid's commit and the DELETE)
        when = mapping.from_millis(change.at_ms, now)
        if isinstance(change, RunChange):
            _run_change(identity, current, change, emit_new, when, result)
        else:
            _alias_change(identity, current, change, emit_new, when, result)
        after = result.changed.get(change.key) or known.get(change.key)
        if after is not None and change.row_id is not None:
            result.put(replace(after, outbox_id=change.row_id))
    return result


def _applied(state: ObjectState | None, row_id: int | None) -> bool:
    if state is None or state.outbox_id is None or row_id is None:
        return False
    return row_id <= state.outbox_id


def _run_change(
    identity: Identity,
    state: ObjectState | None,
    change: RunChange,
    emit_new: bool,
    now: datetime,
    result: Reconciliation,
) -> None:
    if state is None:
        _run(identity, None, change.run, emit_new, now, result)  # first sight, as a poll's
    elif change.created or state.value == change.run.status or state.value != change.previous:
        return  # already known, already seen, or stale (a poll saw a later status)
    else:
        _run(identity, state, change.run, emit_new, now, result)


def _alias_change(
    identity: Identity,
    state: ObjectState | None,
    change: AliasChange,
    emit_new: bool,
    now: datetime,
    result: Reconciliation,
) -> None:
    if change.alias not in identity.deployment_aliases:
        return
    if change.deleted:
        if state is not None and state.value == change.version:
            result.put(replace(state, value=None, transitions=state.transitions + 1))
        return
    observed = AliasObservation(change.model, change.alias, change.version)
    if state is not None and (state.value == change.version or state.value != change.previous):
        return
    _alias(identity, state, observed, emit_new, now, result)


def _run(
    identity: Identity,
    state: ObjectState | None,
    run: RunObservation,
    emit_new: bool,
    now: datetime,
    result: Reconciliation,
) -> None:
    if state is None:
        state = ObjectState(RUN, run.key, run.status)
        result.put(state)
        if not emit_new or run.status in OPEN_STATUSES:
            return
        # First seen already past its initial status: the change happened since the last poll.
        state = replace(state, transitions=1)
    elif state.value == run.status:
        return
    else:
        state = replace(state, value=run.status, transitions=state.transitions + 1)
    emitted = state.emitted
    event_time = now if run.status in OPEN_STATUSES else mapping.from_millis(run.end_time_ms, now)
    for event_type in mapping.event_types_for(run.status, identity.run_status_changed_events):
        emitted += 1
        result.events.append(
            mapping.run_event(
                event_type,
                identity.topic_id,
                run,
                etag=etag(identity.connector_id, run.key, state.transitions),
                sequencer=ml.sequencer(emitted),
                event_time=event_time,
                event_id=event_id(identity.connector_id, run.key, state.transitions, event_type),
            )
        )
    result.put(replace(state, emitted=emitted))


def _version(
    identity: Identity,
    state: ObjectState | None,
    version: VersionObservation,
    emit_new: bool,
    now: datetime,
    result: Reconciliation,
) -> None:
    if state is not None:
        return
    if not emit_new:
        result.put(ObjectState(VERSION, version.key, REGISTERED))
        return
    properties = {"source": version.source, "run_id": version.run_id}
    if version.description:
        properties["description"] = version.description
    result.put(ObjectState(VERSION, version.key, REGISTERED, transitions=1, emitted=1))
    result.events.append(
        ml.model_registered(
            topic_id=identity.topic_id,
            model_name=version.name,
            model_version=version.version,
            model_tags=version.tags,
            model_properties=properties,
            etag=etag(identity.connector_id, version.key, 1),
            sequencer=ml.sequencer(_version_number(version.version, 1)),
            event_time=mapping.from_millis(version.creation_ms, now),
            event_id=event_id(identity.connector_id, version.key, 1, ml.MODEL_REGISTERED),
        )
    )


def _alias(
    identity: Identity,
    state: ObjectState | None,
    alias: AliasObservation,
    emit_new: bool,
    now: datetime,
    result: Reconciliation,
) -> None:
    if state is None:
        if not emit_new:
            result.put(ObjectState(ALIAS, alias.key, alias.version))
            return
        state = ObjectState(ALIAS, alias.key, alias.version, transitions=1)
    elif state.value == alias.version:
        return
    else:
        state = replace(state, value=alias.version, transitions=state.transitions + 1)
    state = replace(state, emitted=state.emitted + 1)
    result.put(state)
    result.events.append(
        ml.model_deployed(
            topic_id=identity.topic_id,
            service_name=mapping.service_name(alias.model, alias.alias),
            compute_type=mapping.ALIAS_COMPUTE_TYPE,
            model_ids=[f"{alias.model}:{alias.version}"],
            service_tags={},
            service_properties={"model": alias.model, "alias": alias.alias, "version": alias.version},
            etag=etag(identity.connector_id, alias.key, state.transitions),
            sequencer=ml.sequencer(state.emitted),
            event_time=now,
            event_id=event_id(identity.connector_id, alias.key, state.transitions, ml.MODEL_DEPLOYED),
        )
    )
