"""``mlgrid deadletters ...``: the events a subscription could not deliver, and redelivery."""

from __future__ import annotations

import typer

from mlgrid.cli.command import MlgridCommand, MlgridGroup, open_client
from mlgrid.cli.output import Column, render
from mlgrid.cli.subscriptions import NAME, SOURCE
from mlgrid.client.broker import Source

app = typer.Typer(
    cls=MlgridGroup,
    help="Dead-lettered events of an event subscription: list them, deliver them again.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

# A record is the event in the subscription's delivery schema; CloudEvents spell the
# dead-letter attributes in lower case.
COLUMNS = [
    Column("id", "id"),
    Column("eventId", "eventId"),
    Column("eventType", ("record.eventType", "record.type")),
    Column("reason", "deadLetterReason"),
    Column("attempts", ("record.deliveryAttempts", "record.deliveryattempts")),
    Column("lastOutcome", ("record.lastDeliveryOutcome", "record.lastdeliveryoutcome")),
    Column("lastStatus", ("record.lastHttpStatusCode", "record.lasthttpstatuscode")),
    Column("deadLettered", "deadLetteredTime"),
    Column("redelivered", "redeliveredTime"),
]


@app.command("list", cls=MlgridCommand)
def list_dead_letters(ctx: typer.Context, name: str = NAME, source: Source = SOURCE) -> None:
    """List the dead letters of an event subscription, oldest first.

    Each has an `id` (what `redeliver --ids` takes), the `eventId`, the `deadLetterReason`, and
    the `record` written to the dead-letter container: the event with `deliveryAttempts`,
    `lastDeliveryOutcome` and `lastHttpStatusCode`.

    Example: `mlgrid deadletters list --name models-to-hook --source-resource-id /workspaces/ws1 -o table`
    """
    render(ctx, open_client(ctx).subscriptions.dead_letters(source, name), COLUMNS)


@app.command(cls=MlgridCommand)
def redeliver(
    ctx: typer.Context,
    name: str = NAME,
    source: Source = SOURCE,
    ids: list[str] | None = typer.Option(
        None, "--ids", metavar="ID...",
        help="Only these dead letters (their `id` in `deadletters list`) [default: all not yet redelivered].",
    ),
) -> None:
    """Deliver dead-lettered events again: all not redelivered yet, or those named by `--ids`.

    Each becomes a new delivery with a fresh retry budget; the answer lists what was queued,
    the ids whose event is no longer retained (`notRetained`) and ids not found (`unknownIds`).

    Examples:

    ```
    mlgrid deadletters redeliver --name models-to-hook --source-resource-id /workspaces/ws1
    mlgrid deadletters redeliver --name models-to-hook --source-resource-id orders \\
        --ids 0f8fad5b-d9cb-469f-a165-70867728950e 7c9e6679-7425-40de-944b-e07fc1f90ae7
    ```
    """
    render(ctx, open_client(ctx).subscriptions.redeliver(source, name, ids))
