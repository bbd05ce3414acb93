"""``mlgrid ml datadrift ...``: data-drift monitors and their runs, on the SDK.

``backfill`` sends the range as several requests of a few windows each and shows a Rich
progress bar over the windows on stderr (when stderr is a terminal); the result is the list of
runs, one per complete window.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any, Final

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mlgrid.cli.command import MlgridCommand, MlgridGroup, open_client
from mlgrid.cli.output import Column, console, render
from mlgrid.client.drift import DriftMonitor, parse_moment
from mlgrid.client.workspace import Workspace
from mlgrid.workspace.drift.windows import complete_windows

app = typer.Typer(
    cls=MlgridGroup,
    help="Data-drift monitors: create, show, list, delete, backfill, runs.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

WORKSPACE = typer.Option(
    ..., "--workspace-name", "-w", "--workspace", envvar="MLGRID_WORKSPACE", metavar="NAME",
    help="The workspace [env MLGRID_WORKSPACE].",
)
NAME = typer.Option(..., "--name", "-n", help="Name of the drift monitor.")
START = typer.Option(..., "--start", help="ISO 8601 date-time (no offset means UTC).")
END = typer.Option(..., "--end", help="ISO 8601 date-time, exclusive (no offset means UTC).")

MONITOR_COLUMNS: Final = [
    Column("name", "name"),
    Column("id", "id"),
    Column("frequency", "properties.frequency"),
    Column("falseAlarmRate", "properties.falseAlarmRate"),
    Column("threshold", "properties.threshold"),
    Column("latency", "properties.latency"),
    Column("scheduleEnabled", "properties.scheduleEnabled"),
    Column("scheduledUntil", "properties.scheduledUntil"),
]


def _coefficient(value: Any) -> str:
    return "" if value is None else f"{float(value):.3f}"


def _ranked(tests: Any) -> str:
    """The features that moved, most evidence first (the top 3), or the explanation's gist."""
    if not isinstance(tests, list):
        return ""
    drifted = [t for t in tests if isinstance(t, dict) and t.get("drifted")]
    names = [f"{t.get('feature')} (p={float(t.get('adjustedPValue', 1)):.2g})" for t in drifted[:3]]
    more = f" +{len(drifted) - 3}" if len(drifted) > 3 else ""
    return ", ".join(names) + more


def _p_value(value: Any) -> str:
    return "" if value is None else f"{float(value):.3g}"


RUN_COLUMNS: Final = [
    Column("startTime", "startTime"),
    Column("drifted", "eventPublished"),
    Column("features", "features", _ranked),
    Column("pValue", "pValue", _p_value),
    Column("driftCoefficient", "driftCoefficient", _coefficient),
    Column("runId", "runId"),
    Column("endTime", "endTime"),
    Column("targetRows", "rowCounts.target"),
    Column("reason", "reason"),
]


class Frequency(StrEnum):
    Day = "Day"
    Week = "Week"
    Month = "Month"


def _workspace(ctx: typer.Context, name: str) -> Workspace:
    return open_client(ctx).workspace(name)


def _monitor(ctx: typer.Context, workspace: str, name: str) -> DriftMonitor:
    return _workspace(ctx, workspace).drift_monitor(name)


@app.command("create", cls=MlgridCommand)
def create(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    name: str = NAME,
    baseline_dataset_id: str = typer.Option(..., "--baseline-dataset-id", help="Id of the baseline dataset."),
    target_dataset_id: str = typer.Option(
        ..., "--target-dataset-id", help="Id of the target dataset (it needs a timestamp column)."
    ),
    features: list[str] | None = typer.Option(
        None, "--features", metavar="COLUMN...", help="Columns to compare [default: every usable column]."
    ),
    frequency: Frequency = typer.Option(
        Frequency.Day, "--frequency", case_sensitive=False, help="Window length (UTC calendar windows)."
    ),
    latency: float = typer.Option(
        0.0, "--latency", help="Hours to wait after a window ends before analysing it."
    ),
    threshold: float = typer.Option(
        0.2, "--threshold", "--drift-threshold",
        help="The Azure-style rule (the default): a coefficient at or above it emits "
        "DatasetDriftDetected.",
    ),
    false_alarm_rate: str = typer.Option(
        "none", "--false-alarm-rate", metavar="RATE|none",
        help="Calibrated decision: the share of no-drift windows that alarm (0.001 to 0.5, e.g. 0.05); "
        "`none` (the default) decides by --threshold alone.",
    ),
    schedule_enabled: bool = typer.Option(
        False, "--schedule-enabled", help="Analyse each window once it is due, in the background."
    ),
) -> None:
    """Create a data-drift monitor (or replace the definition of an existing one).

    Example (the dataset ids are those `mlgrid ml dataset list -w ws1` shows):

    ```
    mlgrid ml datadrift create -w ws1 --name sales-drift \\
        --baseline-dataset-id "$BASELINE_ID" --target-dataset-id "$TARGET_ID" --features amount channel \\
        --frequency Day --false-alarm-rate 0.01 --schedule-enabled
    ```
    """
    monitor = _workspace(ctx, workspace).create_drift_monitor(
        name,
        baseline_dataset_id,
        target_dataset_id,
        features=features or None,
        frequency=frequency.value,
        latency=int(latency) if float(latency).is_integer() else latency,
        threshold=threshold,
        schedule_enabled=schedule_enabled,
        false_alarm_rate=_rate(false_alarm_rate),
    )
    render(ctx, monitor.raw)


def _rate(value: str) -> float | None:
    if value.strip().lower() in {"none", "null", "off"}:
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise typer.BadParameter("a number such as 0.05, or none", param_hint="'--false-alarm-rate'") from exc


@app.command("show", cls=MlgridCommand)
def show(ctx: typer.Context, workspace: str = WORKSPACE, name: str = NAME) -> None:
    """Show a drift monitor: its id (the events' DataDriftId) and definition.

    Example: `mlgrid ml datadrift show -w ws1 --name sales-drift`
    """
    render(ctx, _monitor(ctx, workspace, name).raw)


@app.command("list", cls=MlgridCommand)
def list_monitors(ctx: typer.Context, workspace: str = WORKSPACE) -> None:
    """List the drift monitors of a workspace.

    Example: `mlgrid ml datadrift list -w ws1 -o table`
    """
    render(ctx, [m.raw for m in _workspace(ctx, workspace).drift_monitors()], MONITOR_COLUMNS)


@app.command("delete", cls=MlgridCommand)
def delete(ctx: typer.Context, workspace: str = WORKSPACE, name: str = NAME) -> None:
    """Delete a drift monitor and its runs (published events stay published).

    Example: `mlgrid ml datadrift delete -w ws1 --name sales-drift`
    """
    _workspace(ctx, workspace).delete_drift_monitor(name)


@app.command("backfill", cls=MlgridCommand)
def backfill(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    name: str = NAME,
    start: str = START,
    end: str = END,
) -> None:
    """Analyse every complete window between --start and --end, with a progress bar; prints
    one run per window. Windows analysed before are shown as stored (no second event).

    Example:

    ```
    mlgrid ml datadrift backfill -w ws1 --name sales-drift \\
        --start 2024-01-01 --end 2024-02-01 -o table
    ```
    """
    monitor = _monitor(ctx, workspace, name)
    err = console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task(f"analysing {monitor.frequency.lower()} windows", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)
            if not err.is_terminal:  # a log gets one line per request instead of a bar
                err.print(f"analysed {done} of {total} windows", markup=False, highlight=False)

        try:
            batch = _batch(monitor, start, end)
            runs = monitor.backfill(start, end, progress=report, windows_per_request=batch)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--start'/'--end'") from exc
    render(ctx, [r.raw for r in runs], RUN_COLUMNS)


def _batch(monitor: DriftMonitor, start: str, end: str) -> int:
    """Requests of a few windows each: fine-grained progress without one request per window
    on long ranges (each request reads the datasets once)."""
    try:
        total = len(complete_windows(parse_moment(start), parse_moment(end), monitor.frequency))
    except ValueError:
        return 1
    return max(1, min(31, math.ceil(total / 25)))


@app.command("runs", cls=MlgridCommand)
def runs(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    name: str = NAME,
    start: str | None = typer.Option(None, "--start", help="Only windows starting at or after this time."),
    end: str | None = typer.Option(None, "--end", help="Only windows ending at or before this time."),
) -> None:
    """List a monitor's past runs in window order.

    Example: `mlgrid ml datadrift runs -w ws1 --name sales-drift -o table`
    """
    try:
        found = _monitor(ctx, workspace, name).runs(start, end)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--start'/'--end'") from exc
    render(ctx, [r.raw for r in found], RUN_COLUMNS)
