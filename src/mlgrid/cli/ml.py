"""``mlgrid ml ...``: the ML workspace (workspaces, runs, jobs, models, datasets) on the SDK.

Each resource is a sub-app mounted on :data:`app` with one ``add_typer`` line, so deployments
(``ml endpoint``) and drift monitors (``ml datadrift``) are added the same way.
"""

from __future__ import annotations

import time
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import typer

from mlgrid.cli.command import MlgridCommand, MlgridGroup, key_value_pairs, open_client
from mlgrid.cli.output import Column, console, render
from mlgrid.cli.progress import WaitProgress
from mlgrid.cli.uploads import upload_progress
from mlgrid.client.code_snapshot import CodeSnapshotError
from mlgrid.client.runs import Run
from mlgrid.client.workspace import RunInfo, Workspace

app = typer.Typer(
    cls=MlgridGroup,
    help="The ML workspace: workspaces, runs, jobs, models, datasets, endpoints (deployments) and "
    "datadrift (drift monitors).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


def _group(help_text: str) -> typer.Typer:
    return typer.Typer(cls=MlgridGroup, help=help_text, no_args_is_help=True, rich_markup_mode="markdown")


workspace_app = _group("Workspaces (each has a system topic of ML events).")
run_app = _group("Experiment runs: start, read, complete, fail, log metrics.")
job_app = _group("Jobs: commands the server runs as runs.")
model_app = _group("The model registry: register (upload), list, show, download.")
dataset_app = _group("Tabular datasets (CSV or Parquet): register, list.")
app.add_typer(workspace_app, name="workspace")
app.add_typer(run_app, name="run")
app.add_typer(job_app, name="job")
app.add_typer(model_app, name="model")
app.add_typer(dataset_app, name="dataset")
app.add_typer(__import__("mlgrid.cli.datadrift", fromlist=["app"]).app, name="datadrift")
app.add_typer(__import__("mlgrid.cli.endpoints", fromlist=["app"]).app, name="endpoint")
app.add_typer(__import__("mlgrid.cli.connectors", fromlist=["app"]).app, name="connector")

WORKSPACE = typer.Option(
    ..., "--workspace-name", "-w", "--workspace", envvar="MLGRID_WORKSPACE", metavar="NAME",
    help="The workspace [env MLGRID_WORKSPACE].",
)
WORKSPACE_NAME = typer.Option(..., "--name", "-n", help="Name of the workspace.")
RUN_ID = typer.Option(..., "--run-id", help="The run id (`{experiment}_{unix-seconds}_{8 hex}`).")
TAGS = typer.Option(None, "--tags", metavar="KEY=VALUE...", help="Tags.")
PROPERTIES = typer.Option(None, "--properties", metavar="KEY=VALUE...", help="Properties (string values).")

WORKSPACE_COLUMNS: Final = [
    Column("name", "name"),
    Column("resourceGroup", "properties.resourceGroup"),
    Column("runStatusChangedEvents", "properties.runStatusChangedEvents"),
    Column("systemTopic", "properties.systemTopic"),
]
RUN_COLUMNS: Final = [
    Column("runId", "runId"),
    Column("experiment", "experimentName"),
    Column("status", "status"),
    Column("runType", "runType"),
    Column("startTime", "startTime"),
    Column("endTime", "endTime"),
]
ARTIFACT_COLUMNS: Final = [
    Column("path", "path"),
    Column("size", "size"),
    Column("sha256", "sha256"),
]
MODEL_COLUMNS: Final = [
    Column("name", "name"),
    Column("version", "version"),
    Column("tags", "tags"),
    Column("runId", "runId"),
    Column("createdTime", "createdTime"),
]
DATASET_COLUMNS: Final = [
    Column("name", "name"),
    Column("version", "version"),
    Column("id", "id"),
    Column("rows", "rowCount"),
    Column("timestampColumn", "timestampColumn"),
]
JOB_LOG: Final = "logs/job.log"


class RunStatusChangedEvents(StrEnum):
    failed = "failed"
    all = "all"


class StartStatus(StrEnum):
    NotStarted = "NotStarted"
    Queued = "Queued"
    Preparing = "Preparing"
    Running = "Running"


def _workspace(ctx: typer.Context, name: str) -> Workspace:
    return open_client(ctx).workspace(name)


def _run(ctx: typer.Context, workspace: str, run_id: str) -> Run:
    return _workspace(ctx, workspace).run(run_id)


def _pairs(values: list[str] | None, option: str) -> dict[str, str] | None:
    return None if values is None else key_value_pairs(values, option)


def _number(text: str) -> Decimal | int:
    """A metric value, exactly as written (``0.1`` stays ``0.1``, not a float's neighbour)."""
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise typer.BadParameter(f"{text!r} is not a number") from exc
    if not value.is_finite():
        raise typer.BadParameter(f"{text!r} is not a finite number")
    written_as_integer = text.strip().lstrip("+-").isdigit()
    return int(value) if written_as_integer else value


# --- workspaces ------------------------------------------------------------------------------


@workspace_app.command("create", cls=MlgridCommand)
def workspace_create(
    ctx: typer.Context,
    name: str = WORKSPACE_NAME,
    resource_group: str = typer.Option("default", "--resource-group", "-g", help="Resource group in its id."),
    run_status_changed_events: RunStatusChangedEvents = typer.Option(
        RunStatusChangedEvents.failed, "--run-status-changed-events", case_sensitive=False,
        help="Emit RunStatusChanged for failed runs only (as Azure) or for every status change.",
    ),
) -> None:
    """Create a workspace and its system topic (or change its settings).

    Examples:

    ```
    mlgrid ml workspace create --name ws1
    mlgrid ml workspace create --name ws1 --run-status-changed-events all
    ```
    """
    client = open_client(ctx)
    created = client.workspaces.create(name, resource_group, run_status_changed_events.value)
    render(ctx, created.info.raw)


@workspace_app.command("show", cls=MlgridCommand)
def workspace_show(ctx: typer.Context, name: str = WORKSPACE_NAME) -> None:
    """Show a workspace: its resource id (use it as `--source-resource-id`) and settings.

    Example: `mlgrid ml workspace show --name ws1`
    """
    render(ctx, _workspace(ctx, name).info.raw)


@workspace_app.command("list", cls=MlgridCommand)
def workspace_list(ctx: typer.Context) -> None:
    """List the workspaces you may read.

    Example: `mlgrid ml workspace list -o table`
    """
    render(ctx, [w.raw for w in open_client(ctx).workspaces.list()], WORKSPACE_COLUMNS)


@workspace_app.command("delete", cls=MlgridCommand)
def workspace_delete(ctx: typer.Context, name: str = WORKSPACE_NAME) -> None:
    """Delete a workspace with its runs, models, datasets, system topic and subscriptions.

    Example: `mlgrid ml workspace delete --name ws1`
    """
    open_client(ctx).workspaces.delete(name)


# --- runs ------------------------------------------------------------------------------------


@run_app.command("start", cls=MlgridCommand)
def run_start(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    experiment: str = typer.Option(..., "--experiment", "-e", help="Experiment (created on first use)."),
    run_type: str | None = typer.Option(None, "--run-type", help="RunType of the run's events."),
    tags: list[str] | None = TAGS,
    properties: list[str] | None = PROPERTIES,
    status: StartStatus = typer.Option(StartStatus.Running, "--status", help="Initial status."),
) -> None:
    """Start a run of an experiment; prints the run (its `runId` is needed by the other commands).

    Example: `mlgrid ml run start -w ws1 --experiment train --tags team=a stage=dev`
    """
    run = _workspace(ctx, workspace).start_run(
        experiment,
        run_type=run_type,
        tags=_pairs(tags, "--tags"),
        properties=_pairs(properties, "--properties"),
        status=status.value,
    )
    render(ctx, run.info.raw)


@run_app.command("show", cls=MlgridCommand)
def run_show(ctx: typer.Context, workspace: str = WORKSPACE, run_id: str = RUN_ID) -> None:
    """Show a run.

    Example: `mlgrid ml run show -w ws1 --run-id train_1700000000_0a1b2c3d`
    """
    render(ctx, _run(ctx, workspace, run_id).info.raw)


@run_app.command("list", cls=MlgridCommand)
def run_list(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    experiment: str | None = typer.Option(None, "--experiment", "-e", help="Only this experiment."),
    status: list[str] | None = typer.Option(
        None, "--status", metavar="STATUS...", help="Only these statuses."
    ),
    run_type: str | None = typer.Option(None, "--run-type", help="Only this run type."),
) -> None:
    """List runs, newest first.

    Example: `mlgrid ml run list -w ws1 --experiment train --status Completed Failed -o table`
    """
    runs = _workspace(ctx, workspace).runs(experiment=experiment, status=status, run_type=run_type)
    render(ctx, [r.raw for r in runs], RUN_COLUMNS)


@run_app.command("artifacts", cls=MlgridCommand)
def run_artifacts(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    run_id: str = RUN_ID,
    prefix: str | None = typer.Option(None, "--prefix", help="Only paths starting with this (snapshot/)."),
) -> None:
    """List a run's artifacts: its files, a job's log and code snapshot (`snapshot/...`).

    Example: `mlgrid ml run artifacts -w ws1 --run-id train_1700000000_0a1b2c3d --prefix snapshot/`
    """
    artifacts = _run(ctx, workspace, run_id).artifacts(prefix)
    render(ctx, [{"path": a.path, "size": a.size, "sha256": a.sha256} for a in artifacts], ARTIFACT_COLUMNS)


@run_app.command("download", cls=MlgridCommand)
def run_download(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    run_id: str = RUN_ID,
    path: str = typer.Option(..., "--path", help="The artifact's path, e.g. snapshot/train.py."),
    file: Path | None = typer.Option(None, "--file", "-f", help="Write it here instead of to stdout."),
) -> None:
    """Download one artifact of a run (to stdout, or to `--file`).

    Example: `mlgrid ml run download -w ws1 --run-id train_1700000000_0a1b2c3d --path snapshot/train.py`
    """
    content = _run(ctx, workspace, run_id).download_artifact(path)
    if file is None:
        typer.echo(content.decode("utf-8", errors="replace"), nl=False)
        return
    file.write_bytes(content)
    typer.echo(f"{len(content)} bytes written to {file}", err=True)


@run_app.command("complete", cls=MlgridCommand)
def run_complete(ctx: typer.Context, workspace: str = WORKSPACE, run_id: str = RUN_ID) -> None:
    """Mark a run Completed (emits RunCompleted).

    Example: `mlgrid ml run complete -w ws1 --run-id train_1700000000_0a1b2c3d`
    """
    render(ctx, _run(ctx, workspace, run_id).complete().raw)


@run_app.command("fail", cls=MlgridCommand)
def run_fail(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    run_id: str = RUN_ID,
    error: str = typer.Option("failed from the CLI", "--error", help="Why the run failed."),
) -> None:
    """Mark a run Failed (emits RunStatusChanged).

    Example: `mlgrid ml run fail -w ws1 --run-id train_1700000000_0a1b2c3d --error "out of memory"`
    """
    render(ctx, _run(ctx, workspace, run_id).fail(error).raw)


@run_app.command("log-metric", cls=MlgridCommand)
def run_log_metric(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    run_id: str = RUN_ID,
    name: str = typer.Option(..., "--name", "-n", help="Metric name."),
    value: str = typer.Option(..., "--value", help="Metric value (a number, kept exactly)."),
    step: int = typer.Option(0, "--step", help="Step (epoch, iteration)."),
) -> None:
    """Log one metric value of a run; prints the run's values of that metric.

    Example: `mlgrid ml run log-metric -w ws1 --run-id <run id> --name rmse --value 0.31 --step 3`
    """
    run = _run(ctx, workspace, run_id)
    run.log_metric(name, _number(value), step=step)
    metrics = [{"name": m.name, "value": m.value, "step": m.step, "time": m.time} for m in run.metrics(name)]
    render(ctx, metrics)


# --- jobs ------------------------------------------------------------------------------------


def _wait_with_status(run: Run, timeout: float, poll_interval: float) -> RunInfo:
    """Poll until the run is terminal, showing its status on stderr (see :mod:`cli.progress`)."""
    deadline = time.monotonic() + timeout
    with WaitProgress(console(stderr=True), f"job {run.id}", run.status) as progress:
        while not run.refresh().is_terminal:
            progress.update(run.status)
            if time.monotonic() > deadline:
                typer.echo(f"error: job {run.id} is still {run.status} after {timeout:g} s", err=True)
                raise typer.Exit(1)
            time.sleep(poll_interval)
        progress.update(run.status)
    return run.info


@job_app.command("submit", cls=MlgridCommand)
def job_submit(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    experiment: str = typer.Option(..., "--experiment", "-e", help="Experiment of the run."),
    command: str = typer.Option(..., "--command", help="Shell command the server runs (`/bin/sh -c`)."),
    code: Path | None = typer.Option(
        None,
        "--code",
        help="Directory uploaded with the job (its snapshot, without what .amlignore/.gitignore ignore); "
        "the command runs in a copy of it. Default: the current directory.",
    ),
    no_code: bool = typer.Option(
        False, "--no-code", help="Upload no code: the job starts in an empty directory."
    ),
    working_directory: Path | None = typer.Option(
        None,
        "--working-directory",
        help="Instead of --code: a directory on the server to copy (when client and server share a machine).",
    ),
    env: list[str] | None = typer.Option(
        None, "--env", metavar="NAME=VALUE...", help="Environment variables of the command."
    ),
    run_type: str | None = typer.Option(None, "--run-type", help="RunType of the run's events."),
    tags: list[str] | None = TAGS,
    wait: bool = typer.Option(False, "--wait", help="Wait for the job to end, showing its status."),
    timeout: float = typer.Option(600.0, "--timeout", help="With --wait: give up after this many seconds."),
    poll_interval: float = typer.Option(0.5, "--poll-interval", help="With --wait: seconds between checks."),
    network: str | None = typer.Option(
        None, "--network", metavar="api|none|host",
        help="The job's network: api (only the server's API), none, or host. Default: the server's "
        "job_network.",
    ),
    memory_mb: int | None = typer.Option(None, "--memory-mb", help="Memory limit (MiB, per process)."),
    cpu_seconds: int | None = typer.Option(
        None, "--cpu-seconds", help="CPU time limit (seconds, per process)."
    ),
) -> None:
    """Submit a job: the server runs the command as a run, keeps its output as the artifact
    `logs/job.log`, and sets Completed or Failed from its exit code.

    The code directory (`--code`, default `.`) travels with the job, as in Azure ML: its files,
    less what `.amlignore` (or else `.gitignore`) ignores, are uploaded (at most 300 MB and 2000
    files), kept as the run's artifacts under `snapshot/`, and the command runs in a copy of them.

    With `--wait` the command returns when the job ends and exits with 1 unless it completed
    (or when `--timeout` passes first; the job keeps running).

    Examples:

    ```
    mlgrid ml job submit -w ws1 --experiment train --command "python train.py" --wait
    mlgrid ml job submit -w ws1 -e nightly --command "make features" --env DATE=2030-01-01
    mlgrid ml job submit -w ws1 -e fetch --command "python download.py" --network host --memory-mb 2048
    ```
    """
    if working_directory is not None and code is not None:
        raise typer.BadParameter("give --code (uploaded) or --working-directory (on the server), not both")
    upload = None if no_code or working_directory is not None else (code or Path("."))
    try:
        run = _workspace(ctx, workspace).submit_job(
            command,
            experiment,
            working_directory=working_directory,
            code=upload,
            environment=_pairs(env, "--env"),
            run_type=run_type,
            tags=_pairs(tags, "--tags"),
            network=network,
            memory_mb=memory_mb,
            cpu_seconds=cpu_seconds,
        )
    except CodeSnapshotError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if not wait:
        render(ctx, run.info.raw)
        return
    info = _wait_with_status(run, timeout, poll_interval)
    render(ctx, info.raw)
    if info.status != "Completed":
        detail = f" (exit code {info.exit_code})" if info.exit_code is not None else ""
        typer.echo(f"error: job {info.run_id} ended {info.status}{detail}", err=True)
        raise typer.Exit(1)


@job_app.command("show", cls=MlgridCommand)
def job_show(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    run_id: str = RUN_ID,
    log: bool = typer.Option(False, "--log", help=f"Print the job's output ({JOB_LOG}) instead."),
) -> None:
    """Show a job's run (status, exit code), or its output with `--log`.

    Examples:

    ```
    mlgrid ml job show -w ws1 --run-id train_1700000000_0a1b2c3d
    mlgrid ml job show -w ws1 --run-id train_1700000000_0a1b2c3d --log
    ```
    """
    run = _run(ctx, workspace, run_id)
    if log:
        typer.echo(run.download_artifact(JOB_LOG).decode("utf-8", errors="replace"), nl=False)
    else:
        render(ctx, run.info.raw)


# --- models ----------------------------------------------------------------------------------


@model_app.command("register", cls=MlgridCommand)
def model_register(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    name: str = typer.Option(..., "--name", "-n", help="Model name (versions count 1, 2, 3...)."),
    path: Path | None = typer.Option(None, "--path", help="A local model file or directory to upload."),
    run_id: str | None = typer.Option(None, "--run-id", help="Or: a run whose artifact is the model..."),
    artifact_path: str | None = typer.Option(None, "--artifact-path", help="...at this artifact path."),
    tags: list[str] | None = TAGS,
    properties: list[str] | None = PROPERTIES,
    description: str = typer.Option("", "--description", help="Description."),
) -> None:
    """Register a new model version (emits ModelRegistered), uploading a file or directory
    with a progress bar, or taking a run's artifact.

    Examples:

    ```
    mlgrid ml model register -w ws1 --name churn --path model.pkl --tags key1=value1
    mlgrid ml model register -w ws1 --name churn --run-id train_1700000000_0a1b2c3d \\
        --artifact-path outputs/model.pkl
    ```
    """
    if (path is None) == (run_id is None or artifact_path is None):
        raise typer.BadParameter("give --path, or --run-id with --artifact-path", param_hint="'--path'")
    if path is not None and not path.exists():
        raise typer.BadParameter(f"{path} does not exist", param_hint="'--path'")
    ws = _workspace(ctx, workspace)
    arguments: dict[str, Any] = {
        "tags": _pairs(tags, "--tags"),
        "properties": _pairs(properties, "--properties"),
        "description": description,
    }
    if path is None:
        version = ws.register_model(name, run_id=run_id, artifact_path=artifact_path, **arguments)
    else:
        with upload_progress(ws.http, f"uploading {path.name}") as transport:
            version = Workspace(transport, ws.info).register_model(name, path=path, **arguments)
    render(ctx, version.raw)


@model_app.command("list", cls=MlgridCommand)
def model_list(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    name: str | None = typer.Option(None, "--name", "-n", help="Only the versions of this model."),
) -> None:
    """List model versions.

    Example: `mlgrid ml model list -w ws1 -o table`
    """
    render(ctx, [m.raw for m in _workspace(ctx, workspace).models(name)], MODEL_COLUMNS)


@model_app.command("show", cls=MlgridCommand)
def model_show(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    name: str = typer.Option(..., "--name", "-n", help="Model name."),
    version: str = typer.Option(..., "--version", "-v", help="Model version."),
) -> None:
    """Show a model version (files, tags, the run it came from).

    Example: `mlgrid ml model show -w ws1 --name churn --version 2`
    """
    render(ctx, _workspace(ctx, workspace).model(name, version).raw)


@model_app.command("download", cls=MlgridCommand)
def model_download(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    name: str = typer.Option(..., "--name", "-n", help="Model name."),
    version: str = typer.Option(..., "--version", "-v", help="Model version."),
    dest: Path = typer.Option(Path("."), "--dest", help="File or directory to write to."),
) -> None:
    """Download a model version: a file model to `--dest` (or into it, if a directory), a
    directory model extracted into `--dest`.

    Example: `mlgrid ml model download -w ws1 --name churn --version 2 --dest ./models/`
    """
    written = _workspace(ctx, workspace).download_model(name, version, dest)
    render(ctx, {"name": name, "version": version, "path": str(written)})


# --- datasets --------------------------------------------------------------------------------


@dataset_app.command("register", cls=MlgridCommand)
def dataset_register(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    name: str = typer.Option(..., "--name", "-n", help="Dataset name (versions count 1, 2, 3...)."),
    path: Path = typer.Option(..., "--path", help="A CSV or Parquet file to upload."),
    timestamp_column: str | None = typer.Option(
        None, "--timestamp-column", help="Column with each row's time (needed for drift targets)."
    ),
    description: str = typer.Option("", "--description", help="Description."),
) -> None:
    """Register a tabular file as a new dataset version (upload with a progress bar).

    Example: `mlgrid ml dataset register -w ws1 --name sales --path sales.csv --timestamp-column date`
    """
    if not path.is_file():
        raise typer.BadParameter(f"{path} is not a file", param_hint="'--path'")
    ws = _workspace(ctx, workspace)
    with upload_progress(ws.http, f"uploading {path.name}") as transport:
        dataset = Workspace(transport, ws.info).register_dataset(name, path, timestamp_column, description)
    render(ctx, dataset.raw)


@dataset_app.command("list", cls=MlgridCommand)
def dataset_list(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    name: str | None = typer.Option(None, "--name", "-n", help="Only the versions of this dataset."),
) -> None:
    """List dataset versions.

    Example: `mlgrid ml dataset list -w ws1 -o table`
    """
    render(ctx, [d.raw for d in _workspace(ctx, workspace).datasets(name)], DATASET_COLUMNS)
