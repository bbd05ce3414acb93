"""The run status machine of SPEC §9 and which events a status change emits, as pure values.

Statuses move forward through ``NotStarted → Queued → Preparing → Running → Finalizing`` (steps
may be skipped), may jump to ``CancelRequested`` or a terminal status from any non-terminal one,
and never leave a terminal status: a second completion, or any status change of a completed,
failed or canceled run, is a 409. ``CancelRequested`` may only end in a terminal status.

Events (SPEC §2.2): ``RunCompleted`` whenever a run reaches ``Completed``; ``RunStatusChanged``
when it becomes ``Failed`` (workspace setting ``"failed"``, the default) or on every status it
enters after creation (``"all"``). ``Completed`` under ``"all"`` emits both, RunCompleted first.
"""

from __future__ import annotations

from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import Conflict, invalid
from mlgrid.events.ml import RUN_COMPLETED, RUN_STATUS_CHANGED

NOT_STARTED = "NotStarted"
QUEUED = "Queued"
PREPARING = "Preparing"
RUNNING = "Running"
FINALIZING = "Finalizing"
CANCEL_REQUESTED = "CancelRequested"
COMPLETED = "Completed"
FAILED = "Failed"
CANCELED = "Canceled"

PROGRESS = (NOT_STARTED, QUEUED, PREPARING, RUNNING, FINALIZING)
"""Non-terminal statuses in the order a run moves through them."""
TERMINAL = frozenset({COMPLETED, FAILED, CANCELED})
STATUSES = (*PROGRESS, CANCEL_REQUESTED, COMPLETED, FAILED, CANCELED)
INITIAL = frozenset({NOT_STARTED, QUEUED, PREPARING, RUNNING})
"""Statuses a run may be created in (a run is created before it can finish)."""

RUN_STATUS_CHANGED_MODES = ("failed", "all")

_BY_LOWER = {status.lower(): status for status in STATUSES}


def parse_status(value: object, field: str = "status") -> str:
    """The canonical spelling of a status (case-insensitive input), or a 400 naming ``field``."""
    if not isinstance(value, str) or value.lower() not in _BY_LOWER:
        raise invalid(field, f"must be one of {', '.join(STATUSES)}")
    return _BY_LOWER[value.lower()]


def is_terminal(status: str) -> bool:
    return status in TERMINAL


def check_transition(run_id: str, current: str, new: str) -> bool:
    """Whether moving ``current → new`` changes anything; raises ``Conflict`` (409) when the
    machine forbids it. Re-entering the current non-terminal status is a no-op (False)."""
    if current in TERMINAL:
        raise Conflict(
            f"run {run_id!r} is already {current}; a terminal status is final",
            code=ErrorCode.RUN_ALREADY_TERMINAL,
        )
    if new == current:
        return False
    if new in TERMINAL:
        return True
    if current == CANCEL_REQUESTED:
        raise Conflict(
            f"run {run_id!r} has a cancellation pending; "
            f"it can only become {CANCELED}, {FAILED} or {COMPLETED}",
            code=ErrorCode.INVALID_RUN_TRANSITION,
        )
    if new == CANCEL_REQUESTED:
        return True
    if PROGRESS.index(new) < PROGRESS.index(current):
        raise Conflict(
            f"run {run_id!r} cannot go back from {current} to {new}", code=ErrorCode.INVALID_RUN_TRANSITION
        )
    return True


def events_for_transition(new: str, mode: str) -> list[str]:
    """Event types a status change to ``new`` emits under the workspace's
    ``runStatusChangedEvents`` mode (only call it for real changes after creation)."""
    types: list[str] = []
    if new == COMPLETED:
        types.append(RUN_COMPLETED)
    if mode == "all" or new == FAILED:
        types.append(RUN_STATUS_CHANGED)
    return types
