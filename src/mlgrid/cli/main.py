"""The ``mlgrid`` command line: ``mlgrid serve`` and the commands that talk to a server.

Each command group lives in its own module and is mounted here with one ``add_typer`` line;
the client commands share :class:`mlgrid.cli.command.MlgridCommand` (az-style multi-value
flags, ``--url``/``--token``/``-o`` on every command, server errors on stderr with exit 1).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

from mlgrid.cli import deadletters, deliveries, demo, events, ml, subscriptions, topics
from mlgrid.cli.command import OUTPUT_HELP, TOKEN_HELP, URL_HELP, MlgridCommand, OutputFormat, connection
from mlgrid.config import SETTINGS, Settings
from mlgrid.errors import MlgridError

app = typer.Typer(
    help="mlgrid: a self-hosted event grid for the machine-learning lifecycle.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
app.add_typer(topics.app, name="topic")
app.add_typer(subscriptions.eventgrid_app, name="eventgrid")
app.add_typer(events.app, name="events")
app.add_typer(deadletters.app, name="deadletters")
app.add_typer(deliveries.app, name="deliveries")
app.add_typer(ml.app, name="ml")
app.command("demo", cls=MlgridCommand)(demo.demo)


@app.callback()
def root(
    ctx: typer.Context,
    url: str | None = typer.Option(None, "--url", metavar="URL", help=URL_HELP),
    token: str | None = typer.Option(None, "--token", metavar="TOKEN", help=TOKEN_HELP),
    output: OutputFormat | None = typer.Option(
        None, "--output", "-o", case_sensitive=False, help=OUTPUT_HELP
    ),
) -> None:
    """mlgrid: a self-hosted event grid for the machine-learning lifecycle.

    `mlgrid serve` runs the server; the other commands talk to a running server at `MLGRID_URL`
    (default http://127.0.0.1:8780) with `MLGRID_TOKEN` (default: the admin token of the local
    data dir). `--url`, `--token` and `-o json|table` may be given here or after any command.
    """
    settings = connection(ctx)
    settings.url = url if url is not None else settings.url
    settings.token = token if token is not None else settings.token
    settings.output = output.value if output is not None else settings.output


@app.command(help="Run the server: API, publish endpoints, dispatcher, scheduler and web UI.")
def serve(
    host: str | None = typer.Option(None, help=SETTINGS[0].help + " [env MLGRID_HOST; default 127.0.0.1]"),
    port: int | None = typer.Option(None, help=SETTINGS[1].help + " [env MLGRID_PORT; default 8780]"),
    data_dir: str | None = typer.Option(
        None, help=SETTINGS[2].help + " [env MLGRID_DATA_DIR; default ./.mlgrid]"),
    database_url: str | None = typer.Option(None, help=SETTINGS[3].help + " [env MLGRID_DATABASE_URL]"),
    retry_schedule: str | None = typer.Option(None, help=SETTINGS[4].help + " [env MLGRID_RETRY_SCHEDULE]"),
    deny_private_endpoints: bool | None = typer.Option(
        None, "--deny-private-endpoints/--allow-private-endpoints",
        help=SETTINGS[5].help + " [env MLGRID_DENY_PRIVATE_ENDPOINTS; default allow]"),
    webhook_validation: bool | None = typer.Option(
        None, "--webhook-validation/--no-webhook-validation",
        help=SETTINGS[6].help + " [env MLGRID_WEBHOOK_VALIDATION; default on]"),
    public_url: str | None = typer.Option(None, help=SETTINGS[7].help + " [env MLGRID_PUBLIC_URL]"),
    subscription_id: str | None = typer.Option(None, help=SETTINGS[8].help + " [env MLGRID_SUBSCRIPTION_ID]"),
    secret_key: str | None = typer.Option(None, help=SETTINGS[9].help + " [env MLGRID_SECRET_KEY]"),
    node_id: str | None = typer.Option(None, help=SETTINGS[10].help + " [env MLGRID_NODE_ID]"),
    log_level: str | None = typer.Option(None, help=SETTINGS[11].help + " [env MLGRID_LOG_LEVEL]"),
    ui: bool | None = typer.Option(None, "--ui/--no-ui", help=SETTINGS[12].help + " [env MLGRID_UI]"),
    sqlite_synchronous: str | None = typer.Option(
        None, help=SETTINGS[13].help + " [env MLGRID_SQLITE_SYNCHRONOUS; default normal]"),
) -> None:
    from mlgrid.server import serve as run_server

    overrides: dict[str, Any] = {k: v for k, v in locals().items() if k != "run_server"}
    try:
        settings = Settings.from_sources(overrides, dict(os.environ))
    except MlgridError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    run_server(settings)


def main() -> None:
    try:
        app()
    except MlgridError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
