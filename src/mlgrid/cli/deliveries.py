"""``mlgrid deliveries ...``: what happened to each event of a subscription, and replay.

``list`` shows the subscription's delivery records (the ``GET .../deliveries`` API), so a user
can see why an event did not arrive without reading server logs; ``replay`` queues the
retained events of a time window again (``POST .../replay``). Times given on the command line
are checked here, with the parser the server uses, so a typo is a usage error naming the flag
before any request; whether ``--to`` comes after ``--from`` is left to the server, whose
message names the field.
"""

from __future__ import annotations

from typing import Final

import typer

from mlgrid.cli.command import MlgridCommand, MlgridGroup, open_client, output_format
from mlgrid.cli.output import Column, render
from mlgrid.cli.subscriptions import NAME, SOURCE
from mlgrid.client.broker import Source
from mlgrid.domain.deliveries import DELIVERY_STATES
from mlgrid.events.timestamps import format_timestamp, parse_timestamp

app = typer.Typer(
    cls=MlgridGroup,
    help="Deliveries of an event subscription: list them by state, show one with every attempt, "
    "dead-letter one now, replay a time window.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


def delivery_state(value: str) -> str:
    """``--state``: one of :data:`DELIVERY_STATES` in any case, sent as the API spells it.

    A parser rather than an enum choice so that help and errors show ``deadLettered`` as the
    API and its docs write it (Typer shows case-insensitive choices folded to lower case).
    """
    for state in DELIVERY_STATES:
        if state.lower() == value.lower():
            return state
    raise typer.BadParameter(f"{value!r} is not one of {', '.join(DELIVERY_STATES)}")


COLUMNS = [
    Column("id", "id"),
    Column("eventId", "eventId", drop_order=8),
    Column("eventType", "eventType", drop_order=2),
    Column("state", "state", drop_order=1),
    Column("attempts", "deliveryAttempts", drop_order=3),
    Column("lastOutcome", "lastDeliveryOutcome", drop_order=7),
    Column("lastStatus", "lastHttpStatusCode", drop_order=4),
    Column("lastError", "lastError", drop_order=10),
    Column("lastAttempt", "lastDeliveryAttemptTime", drop_order=6),
    Column("nextAttempt", "nextAttemptTime", drop_order=5),
    Column("reason", "reason", drop_order=9),
]

TIME_EXAMPLE: Final = "2026-01-31T12:00:00Z"


def date_time(value: str) -> str:
    """An ISO 8601 date-time (or date: midnight) as the server's UTC ``...Z`` form.

    No offset means UTC, as on the server. Parsed with the server's own parser, so whatever is
    accepted here is accepted there too.
    """
    moment = parse_timestamp(value)
    if moment is None:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date-time ({TIME_EXAMPLE}, 2026-01-31T13:00:00+01:00) "
            "or date (2026-01-31)"
        )
    return format_timestamp(moment)


@app.command("list", cls=MlgridCommand)
def list_deliveries(
    ctx: typer.Context,
    name: str = NAME,
    source: Source = SOURCE,
    state: str | None = typer.Option(
        None, "--state", parser=delivery_state, metavar="|".join(DELIVERY_STATES),
        help="Only deliveries in this state (any case) [default: all].",
    ),
) -> None:
    """List the deliveries of an event subscription (one per event queued for it), oldest first.

    A delivery is `pending` (queued or waiting for a retry: see `nextAttemptTime`), `delivered`,
    `deadLettered` or `dropped` (see `reason`). `deliveryAttempts`, `lastDeliveryOutcome`,
    `lastHttpStatusCode` and `lastError` say what the last attempt came to, which is where to
    look when an endpoint did not receive an event. A replayed or redelivered event has a
    delivery of its own.

    Examples:

    ```
    mlgrid deliveries list --name models-to-hook --source-resource-id /workspaces/ws1 -o table
    mlgrid deliveries list --name models-to-hook --source-resource-id orders --state deadLettered
    ```
    """
    render(ctx, open_client(ctx).subscriptions.deliveries(source, name, state), COLUMNS)


ATTEMPT_COLUMNS = [
    Column("attempt", "attempt"),
    Column("time", "time", drop_order=3),
    Column("outcome", "outcome", drop_order=2),
    Column("status", "httpStatusCode", drop_order=1),
    Column("durationMs", "durationMs", drop_order=4),
    Column("error", "error", drop_order=5),
]
DELIVERY_ID = typer.Option(..., "--id", min=1, help="The delivery's id (the `id` column of `list`).")


@app.command("show", cls=MlgridCommand)
def show_delivery(
    ctx: typer.Context, name: str = NAME, source: Source = SOURCE, delivery_id: int = DELIVERY_ID
) -> None:
    """Show one delivery with every attempt it made (`attemptHistory`: outcome, HTTP status,
    error, time, duration and what the endpoint answered; the newest 20 before the last).

    With `-o table` the attempts are the table's rows.

    Example: `mlgrid deliveries show --name big-orders --source-resource-id orders --id 7 -o table`
    """
    body = open_client(ctx).subscriptions.delivery(source, name, delivery_id)
    if output_format(ctx) == "table":
        render(ctx, body["attemptHistory"], ATTEMPT_COLUMNS)
        return
    render(ctx, body)


@app.command("dead-letter", cls=MlgridCommand)
def dead_letter(
    ctx: typer.Context,
    name: str = NAME,
    source: Source = SOURCE,
    delivery_id: int = DELIVERY_ID,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Stop retrying a pending delivery and dead-letter it now (reason `DeadLetteredByOperator`;
    dropped when the subscription has no dead-letter destination). Asks first unless `--yes`.

    Example: `mlgrid deliveries dead-letter --name big-orders --source-resource-id orders --id 7 --yes`
    """
    if not yes and not typer.confirm(f"Dead-letter delivery {delivery_id} of {name} now?"):
        typer.echo("nothing changed", err=True)
        raise typer.Exit(1)
    render(ctx, open_client(ctx).subscriptions.dead_letter_delivery(source, name, delivery_id), COLUMNS)


@app.command(cls=MlgridCommand)
def replay(
    ctx: typer.Context,
    name: str = NAME,
    source: Source = SOURCE,
    start: str = typer.Option(
        ..., "--from", parser=date_time, metavar="DATETIME",
        help=f"Start of the window, included: an ISO 8601 date-time ({TIME_EXAMPLE}; no offset: UTC) "
             "or date.",
    ),
    end: str | None = typer.Option(
        None, "--to", parser=date_time, metavar="DATETIME",
        help="End of the window, excluded; not before `--from` [default: now, the server's clock].",
    ),
) -> None:
    """Deliver again the retained events published in `[--from, --to)` to this subscription.

    Events are matched against the subscription's **current** filter; each match becomes a new
    delivery with the same event id and a fresh retry budget. The answer gives the window and
    how many events were examined and replayed (`examinedEvents`, `replayedEvents`). Only
    events the topic still retains (`retentionInDays`) can be replayed.

    Examples:

    ```
    mlgrid deliveries replay --name models-to-hook --source-resource-id /workspaces/ws1 \\
        --from 2026-01-31T00:00:00Z
    mlgrid deliveries replay --name models-to-hook --source-resource-id orders \\
        --from 2026-01-30 --to 2026-01-31
    ```
    """
    render(ctx, open_client(ctx).subscriptions.replay(source, name, start, end))
