"""``mlgrid ml connector ...``: connectors (an MLflow tracking server as an event source), on the SDK."""

from __future__ import annotations

from typing import Final

import typer

from mlgrid.cli.command import MlgridCommand, MlgridGroup, open_client
from mlgrid.cli.output import Column, render
from mlgrid.client.workspace import Workspace

app = typer.Typer(
    cls=MlgridGroup,
    help="Connectors (MLflow): create, show, list, delete, resync.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

WORKSPACE = typer.Option(
    ...,
    "--workspace-name",
    "-w",
    "--workspace",
    envvar="MLGRID_WORKSPACE",
    metavar="NAME",
    help="The workspace [env MLGRID_WORKSPACE].",
)
NAME = typer.Option("mlflow", "--name", "-n", help="Name of the connector (3-64 letters, digits, '-', '_').")

COLUMNS: Final = [
    Column("name", "name"),
    Column("trackingUri", "properties.trackingUri"),
    Column("state", "properties.health.state"),
    Column("lastSuccessfulPoll", "properties.health.lastSuccessfulPoll"),
    Column("eventsEmitted", "properties.health.eventsEmitted"),
    Column("lastError", "properties.health.lastError"),
]


def _workspace(ctx: typer.Context, name: str) -> Workspace:
    return open_client(ctx).workspace(name)


@app.command("create", cls=MlgridCommand)
def create(
    ctx: typer.Context,
    workspace: str = WORKSPACE,
    name: str = NAME,
    tracking_uri: str = typer.Option(
        ..., "--tracking-uri", help="http(s) URL of the MLflow tracking server."
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="MLGRID_MLFLOW_TOKEN",
        help="Bearer token for MLflow [env MLGRID_MLFLOW_TOKEN].",
    ),
    poll_interval: float | None = typer.Option(
        None, "--poll-interval", help="Seconds between polls (1-3600)."
    ),
    full_sweep_minutes: float | None = typer.Option(
        None, "--full-sweep-minutes", help="Minutes between full sweeps."
    ),
    experiments: list[str] | None = typer.Option(
        None, "--experiment", metavar="NAME", help="Follow only this experiment (repeat) [default: all]."
    ),
    deployment_aliases: list[str] | None = typer.Option(
        None,
        "--deployment-alias",
        metavar="ALIAS",
        help="Alias whose moves emit ModelDeployed (repeat) [default: champion].",
    ),
    webhook_secret: str | None = typer.Option(
        None,
        "--webhook-secret",
        envvar="MLGRID_MLFLOW_WEBHOOK_SECRET",
        help="Secret of MLflow webhooks sent to the connector [env MLGRID_MLFLOW_WEBHOOK_SECRET].",
    ),
    backfill: bool = typer.Option(False, "--backfill", help="The first sync also emits MLflow's past."),
    intake: str | None = typer.Option(
        None,
        "--intake",
        metavar="polling|outbox",
        help="polling (REST) or outbox (the mlgrid-mlflow-outbox plugin's table) [default: polling].",
    ),
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        envvar="MLGRID_MLFLOW_DATABASE_URL",
        help="MLflow's database, for --intake outbox [env MLGRID_MLFLOW_DATABASE_URL].",
    ),
) -> None:
    """Create (or replace) an MLflow connector: the server's runs, model versions and aliases
    become the workspace's events.

    Example: `mlgrid ml connector create -w ws1 --tracking-uri http://mlflow:5000 --deployment-alias champion`
    """
    connector = _workspace(ctx, workspace).create_mlflow_connector(
        name,
        tracking_uri,
        token=token,
        poll_interval_seconds=poll_interval,
        full_sweep_minutes=full_sweep_minutes,
        experiments=experiments or None,
        deployment_aliases=deployment_aliases or None,
        webhook_secret=webhook_secret,
        backfill=backfill or None,
        intake=intake,
        database_url=database_url,
    )
    render(ctx, connector.raw)


@app.command("show", cls=MlgridCommand)
def show(ctx: typer.Context, workspace: str = WORKSPACE, name: str = NAME) -> None:
    """Show a connector and its health (state, last poll, lag, objects tracked, last error).

    Example: `mlgrid ml connector show -w ws1`
    """
    render(ctx, _workspace(ctx, workspace).connector(name).raw)


@app.command("list", cls=MlgridCommand)
def list_connectors(ctx: typer.Context, workspace: str = WORKSPACE) -> None:
    """List the connectors of a workspace.

    Example: `mlgrid ml connector list -w ws1 -o table`
    """
    render(ctx, [c.raw for c in _workspace(ctx, workspace).connectors()], COLUMNS)


@app.command("delete", cls=MlgridCommand)
def delete(ctx: typer.Context, workspace: str = WORKSPACE, name: str = NAME) -> None:
    """Delete a connector (events already emitted stay).

    Example: `mlgrid ml connector delete -w ws1`
    """
    _workspace(ctx, workspace).delete_connector(name)


@app.command("resync", cls=MlgridCommand)
def resync(ctx: typer.Context, workspace: str = WORKSPACE, name: str = NAME) -> None:
    """Run a full sweep of MLflow now (finds backdated runs and anything written while mlgrid was down).

    Example: `mlgrid ml connector resync -w ws1`
    """
    render(ctx, _workspace(ctx, workspace).connector(name).resync().raw)
