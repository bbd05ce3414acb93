"""The run status machine and the events each status change emits (SPEC §2.2, §9)."""

from __future__ import annotations

import pytest

from mlgrid.errors import Conflict, InvalidField
from mlgrid.events.ml import RUN_COMPLETED, RUN_STATUS_CHANGED
from mlgrid.workspace import lifecycle as lc


@pytest.mark.parametrize("terminal", sorted(lc.TERMINAL))
@pytest.mark.parametrize("new", lc.STATUSES)
def test_terminal_statuses_are_final(terminal: str, new: str) -> None:
    with pytest.raises(Conflict) as info:
        lc.check_transition("r", terminal, new)
    assert info.value.status == 409


@pytest.mark.parametrize(
    ("current", "new", "changes"),
    [
        ("NotStarted", "Queued", True),
        ("Queued", "Running", True),
        ("NotStarted", "Finalizing", True),
        ("Running", "Running", False),
        ("Running", "CancelRequested", True),
        ("Queued", "Completed", True),
        ("Running", "Failed", True),
        ("CancelRequested", "Canceled", True),
        ("CancelRequested", "CancelRequested", False),
        ("CancelRequested", "Completed", True),
    ],
)
def test_allowed_transitions(current: str, new: str, changes: bool) -> None:
    assert lc.check_transition("r", current, new) is changes


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("Running", "Queued"),
        ("Finalizing", "Running"),
        ("CancelRequested", "Running"),
        ("Queued", "NotStarted"),
    ],
)
def test_backward_transitions_are_409(current: str, new: str) -> None:
    with pytest.raises(Conflict) as info:
        lc.check_transition("r", current, new)
    assert info.value.code == "InvalidRunTransition"


@pytest.mark.parametrize(
    ("new", "mode", "expected"),
    [
        ("Completed", "failed", [RUN_COMPLETED]),
        ("Failed", "failed", [RUN_STATUS_CHANGED]),
        ("Canceled", "failed", []),
        ("Running", "failed", []),
        ("Completed", "all", [RUN_COMPLETED, RUN_STATUS_CHANGED]),
        ("Failed", "all", [RUN_STATUS_CHANGED]),
        ("Queued", "all", [RUN_STATUS_CHANGED]),
        ("CancelRequested", "all", [RUN_STATUS_CHANGED]),
    ],
)
def test_events_for_each_transition(new: str, mode: str, expected: list[str]) -> None:
    assert lc.events_for_transition(new, mode) == expected


def test_statuses_parse_case_insensitively_and_name_the_field() -> None:
    assert lc.parse_status("completed") == "Completed"
    with pytest.raises(InvalidField) as info:
        lc.parse_status("Done", "runs.status")
    assert info.value.field_name == "runs.status"
