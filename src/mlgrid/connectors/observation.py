"""What the connector read from MLflow, and what it remembers per object, as plain values.

Both sides of the reconciler (``reconciler.py``) are here so that the pure logic imports
nothing that does IO: the REST client produces observations, the store keeps ``ObjectState``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RUN = "run"
VERSION = "version"
ALIAS = "alias"
KINDS = (RUN, VERSION, ALIAS)

# MLflow's run statuses.
RUNNING = "RUNNING"
SCHEDULED = "SCHEDULED"
FINISHED = "FINISHED"
FAILED = "FAILED"
KILLED = "KILLED"
OPEN_STATUSES = frozenset({RUNNING, SCHEDULED})


@dataclass(frozen=True)
class RunObservation:
    run_id: str
    experiment_id: str
    experiment_name: str
    status: str
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    start_time_ms: int | None = None
    end_time_ms: int | None = None

    @property
    def key(self) -> str:
        return f"{RUN}:{self.run_id}"


@dataclass(frozen=True)
class VersionObservation:
    name: str
    version: str
    tags: dict[str, str] = field(default_factory=dict)
    source: str = ""
    run_id: str = ""
    description: str = ""
    creation_ms: int | None = None

    @property
    def key(self) -> str:
        return f"{VERSION}:{self.name}:{self.version}"


@dataclass(frozen=True)
class AliasObservation:
    model: str
    alias: str
    version: str

    @property
    def key(self) -> str:
        return alias_key(self.model, self.alias)


def alias_key(model: str, alias: str) -> str:
    return f"{ALIAS}:{model}@{alias}"


@dataclass(frozen=True)
class RunChange:
    """One change of a run as the outbox recorded it in MLflow's transaction: a partial fact.

    ``run.status`` is the status the change set (``run.end_time_ms`` may be None: a run failed
    without an end time); ``previous`` the status it replaced; ``created``: the run was created
    with ``run.status`` (no previous status). ``at_ms``: when MLflow made the change;
    ``row_id``: the outbox row's id (per object, ids follow commit order).
    """

    run: RunObservation
    previous: str | None = None
    created: bool = False
    at_ms: int | None = None
    row_id: int | None = None

    @property
    def key(self) -> str:
        return self.run.key


@dataclass(frozen=True)
class AliasChange:
    """An alias set (``previous``: the version it pointed at before, None when it was new) or
    deleted (``version``: the version it pointed at), as the outbox recorded it."""

    model: str
    alias: str
    version: str
    previous: str | None = None
    deleted: bool = False
    at_ms: int | None = None
    row_id: int | None = None

    @property
    def key(self) -> str:
        return alias_key(self.model, self.alias)


Change = RunChange | AliasChange


@dataclass(frozen=True)
class Observation:
    """One read of MLflow. ``runs`` and ``versions`` may be partial (an incremental poll);
    ``aliases`` is either complete (every alias of every model: an alias missing from it was
    deleted) or None (aliases were not read this time). ``changes`` are the outbox's partial
    facts, in commit order per object (none when polling)."""

    runs: tuple[RunObservation, ...] = ()
    versions: tuple[VersionObservation, ...] = ()
    aliases: tuple[AliasObservation, ...] | None = None
    changes: tuple[Change, ...] = ()


@dataclass(frozen=True)
class ObjectState:
    """What the connector last saw of one MLflow object.

    ``value``: a run's MLflow status, a version's ``"registered"``, an alias's version (None
    once deleted). ``transitions``: how many changes of the object the connector has recorded
    (the first sight is 0) — event ids derive from it. ``emitted``: how many events it has
    emitted for the object — its ``data.Sequencer`` counter.
    """

    kind: str
    key: str
    value: str | None
    transitions: int = 0
    emitted: int = 0
    outbox_id: int | None = None
    """The last outbox row applied to the object (intake outbox; None: none yet)."""

    @property
    def is_open(self) -> bool:
        return self.kind == RUN and self.value in OPEN_STATUSES
