"""The reconciler's promises, as properties over random MLflow histories and random polls.

A simulated MLflow (runs with statuses, model versions, aliases) changes at random; between
changes the connector observes a random part of it (some runs, some versions, aliases or not)
and applies the reconciliation to its state, as the service does in one transaction. Whatever
the history and the polls:

* no two events share an id; re-reconciling what was just applied emits nothing;
* ``data.Sequencer`` strictly grows per subject;
* once everything has been observed, every run status change that the connector saw, and only
  those, produced the workspace's events.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mlgrid.connectors.mapping import event_types_for
from mlgrid.connectors.observation import (
    AliasObservation,
    ObjectState,
    Observation,
    RunObservation,
    VersionObservation,
)
from mlgrid.connectors.reconciler import Identity, reconcile
from mlgrid.events import ml

NOW = datetime(2026, 1, 1, tzinfo=UTC)
STATUSES = ["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"]


def identity(mode: str = "failed") -> Identity:
    return Identity("c1", "/subscriptions/s/resourceGroups/g/providers/x/workspaces/w", mode,
                    frozenset({"champion", "prod"}))


def run(run_id: str, status: str, end: int | None = None) -> RunObservation:
    return RunObservation(run_id, "1", "exp", status, {"mlflow.source.type": "LOCAL"}, {"p": "1"}, 1, end)


def apply(known: dict[str, ObjectState], obs: Observation, ident: Identity, emit_new: bool = True
          ) -> list[dict[str, Any]]:
    result = reconcile(ident, known, obs, emit_new=emit_new, now=NOW)
    for state in result.states:
        known[state.key] = state
    return result.events


def test_second_terminate_emits_nothing() -> None:
    known: dict[str, ObjectState] = {}
    ident = identity()
    assert apply(known, Observation(runs=(run("r1", "RUNNING"),)), ident) == []
    first = apply(known, Observation(runs=(run("r1", "FAILED", 5),)), ident)
    assert [e["eventType"] for e in first] == [ml.RUN_STATUS_CHANGED]
    assert first[0]["data"]["RunStatus"] == "failed"
    assert first[0]["subject"] == "experiments/1/runs/r1"
    # A second set_terminated rewrites end_time; the status is the same: no transition.
    assert apply(known, Observation(runs=(run("r1", "FAILED", 9),)), ident) == []


def test_first_sync_without_backfill_is_silent_then_new_objects_emit() -> None:
    known: dict[str, ObjectState] = {}
    ident = identity()
    past = Observation(
        runs=(run("old", "FINISHED", 3),),
        versions=(VersionObservation("m", "1"),),
        aliases=(AliasObservation("m", "champion", "1"),),
    )
    assert apply(known, past, ident, emit_new=False) == []
    fresh = Observation(
        runs=(run("old", "FINISHED", 3), run("new", "FINISHED", 4)),
        versions=(VersionObservation("m", "1"), VersionObservation("m", "2", source="s", run_id="new")),
        aliases=(AliasObservation("m", "champion", "2"), AliasObservation("m", "other", "1")),
    )
    events = apply(known, fresh, ident)
    assert [(e["eventType"], e["subject"]) for e in events] == [
        (ml.RUN_COMPLETED, "experiments/1/runs/new"),
        (ml.MODEL_REGISTERED, "models/m:2"),
        (ml.MODEL_DEPLOYED, "endpoints/m@champion"),
    ]
    registered = events[1]["data"]
    assert registered["ModelVersion"] == "2"
    assert registered["ModelProperties"] == {"source": "s", "run_id": "new"}
    deployed = events[2]["data"]
    assert deployed["ModelIds"] == "m:2" and deployed["ServiceComputeType"] == "MLflowAlias"


def test_alias_delete_is_silent_and_set_again_emits() -> None:
    known: dict[str, ObjectState] = {}
    ident = identity()
    assert len(apply(known, Observation(aliases=(AliasObservation("m", "prod", "1"),)), ident)) == 1
    assert apply(known, Observation(aliases=()), ident) == []
    assert known["alias:m@prod"].value is None
    again = apply(known, Observation(aliases=(AliasObservation("m", "prod", "1"),)), ident)
    assert len(again) == 1 and again[0]["data"]["Sequencer"] == ml.sequencer(2)


def test_all_mode_emits_every_status_and_completed_twice() -> None:
    known: dict[str, ObjectState] = {}
    ident = identity("all")
    apply(known, Observation(runs=(run("r", "SCHEDULED"),)), ident)
    running = apply(known, Observation(runs=(run("r", "RUNNING"),)), ident)
    assert [e["data"]["RunStatus"] for e in running] == ["running"]
    done = apply(known, Observation(runs=(run("r", "FINISHED", 7),)), ident)
    assert [e["eventType"] for e in done] == [ml.RUN_COMPLETED, ml.RUN_STATUS_CHANGED]
    assert done[1]["data"]["RunStatus"] == "completed"


# --- properties over random histories -------------------------------------------------------

run_ids = st.sampled_from([f"r{i}" for i in range(6)])
models = st.sampled_from(["a", "b"])
operation = st.one_of(
    st.tuples(st.just("status"), run_ids, st.sampled_from(STATUSES)),
    st.tuples(st.just("register"), models, st.just("")),
    st.tuples(st.just("alias"), models, st.sampled_from(["champion", "prod", "junk"])),
    st.tuples(st.just("unalias"), models, st.sampled_from(["champion", "prod"])),
    st.tuples(st.just("poll"), st.integers(0, 2**16), st.booleans()),
)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(operation, max_size=60), mode=st.sampled_from(["failed", "all"]), backfill=st.booleans())
def test_random_histories(ops: list[tuple[str, Any, Any]], mode: str, backfill: bool) -> None:
    ident = identity(mode)
    runs: dict[str, str] = {}
    versions: dict[str, int] = {}
    aliases: dict[tuple[str, str], str] = {}
    known: dict[str, ObjectState] = {}
    emitted: list[dict[str, Any]] = []
    synced = False
    seen_status: dict[str, list[str]] = defaultdict(list)
    expected_runs: dict[str, list[str]] = defaultdict(list)

    def observe(mask: int, with_aliases: bool) -> Observation:
        run_obs = tuple(run(r, s, 1) for i, (r, s) in enumerate(sorted(runs.items())) if mask >> i & 1)
        version_obs = tuple(
            VersionObservation(m, str(v)) for m, n in sorted(versions.items()) for v in range(1, n + 1)
            if mask >> (8 + v % 8) & 1
        )
        alias_obs = tuple(AliasObservation(m, a, v) for (m, a), v in sorted(aliases.items()))
        return Observation(run_obs, version_obs, alias_obs if with_aliases else None)

    def poll(obs: Observation) -> None:
        nonlocal synced
        for r in obs.runs:
            previous = seen_status[r.run_id]
            if not previous:
                previous.append(r.status)
                if (synced or backfill) and r.status not in ("RUNNING", "SCHEDULED"):
                    expected_runs[r.run_id].extend(event_types_for(r.status, mode))
            elif previous[-1] != r.status:
                previous.append(r.status)
                expected_runs[r.run_id].extend(event_types_for(r.status, mode))
        events = apply(known, obs, ident, emit_new=synced or backfill)
        emitted.extend(events)
        synced = True
        # Idempotent: the same observation against the state it produced emits nothing.
        assert apply(known, obs, ident) == []

    for op, a, b in ops:
        if op == "status":
            runs[a] = b
        elif op == "register":
            versions[a] = versions.get(a, 0) + 1
        elif op == "alias" and versions.get(a):
            aliases[(a, b)] = str(versions[a])
        elif op == "unalias":
            aliases.pop((a, b), None)
        elif op == "poll":
            poll(observe(a, b))
    poll(observe(2**16 - 1, True))

    ids = [e["id"] for e in emitted]
    assert len(ids) == len(set(ids))
    by_subject: dict[str, list[str]] = defaultdict(list)
    for event in emitted:
        by_subject[event["subject"]].append(event["data"]["Sequencer"])
    for sequencers in by_subject.values():
        assert sequencers == sorted(sequencers) and len(set(sequencers)) == len(sequencers)
    # Every model version ends up registered exactly once when it was news.
    registered = [e["subject"] for e in emitted if e["eventType"] == ml.MODEL_REGISTERED]
    assert len(registered) == len(set(registered))
    # Run events: exactly the workspace's rule applied to each status change the connector saw
    # (and to the first sight of a run already past its initial status, when it was news).
    for run_id in seen_status:
        got = [e["eventType"] for e in emitted if e["subject"] == f"experiments/1/runs/{run_id}"]
        assert got == expected_runs[run_id]
    # Aliases: at most one event per move, never for "junk".
    assert not any(e["subject"].endswith("@junk") for e in emitted)
