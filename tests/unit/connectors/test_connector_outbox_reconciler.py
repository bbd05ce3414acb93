"""The reconciler fed by the outbox (partial facts) and by polls of the same history.

A simulated MLflow applies a random history (runs changing status — failed without an end
time, terminated twice — and aliases set, moved and deleted); each change writes the outbox
row the plugin would write. The connector drains the rows in random batches, sometimes
re-drains a batch (a crash after mlgrid's commit, before the DELETE), and polls at random
points. Whatever the history:

* draining everything emits exactly one event set per real transition (every move of a
  deployment alias, every status change), with unique ids and a Sequencer growing per subject;
* a poll after the drain finds nothing new (outbox-then-poll never duplicates), and neither
  does re-draining rows that were already applied;
* a poll first, then the rows committed after it, converges on MLflow's final state without a
  duplicate id.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mlgrid.connectors.mapping import event_types_for
from mlgrid.connectors.observation import (
    AliasChange,
    AliasObservation,
    Change,
    ObjectState,
    Observation,
    RunChange,
    RunObservation,
    alias_key,
)
from mlgrid.connectors.reconciler import Identity, reconcile
from mlgrid.events import ml

NOW = datetime(2026, 1, 1, tzinfo=UTC)
MODE = "all"
IDENT = Identity("c1", "/subscriptions/s/resourceGroups/g/providers/x/workspaces/w", MODE,
                 frozenset({"champion"}))
RUN_IDS = ["r1", "r2", "r3"]
STATUSES = ["RUNNING", "FINISHED", "FAILED", "KILLED"]
ALIASES = ["champion", "staging"]
VERSIONS = ["1", "2", "3"]


def run(run_id: str, status: str, end: int | None = None) -> RunObservation:
    return RunObservation(run_id, "1", "exp", status, {}, {}, 1, end)


@dataclass
class Mlflow:
    """MLflow's state and the outbox rows its changes wrote, in commit order."""

    runs: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    rows: list[Change] = field(default_factory=list)
    transitions: list[tuple[str, str]] = field(default_factory=list)
    """(key, new value) of every change that must emit (the ground truth)."""

    @property
    def next_id(self) -> int:
        return len(self.rows) + 1

    def apply(self, op: tuple[str, str, str]) -> None:
        kind, name, value = op
        if kind == "run":
            old = self.runs.get(name)
            if old is None:
                self.runs[name] = "RUNNING"
                self.rows.append(RunChange(run(name, "RUNNING"), created=True, row_id=self.next_id))
                return
            if old == value:  # a second terminate: MLflow's UPDATE changes no status, no row
                return
            self.runs[name] = value
            end = None if value == "FAILED" else 5  # failed without an end time
            self.rows.append(RunChange(run(name, value, end), previous=old, row_id=self.next_id))
            if event_types_for(value, MODE):
                self.transitions.append((f"run:{name}", value))
        elif kind == "set":
            previous = self.aliases.get(name)
            if previous == value:
                return
            self.aliases[name] = value
            self.rows.append(AliasChange("m", name, value, previous=previous, row_id=self.next_id))
            if name in IDENT.deployment_aliases:
                self.transitions.append((alias_key("m", name), value))
        elif kind == "delete" and name in self.aliases:
            version = self.aliases.pop(name)
            self.rows.append(AliasChange("m", name, version, deleted=True, row_id=self.next_id))

    def poll(self) -> Observation:
        return Observation(
            runs=tuple(run(r, s) for r, s in self.runs.items()),
            aliases=tuple(AliasObservation("m", a, v) for a, v in self.aliases.items()),
        )


ops = st.lists(
    st.one_of(
        st.tuples(st.just("run"), st.sampled_from(RUN_IDS), st.sampled_from(STATUSES)),
        st.tuples(st.just("set"), st.sampled_from(ALIASES), st.sampled_from(VERSIONS)),
        st.tuples(st.just("delete"), st.sampled_from(ALIASES), st.just("")),
    ),
    max_size=40,
)


class Connector:
    def __init__(self) -> None:
        self.known: dict[str, ObjectState] = {}
        self.events: list[dict[str, Any]] = []

    def observe(self, observation: Observation) -> list[dict[str, Any]]:
        result = reconcile(IDENT, self.known, observation, emit_new=True, now=NOW)
        self.known.update(result.changed)
        self.events.extend(result.events)
        return result.events

    def drain(self, rows: list[Change]) -> list[dict[str, Any]]:
        return self.observe(Observation(changes=tuple(rows)))


def batches(rows: list[Change], cuts: list[int]) -> list[list[Change]]:
    points = sorted({c % (len(rows) + 1) for c in cuts} | {0, len(rows)})
    return [rows[a:b] for a, b in itertools.pairwise(points)]


def emitted_transitions(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(key, value) per emitted transition (one per ETag: a status may emit two events)."""
    seen: dict[str, tuple[str, str]] = {}
    for event in events:
        data = event["data"]
        if event["eventType"] == ml.MODEL_DEPLOYED:
            model, alias = data["ServiceName"].split("@")
            seen.setdefault(data["ETag"], (alias_key(model, alias), data["ModelIds"].split(":")[1]))
        else:
            status = {"running": "RUNNING", "completed": "FINISHED", "failed": "FAILED",
                      "canceled": "KILLED"}.get(str(data.get("RunStatus") or "completed").lower(), "?")
            seen.setdefault(data["ETag"], (f"run:{data['RunId']}", status))
    return list(seen.values())


def check_ids_and_sequencers(events: list[dict[str, Any]]) -> None:
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids))
    per_subject: dict[str, list[str]] = defaultdict(list)
    for event in events:
        per_subject[event["subject"]].append(event["data"]["Sequencer"])
    for sequencers in per_subject.values():
        assert sequencers == sorted(sequencers) and len(set(sequencers)) == len(sequencers)


@settings(max_examples=300, deadline=None)
@given(ops, st.lists(st.integers(min_value=0, max_value=60), max_size=6), st.data())
def test_draining_the_outbox_emits_every_transition_once(
    history: list[tuple[str, str, str]], cuts: list[int], data: st.DataObject
) -> None:
    mlflow, connector = Mlflow(), Connector()
    for op in history:
        mlflow.apply(op)
    for batch in batches(mlflow.rows, cuts):
        connector.drain(batch)
        if data.draw(st.booleans()):  # crash after mlgrid's commit, before the DELETE: drained again
            assert connector.drain(batch) == []
    check_ids_and_sequencers(connector.events)
    per_key: dict[str, list[str]] = defaultdict(list)
    for key, value in emitted_transitions(connector.events):
        per_key[key].append(value)
    expected: dict[str, list[str]] = defaultdict(list)
    for key, value in mlflow.transitions:
        expected[key].append(value)
    assert per_key == expected  # in commit order per object
    assert connector.observe(mlflow.poll()) == []  # outbox, then a poll: nothing new


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(min_value=0, max_value=40), st.integers(min_value=0, max_value=40))
def test_a_poll_and_the_outbox_of_the_same_history_never_duplicate(
    history: list[tuple[str, str, str]], poll_at: int, drained_before: int
) -> None:
    """Some rows drained, then a poll (it sees later changes than the rows drained), then the
    rest of the rows (some already reflected by the poll): no id twice, nothing goes back, and
    the connector ends where MLflow is."""
    mlflow, connector = Mlflow(), Connector()
    poll_at = min(poll_at, len(history))
    for op in history[:poll_at]:
        mlflow.apply(op)
    drained_before = min(drained_before, len(mlflow.rows))
    connector.drain(mlflow.rows[:drained_before])
    connector.observe(mlflow.poll())
    for op in history[poll_at:]:
        mlflow.apply(op)
    rows_after_poll = mlflow.rows[drained_before:]
    # Rows the poll already reflected that were not drained yet are drained after it, in order.
    connector.drain(rows_after_poll)
    check_ids_and_sequencers(connector.events)
    assert connector.observe(mlflow.poll()) == []
    for name, status in mlflow.runs.items():
        assert connector.known[f"run:{name}"].value == status
    champion = connector.known.get(alias_key("m", "champion"))
    assert (champion.value if champion else None) == mlflow.aliases.get("champion")


def test_the_cases_polling_cannot_see() -> None:
    """Failed without an end time, a double terminate, an alias moved v1→v2→v3 at once."""
    mlflow, connector = Mlflow(), Connector()
    for op in [("run", "r1", ""), ("run", "r1", "FAILED"), ("run", "r2", ""), ("run", "r2", "FINISHED"),
               ("run", "r2", "FINISHED"), ("set", "champion", "1"), ("set", "champion", "2"),
               ("set", "champion", "3"), ("set", "staging", "1"), ("delete", "staging", "")]:
        mlflow.apply(op)
    events = connector.drain(mlflow.rows)
    assert [(e["eventType"], e["subject"]) for e in events] == [
        (ml.RUN_STATUS_CHANGED, "experiments/1/runs/r1"),
        (ml.RUN_COMPLETED, "experiments/1/runs/r2"),
        (ml.RUN_STATUS_CHANGED, "experiments/1/runs/r2"),
        (ml.MODEL_DEPLOYED, "endpoints/m@champion"),
        (ml.MODEL_DEPLOYED, "endpoints/m@champion"),
        (ml.MODEL_DEPLOYED, "endpoints/m@champion"),
    ]
    assert [e["data"]["ModelIds"] for e in events[3:]] == ["m:1", "m:2", "m:3"]
    assert events[0]["data"]["RunStatus"] == "failed"
    check_ids_and_sequencers(events)


def test_switching_intake_gives_the_ids_polling_gives() -> None:
    """A run first seen terminal and a new alias get the same transition numbers (so the same
    event ids) whether a poll or the outbox saw them."""
    mlflow = Mlflow()
    for op in [("run", "r1", ""), ("run", "r1", "FINISHED"), ("set", "champion", "2")]:
        mlflow.apply(op)
    by_outbox, by_poll = Connector(), Connector()
    by_outbox.drain(mlflow.rows)
    by_poll.observe(mlflow.poll())
    assert sorted(e["id"] for e in by_outbox.events) == sorted(e["id"] for e in by_poll.events)
