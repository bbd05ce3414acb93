"""``mlgrid ml endpoint ...``: model deployments on the SDK (deploy, show, list, score, logs,
delete). Mounted on ``mlgrid ml`` as ``endpoint``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Final

import typer

from mlgrid.cli.command import MlgridCommand, MlgridGroup, key_value_pairs, open_client
from mlgrid.cli.output import Column, console, render
from mlgrid.cli.progress import WaitProgress
from mlgrid.client.endpoints import Endpoint
from mlgrid.client.workspace import Workspace
from mlgrid.domain.endpoints import DeploymentState

app = typer.Typer(
    cls=MlgridGroup,
    help="Model deployments: Local endpoints that score registered models.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

WORKSPACE = typer.Option(
    ..., "--workspace-name", "-w", "--workspace", envvar="MLGRID_WORKSPACE", metavar="NAME",
    help="The workspace [env MLGRID_WORKSPACE].",
)
NAME = typer.Option(..., "--name", "-n", help="Name of the endpoint.")
ENDPOINT_COLUMNS: Final = [
    Column("name", "name"),
    Column("state", "properties.state"),
    Column("models", "properties.models"),
    Column("activeModels", "properties.activeModels"),
    Column("scoringUri", "properties.scoringUri"),
    Column("updatedTime", "properties.updatedTime"),
]


def _workspace(ctx: typer.Context, name: str) -> Workspace:
    return open_client(ctx).workspace(name)


def _wait(endpoint: Endpoint, timeout: float, poll_interval: float) -> Endpoint:
    """Poll until the deployment started is done, showing its state (see :mod:`cli.progress`)."""
    started = endpoint.deployment_id
    deadline = time.monotonic() + timeout
    with WaitProgress(console(stderr=True), f"deploying {endpoint.name}", endpoint.state) as progress:
        while endpoint.refresh().state == DeploymentState.DEPLOYING and endpoint.deployment_id == started:
            progress.update(endpoint.state)
            if time.monotonic() > deadline:
                typer.echo(
                    f"error: endpoint {endpoint.name} is still {endpoint.state} after {timeout:g} s "
                    "(the deployment goes on; check with `mlgrid ml endpoint show`)",
                    err=True,
                )
                raise typer.Exit(1)
            time.sleep(poll_interval)
        progress.update(endpoint.state)
    return endpoint


@app.command("deploy", cls=MlgridCommand)
def endpoint_deploy(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    name: str = NAME,
    models: list[str] | None = typer.Option(
        None, "--models", "--model", "-m", metavar="NAME:VERSION...", help="Registered model versions."
    ),
    entry_script: str | None = typer.Option(
        None, "--entry-script",
        help="A scoring script with init() and run(raw_data): a local file (sent along), or a path "
        "inside a deployed model.",
    ),
    compute_type: str = typer.Option("Local", "--compute-type", help="Only Local is supported."),
    tags: list[str] | None = typer.Option(None, "--tags", metavar="KEY=VALUE...", help="Tags (ServiceTags)."),
    properties: list[str] | None = typer.Option(
        None, "--properties", metavar="KEY=VALUE...", help="Properties (ServiceProperties)."
    ),
    startup_timeout: float | None = typer.Option(
        None, "--startup-timeout", help="Seconds the scoring process may take to answer (default 120)."
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until Healthy or Failed, with a spinner."),
    timeout: float = typer.Option(600.0, "--timeout", help="With --wait: give up after this many seconds."),
    poll_interval: float = typer.Option(0.5, "--poll-interval", help="With --wait: seconds between checks."),
) -> None:
    """Deploy model versions to a Local endpoint, or redeploy it with other ones.

    The server starts a scoring process on a free loopback port; once it answers its health
    check the endpoint is Healthy and ModelDeployed is emitted. The command waits for that
    (a spinner on a terminal) and exits with 1 if the deployment ends Failed, printing the
    scoring log.

    Examples:

    ```
    mlgrid ml endpoint deploy -w ws1 -n churn-api --models churn:3
    mlgrid ml endpoint deploy -w ws1 -n churn-api --models churn:3 encoder:1 --entry-script score.py
    mlgrid ml endpoint deploy -w ws1 -n churn-api --models churn:4 --tags team=ml --no-wait
    ```
    """
    script: str | Path | None = entry_script
    if entry_script is not None and Path(entry_script).is_file():
        script = Path(entry_script)
    ws = _workspace(ctx, workspace)
    endpoint = ws.deploy(
        name,
        models=list(models or []),
        compute_type=compute_type,
        entry_script=script,
        tags=None if tags is None else key_value_pairs(tags, "--tags"),
        properties=None if properties is None else key_value_pairs(properties, "--properties"),
        wait=False,
        startup_timeout=startup_timeout,
    )
    if wait:
        endpoint = _wait(endpoint, timeout, poll_interval)
    render(ctx, endpoint.raw)
    if wait and endpoint.state == DeploymentState.FAILED:
        typer.echo(f"error: the deployment of {endpoint.name} failed:\n{endpoint.error or ''}", err=True)
        raise typer.Exit(1)


@app.command("show", cls=MlgridCommand)
def endpoint_show(ctx: typer.Context, workspace: str = WORKSPACE, name: str = NAME) -> None:
    """Show an endpoint: its state, scoring URI, models and the error of a failed deployment.

    Example: `mlgrid ml endpoint show -w ws1 -n churn-api`
    """
    render(ctx, _workspace(ctx, workspace).endpoint(name).raw)


@app.command("list", cls=MlgridCommand)
def endpoint_list(ctx: typer.Context, workspace: str = WORKSPACE) -> None:
    """List the endpoints of a workspace.

    Example: `mlgrid ml endpoint list -w ws1 -o table`
    """
    render(ctx, [e.raw for e in _workspace(ctx, workspace).endpoints()], ENDPOINT_COLUMNS)


@app.command("score", cls=MlgridCommand)
def endpoint_score(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    name: str = NAME,
    data: str | None = typer.Option(None, "--data", "-d", help="The JSON body, e.g. '{\"data\": [[1, 2]]}'."),
    file: Path | None = typer.Option(None, "--file", "-f", help="Read the body from a file ('-': stdin)."),
) -> None:
    """Score through the server: the body goes to the endpoint's model and its answer is printed.

    Examples:

    ```
    mlgrid ml endpoint score -w ws1 -n churn-api --data '{"data": [[5.1, 3.5, 1.4, 0.2]]}'
    mlgrid ml endpoint score -w ws1 -n churn-api --file rows.json
    ```
    """
    if (data is None) == (file is None):
        raise typer.BadParameter("give --data or --file", param_hint="'--data'")
    if data is not None:
        body = data.encode()
    elif str(file) == "-":
        body = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    else:
        assert file is not None
        if not file.is_file():
            raise typer.BadParameter(f"{file} is not a file", param_hint="'--file'")
        body = file.read_bytes()
    try:
        json.loads(body)
    except ValueError as exc:
        raise typer.BadParameter(f"the body is not JSON: {exc}", param_hint="'--data'") from exc
    endpoint = _workspace(ctx, workspace).endpoint(name)
    render(ctx, endpoint.score(body))


@app.command("logs", cls=MlgridCommand)
def endpoint_logs(ctx: typer.Context, workspace: str = WORKSPACE, name: str = NAME) -> None:
    """Print the scoring log of the deployment that serves the endpoint.

    Example: `mlgrid ml endpoint logs -w ws1 -n churn-api`
    """
    typer.echo(_workspace(ctx, workspace).endpoint(name).logs(), nl=False)


@app.command("delete", cls=MlgridCommand)
def endpoint_delete(ctx: typer.Context, workspace: str = WORKSPACE, name: str = NAME) -> None:
    """Delete an endpoint; its scoring process stops.

    Example: `mlgrid ml endpoint delete -w ws1 -n churn-api`
    """
    _workspace(ctx, workspace).endpoint(name).delete()
