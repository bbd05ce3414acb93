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

from mlgrid.cli.command import (
    OUTPUT_HELP,
    TOKEN_HELP,
    URL_HELP,
    WIDE_HELP,
    MlgridCommand,
    MlgridGroup,
    OutputFormat,
    QuietCommand,
    connection,
)
from mlgrid.cli.lazy import LazyCommand, LazyGroup
from mlgrid.config import Settings, spec_for
from mlgrid.errors import MlgridError


class _Root(LazyGroup, MlgridGroup):
    """``mlgrid``: ``serve`` is defined here; every other command is imported when it runs
    (``mlgrid --help`` imports none of them, see ``cli/lazy.py``)."""

    lazy = {
        "demo": LazyCommand(
            "mlgrid.cli.demo",
            "demo",
            "Run the ML lifecycle demo against a running server; every one of the five events "
            "shows in the UI.",
            MlgridCommand,
        ),
        "topic": LazyCommand(
            "mlgrid.cli.topics", "app", "Custom topics: create, show, list, delete, and their access keys."
        ),
        "eventgrid": LazyCommand(
            "mlgrid.cli.subscriptions",
            "eventgrid_app",
            "Azure Event Grid style commands (`az eventgrid` flags).",
        ),
        "events": LazyCommand(
            "mlgrid.cli.events",
            "app",
            "Publish events to custom topics, list retained events, follow them live (`tail`).",
        ),
        "deadletters": LazyCommand(
            "mlgrid.cli.deadletters",
            "app",
            "Dead-lettered events of an event subscription: list them, deliver them again.",
        ),
        "deliveries": LazyCommand(
            "mlgrid.cli.deliveries",
            "app",
            "Deliveries of an event subscription: list them by state, show one with every attempt, "
            "dead-letter one now, replay a time window.",
        ),
        "ml": LazyCommand(
            "mlgrid.cli.ml",
            "app",
            "The ML workspace: workspaces, runs, jobs, models, datasets, endpoints (deployments) and "
            "datadrift (drift monitors).",
        ),
    }
    order = ("demo", "serve", "topic", "eventgrid", "events", "deadletters", "deliveries", "ml")


app = typer.Typer(
    cls=_Root,
    help="mlgrid: a self-hosted event grid for the machine-learning lifecycle.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


@app.callback()
def root(
    ctx: typer.Context,
    url: str | None = typer.Option(None, "--url", metavar="URL", help=URL_HELP),
    token: str | None = typer.Option(None, "--token", metavar="TOKEN", help=TOKEN_HELP),
    output: OutputFormat | None = typer.Option(
        None, "--output", "-o", case_sensitive=False, help=OUTPUT_HELP
    ),
    wide: bool = typer.Option(False, "--wide", help=WIDE_HELP),
) -> None:
    """mlgrid: a self-hosted event grid for the machine-learning lifecycle.

    `mlgrid serve` runs the server; the other commands talk to a running server at `MLGRID_URL`
    (default http://127.0.0.1:8780) with `MLGRID_TOKEN` (default: the admin token of the local
    data dir). `--url`, `--token`, `-o json|table` and `--wide` may be given here or after any
    command.
    """
    settings = connection(ctx)
    settings.url = url if url is not None else settings.url
    settings.token = token if token is not None else settings.token
    settings.output = output.value if output is not None else settings.output
    settings.wide = settings.wide or wide


@app.command(cls=QuietCommand,
             help="Run the server: API, publish endpoints, dispatcher, scheduler and web UI.")
def serve(
    host: str | None = typer.Option(
        None, help=spec_for("host").help + " [env MLGRID_HOST; default 127.0.0.1]"),
    port: int | None = typer.Option(None, help=spec_for("port").help + " [env MLGRID_PORT; default 8780]"),
    data_dir: str | None = typer.Option(
        None, help=spec_for("data_dir").help + " [env MLGRID_DATA_DIR; default ./.mlgrid]"),
    database_url: str | None = typer.Option(
        None, help=spec_for("database_url").help + " [env MLGRID_DATABASE_URL]"),
    retry_schedule: str | None = typer.Option(
        None, help=spec_for("retry_schedule").help + " [env MLGRID_RETRY_SCHEDULE]"),
    deny_private_endpoints: bool | None = typer.Option(
        None, "--deny-private-endpoints/--allow-private-endpoints",
        help=spec_for("deny_private_endpoints").help + " [env MLGRID_DENY_PRIVATE_ENDPOINTS; default auto]"),
    webhook_validation: bool | None = typer.Option(
        None, "--webhook-validation/--no-webhook-validation",
        help=spec_for("webhook_validation").help + " [env MLGRID_WEBHOOK_VALIDATION; default on]"),
    public_url: str | None = typer.Option(
        None, help=spec_for("public_url").help + " [env MLGRID_PUBLIC_URL]"),
    subscription_id: str | None = typer.Option(
        None, help=spec_for("subscription_id").help + " [env MLGRID_SUBSCRIPTION_ID]"),
    secret_key: str | None = typer.Option(
        None, help=spec_for("secret_key").help + " [env MLGRID_SECRET_KEY]"),
    node_id: str | None = typer.Option(None, help=spec_for("node_id").help + " [env MLGRID_NODE_ID]"),
    log_level: str | None = typer.Option(None, help=spec_for("log_level").help + " [env MLGRID_LOG_LEVEL]"),
    otlp_endpoint: str | None = typer.Option(
        None, help=spec_for("otlp_endpoint").help + " [env MLGRID_OTLP_ENDPOINT]"),
    ui: bool | None = typer.Option(None, "--ui/--no-ui", help=spec_for("ui").help + " [env MLGRID_UI]"),
    unsafe_local_code: bool | None = typer.Option(
        None, "--unsafe-local-code",
        help=spec_for("unsafe_local_code").help + " [env MLGRID_UNSAFE_LOCAL_CODE]"),
    code_memory_limit_mb: int | None = typer.Option(
        None, help=spec_for("code_memory_limit_mb").help + " [env MLGRID_CODE_MEMORY_LIMIT_MB; default 0]"),
    job_cpu_seconds: int | None = typer.Option(
        None, help=spec_for("job_cpu_seconds").help + " [env MLGRID_JOB_CPU_SECONDS; default 0]"),
    job_network: str | None = typer.Option(
        None, help=spec_for("job_network").help + " [env MLGRID_JOB_NETWORK; default api]"),
    job_code_max_mb: int | None = typer.Option(
        None, help=spec_for("job_code_max_mb").help + " [env MLGRID_JOB_CODE_MAX_MB; default 300]"),
    header_timeout: float | None = typer.Option(
        None, help=spec_for("header_timeout").help + " [env MLGRID_HEADER_TIMEOUT; default 10]"),
    body_timeout: float | None = typer.Option(
        None, help=spec_for("body_timeout").help + " [env MLGRID_BODY_TIMEOUT; default 30]"),
    max_connections: int | None = typer.Option(
        None, help=spec_for("max_connections").help + " [env MLGRID_MAX_CONNECTIONS; default 2048]"),
    metrics_require_token: bool | None = typer.Option(
        None, "--metrics-require-token/--metrics-open",
        help=spec_for("metrics_require_token").help + " [env MLGRID_METRICS_REQUIRE_TOKEN; default auto]"),
    tls_certfile: str | None = typer.Option(
        None, help=spec_for("tls_certfile").help + " [env MLGRID_TLS_CERTFILE]"),
    tls_keyfile: str | None = typer.Option(
        None, help=spec_for("tls_keyfile").help + " [env MLGRID_TLS_KEYFILE]"),
    tls_self_signed: bool | None = typer.Option(
        None, "--tls-self-signed/--no-tls-self-signed",
        help=spec_for("tls_self_signed").help + " [env MLGRID_TLS_SELF_SIGNED; default off]"),
    blob_url: str | None = typer.Option(
        None, help=spec_for("blob_url").help + " [env MLGRID_BLOB_URL]"),
    blob_key: str | None = typer.Option(
        None, help=spec_for("blob_key").help + " [env MLGRID_BLOB_KEY]"),
    blob_container: str | None = typer.Option(
        None, help=spec_for("blob_container").help + " [env MLGRID_BLOB_CONTAINER; default mlgrid]"),
    advertise_url: str | None = typer.Option(
        None, help=spec_for("advertise_url").help + " [env MLGRID_ADVERTISE_URL]"),
    node_timeout: float | None = typer.Option(
        None, help=spec_for("node_timeout").help + " [env MLGRID_NODE_TIMEOUT; default 8]"),
    heartbeat_interval: float | None = typer.Option(
        None, help=spec_for("heartbeat_interval").help + " [env MLGRID_HEARTBEAT_INTERVAL; default 2]"),

    sqlite_synchronous: str | None = typer.Option(
        None, help=spec_for("sqlite_synchronous").help + " [env MLGRID_SQLITE_SYNCHRONOUS; default normal]"),
    delivery_window: int | None = typer.Option(
        None, help=spec_for("delivery_window").help + " [env MLGRID_DELIVERY_WINDOW; default 10000]"),
) -> None:
    from mlgrid.server import serve as run_server

    overrides: dict[str, Any] = {k: v for k, v in locals().items() if k != "run_server"}
    if blob_key is not None or (blob_url is not None and "AccountKey=" in blob_url):
        typer.echo("warning: a blob account key on the command line is visible to every local user in the "
                   "process list; prefer MLGRID_BLOB_URL / MLGRID_BLOB_KEY", err=True)
    if secret_key is not None:
        typer.echo("warning: --secret-key is visible to every local user in the process list; "
                   "prefer MLGRID_SECRET_KEY or <data-dir>/secret.key (docs/security.md)", err=True)
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
