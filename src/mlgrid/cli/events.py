"""``mlgrid events ...``: publish events, list retained ones, and follow them live."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import typer

from mlgrid.cli.command import MlgridCommand, MlgridGroup, open_client, output_format, source_option
from mlgrid.cli.output import Column, console, render, to_json
from mlgrid.client.broker import Source

app = typer.Typer(
    cls=MlgridGroup,
    help="Publish events to custom topics, list retained events, follow them live (`tail`).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

TOPIC_HELP: Final = (
    "A custom topic (`orders`, `/topics/orders`), a workspace's system topic (`/workspaces/ws`, "
    "`/systemTopics/ws`) or an Azure resource id of either."
)
TOPIC = typer.Option(
    ..., "--topic", "--source-resource-id", parser=source_option, metavar="TOPIC", help=TOPIC_HELP
)
COLUMNS: Final = [
    Column("time", "eventTime"),
    Column("eventType", "eventType"),
    Column("subject", "subject"),
    Column("id", "id"),
]
CLOUD_EVENT_COLUMNS: Final = [
    Column("time", "time"),
    Column("type", "type"),
    Column("subject", "subject"),
    Column("id", "id"),
]


def _read_events(data: str | None, file: Path | None) -> Any:
    if data is not None and file is not None:
        raise typer.BadParameter("give --data or --file, not both", param_hint="'--data'")
    if data is not None:
        text, origin = data, "--data"
    elif file is not None:
        origin = "--file"
        if str(file) == "-":
            text = sys.stdin.read()
        else:
            try:
                text = file.read_text(encoding="utf-8")
            except OSError as exc:
                message = f"cannot read {file}: {exc.strerror}"
                raise typer.BadParameter(message, param_hint="'--file'") from exc
    elif not sys.stdin.isatty():
        text, origin = sys.stdin.read(), "stdin"
    else:
        raise typer.BadParameter("give the events with --data JSON, --file PATH, or on stdin",
                                 param_hint="'--data'")
    try:
        return json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"the events in {origin} are not valid JSON: {exc}",
                                 param_hint=f"'{origin}'") from exc


@app.command(cls=MlgridCommand)
def publish(
    ctx: typer.Context,
    topic: Source = TOPIC,
    data: str | None = typer.Option(
        None, "--data", metavar="JSON", help="One event (an object) or a JSON array of events."
    ),
    file: Path | None = typer.Option(
        None, "--file", metavar="PATH", help="Read the events from a file (`-`: stdin)."
    ),
    key: str | None = typer.Option(
        None, "--key", help="Authenticate with a topic key (aeg-sas-key) instead of the bearer token."
    ),
    complete: bool = typer.Option(
        True, "--complete/--no-complete",
        help="Fill a missing id (a UUID), time (now) and Event Grid subject (empty).",
    ),
) -> None:
    """Publish events to a custom topic: Event Grid events, or CloudEvents (with `specversion`).

    The events come from `--data`, `--file`, or stdin. All events of one call are accepted or
    none is.

    Examples:

    ```
    mlgrid events publish --topic orders \\
        --data '{"eventType": "Shop.OrderPlaced", "subject": "orders/1", "data": {"total": 12.5}}'
    mlgrid events publish --topic orders --file events.json
    cat cloudevents.json | mlgrid events publish --topic ce-orders
    ```
    """
    if topic.kind != "topics":
        raise typer.BadParameter(
            "only custom topics accept published events (a workspace publishes to its own system topic)",
            param_hint="'--topic'",
        )
    events = _read_events(data, file)
    if isinstance(events, dict):
        events = [events]
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        message = "the events must be a JSON object or an array of objects"
        raise typer.BadParameter(message, param_hint="'--data'")
    open_client(ctx).events.publish(topic.path, events, key=key, complete=complete)
    render(ctx, {"topic": topic.name, "published": len(events)})


@app.command("list", cls=MlgridCommand)
def list_events(
    ctx: typer.Context,
    topic: Source = TOPIC,
    since: str | None = typer.Option(
        None, "--since", metavar="ISO", help="Published at or after (ISO 8601)."
    ),
    until: str | None = typer.Option(
        None, "--until", metavar="ISO", help="Published before (ISO 8601)."
    ),
    event_type: str | None = typer.Option(None, "--event-type", help="Only this event type."),
) -> None:
    """List the events a topic still retains, oldest first.

    Example: `mlgrid events list --topic /workspaces/ws1 --since 2030-01-01T00:00:00Z -o table`
    """
    events = list(open_client(ctx).events.list(topic, since=since, until=until, event_type=event_type))
    columns = CLOUD_EVENT_COLUMNS if events and "specversion" in events[0] else COLUMNS
    render(ctx, events, columns)


@app.command(cls=MlgridCommand)
def tail(
    ctx: typer.Context,
    topic: Source = TOPIC,
    event_type: list[str] | None = typer.Option(
        None, "--event-type", metavar="TYPE...", help="Only these event types (case-insensitive)."
    ),
    subject_begins_with: str | None = typer.Option(
        None, "--subject-begins-with", help="Only events whose subject starts with this."
    ),
    subject_ends_with: str | None = typer.Option(
        None, "--subject-ends-with", help="Only events whose subject ends with this."
    ),
    since: str | None = typer.Option(
        None, "--since", metavar="ISO", help="Start at this time instead of now (retained events first)."
    ),
    count: int | None = typer.Option(None, "--count", min=1, help="Stop after this many events."),
    timeout: float | None = typer.Option(None, "--timeout", min=0, help="Stop after this many seconds."),
    poll_interval: float = typer.Option(1.0, "--poll-interval", min=0.05, help="Seconds between polls."),
) -> None:
    """Print events as they are published, until Ctrl-C, `--count` or `--timeout`.

    With `-o json` (the default) each event is one line of JSON; with `-o table`, one line of
    time, type, subject and id. When the tail ends with no event (or fewer than `--count`),
    it says so on stderr.

    Examples:

    ```
    mlgrid events tail --topic /workspaces/ws1 --event-type Microsoft.MachineLearningServices.ModelRegistered
    mlgrid events tail --topic orders --subject-begins-with orders/eu/ -o table
    mlgrid events tail --topic orders --count 1 --timeout 30
    ```
    """
    events = open_client(ctx).events.tail(
        topic,
        since=since,
        event_types=event_type,
        subject_begins_with=subject_begins_with,
        subject_ends_with=subject_ends_with,
        poll_interval=poll_interval,
        timeout=timeout,
        max_events=count,
    )
    as_json = output_format(ctx) == "json"
    out = console()
    shown = 0
    for event in events:
        shown += 1
        if as_json:
            typer.echo(to_json(event, indent=False))
        else:
            columns = CLOUD_EVENT_COLUMNS if "specversion" in event else COLUMNS
            out.print("  ".join(c.text(event) for c in columns), markup=False)
        sys.stdout.flush()
    if shown == 0:
        # Silence would look like a hang that ended or a filter that is wrong: say which.
        waited = f" within {timeout:g} s" if timeout is not None else ""
        matching = _filters_text(event_type, subject_begins_with, subject_ends_with)
        typer.echo(f"no event arrived on {topic.path}{waited}{matching}", err=True)
    elif count is not None and shown < count and timeout is not None:
        typer.echo(f"{shown} of {count} events arrived on {topic.path} within {timeout:g} s", err=True)


def _filters_text(types: list[str] | None, begins: str | None, ends: str | None) -> str:
    """The filters of a tail, for the message that nothing arrived (empty without filters)."""
    parts = [f"type {' or '.join(types)}"] if types else []
    parts += [f"subject beginning {begins!r}"] if begins else []
    parts += [f"subject ending {ends!r}"] if ends else []
    return f" matching {', '.join(parts)}" if parts else ""
