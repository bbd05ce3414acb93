"""``mlgrid eventgrid event-subscription ...``: the flags of ``az eventgrid event-subscription``.

Flags that take several values (``--included-event-types A B``, ``--advanced-filter KEY OP V1
V2``, ``--labels``, ``--delivery-attribute-mapping NAME TYPE VALUE [ISSECRET]``) are parsed by
:mod:`mlgrid.cli.command`; this module turns the words into the ARM body with the SDK's
:func:`event_subscription_properties`. Value ranges (attempts, TTL, batch sizes) are checked by
the server only, so its error message, which names the field, is the one users see.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import typer

from mlgrid.cli.command import (
    Arity,
    MlgridGroup,
    Tokens,
    multi_value_command,
    open_client,
    output_format,
    source_option,
)
from mlgrid.cli.output import Column, cell, render
from mlgrid.client.broker import Source, delivery_attribute_mapping, event_subscription_properties
from mlgrid.errors import MlgridError
from mlgrid.filters.cli_syntax import parse_cli_advanced_filter

HELP: Final = "Event subscriptions on custom topics, system topics and workspaces (as `az eventgrid`)."

app = typer.Typer(cls=MlgridGroup, help=HELP, no_args_is_help=True, rich_markup_mode="markdown")

eventgrid_app = typer.Typer(
    cls=MlgridGroup,
    help="Azure Event Grid style commands (`az eventgrid` flags).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
eventgrid_app.add_typer(app, name="event-subscription")

ADVANCED_FILTER_METAVAR: Final = "KEY OPERATOR [VALUE...]"
MAPPING_METAVAR: Final = "NAME TYPE VALUE [ISSECRET]"
SubscriptionCommand = multi_value_command(
    advanced_filter=Arity(1, None, ADVANCED_FILTER_METAVAR),
    delivery_attribute_mapping=Arity(3, 4, MAPPING_METAVAR),
)

def advanced_filters_text(filters: Any) -> str:
    """Advanced filters written back in the CLI's syntax: ``data.x NumberIn 1 2; subject IsNotNull``."""
    if not isinstance(filters, list):
        return ""
    parts = []
    for item in filters:
        if not isinstance(item, dict):
            continue
        values = item.get("values", [item["value"]] if "value" in item else [])
        words = [",".join(map(cell, v)) if isinstance(v, list) else cell(v) for v in values]
        parts.append(" ".join([str(item.get("key", "")), str(item.get("operatorType", "")), *words]))
    return "; ".join(parts)


COLUMNS = [
    Column("name", "name"),
    Column("state", "properties.provisioningState"),
    Column("endpointType", "properties.destination.endpointType"),
    Column("endpoint", "properties.destination.properties.endpointBaseUrl"),
    Column("includedEventTypes", "properties.filter.includedEventTypes"),
    Column("subjectBeginsWith", "properties.filter.subjectBeginsWith"),
    Column("advancedFilters", "properties.filter.advancedFilters", advanced_filters_text),
]

SOURCE_HELP: Final = (
    "What the subscription listens to: a workspace or topic resource id "
    "(`/subscriptions/.../providers/Microsoft.MachineLearningServices/workspaces/ws`, "
    "`.../Microsoft.EventGrid/topics/t`), a path (`/workspaces/ws`, `/systemTopics/ws`, "
    "`/topics/t`) or a custom topic name."
)
NAME = typer.Option(..., "--name", "-n", help="Name of the event subscription.")
SOURCE = typer.Option(..., "--source-resource-id", parser=source_option, metavar="ID", help=SOURCE_HELP)

DESTINATION_PANEL: Final = "Destination options (besides az's)"


class EndpointType(StrEnum):
    webhook = "webhook"
    queue = "queue"
    redisstream = "redisstream"
    natsjetstream = "natsjetstream"
    rabbitmq = "rabbitmq"


class DeliverySchema(StrEnum):
    eventgridschema = "eventgridschema"
    cloudeventschemav1_0 = "cloudeventschemav1_0"
    custominputschema = "custominputschema"


# ---------------------------------------------------------------------------------------------
# Flag values -> JSON (pure; unit-tested)


def advanced_filters_json(groups: Sequence[Tokens]) -> list[dict[str, Any]]:
    """The ``advancedFilters`` JSON of repeated ``--advanced-filter KEY OP [VALUE...]`` flags."""
    filters = []
    for group in groups:
        try:
            filters.append(parse_cli_advanced_filter(list(group.values)))
        except MlgridError as exc:
            raise typer.BadParameter(_strip_field(str(exc)), param_hint="'--advanced-filter'") from exc
    return filters


def _strip_field(message: str) -> str:
    prefix = "--advanced-filter: "
    return message[len(prefix):] if message.startswith(prefix) else message


def delivery_attribute_mappings_json(groups: Sequence[Tokens]) -> list[dict[str, Any]]:
    """``--delivery-attribute-mapping NAME TYPE VALUE [ISSECRET]`` (az's order) as JSON."""
    mappings = []
    for group in groups:
        name, kind, value, *rest = group.values
        secret = False
        if rest:
            if rest[0].lower() not in ("true", "false"):
                raise typer.BadParameter(
                    f"ISSECRET must be true or false, got {rest[0]!r}",
                    param_hint="'--delivery-attribute-mapping'",
                )
            secret = rest[0].lower() == "true"
        try:
            mappings.append(delivery_attribute_mapping(name, kind, value, secret))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--delivery-attribute-mapping'") from exc
    return mappings


_CONTAINER: Final = re.compile(r"/blobServices/[^/]+/containers/([^/]+)/?$", re.IGNORECASE)


def deadletter_container(value: str) -> str:
    """A container name, or the container of az's ``.../blobServices/default/containers/<name>``."""
    if "/" not in value:
        return value
    match = _CONTAINER.search(value)
    if match is None:
        raise typer.BadParameter(
            "expected a container name or a resource id ending in /blobServices/default/containers/<name>",
            param_hint="'--deadletter-endpoint'",
        )
    return match.group(1)


def expiration_time(value: str) -> str:
    """az's ``--expiration-date``: a date or date-time, UTC when it has no offset."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{value!r} is not a date (2030-12-31) or date-time (2030-12-31T23:59:59Z)",
            param_hint="'--expiration-date'",
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# create / update


def _subscription_command(update: bool) -> Callable[..., None]:
    """``create`` and ``update`` take the same flags; only the request differs."""

    def command(
        ctx: typer.Context,
        name: str = NAME,
        source: Source = SOURCE,
        endpoint: str | None = typer.Option(
            None, "--endpoint",
            help="Webhook URL (query string kept secret), or the URL of a Redis, NATS or RabbitMQ server.",
        ),
        endpoint_type: EndpointType | None = typer.Option(
            None, "--endpoint-type", case_sensitive=False,
            help="Destination kind [create default: webhook]. `queue` is pulled with :receive.",
        ),
        included_event_types: list[str] | None = typer.Option(
            None, "--included-event-types", metavar="TYPE...",
            help="Event types to deliver (case-insensitive; none or `All` = every type).",
        ),
        subject_begins_with: str | None = typer.Option(
            None, "--subject-begins-with", help="Deliver only events whose subject starts with this."
        ),
        subject_ends_with: str | None = typer.Option(
            None, "--subject-ends-with", help="Deliver only events whose subject ends with this."
        ),
        subject_case_sensitive: bool | None = typer.Option(
            None, "--subject-case-sensitive/--no-subject-case-sensitive",
            help="Compare subjects case-sensitively (also `--subject-case-sensitive true|false`).",
        ),
        advanced_filter: list[Tokens] | None = typer.Option(
            None, "--advanced-filter", parser=Tokens.decode, metavar=ADVANCED_FILTER_METAVAR,
            help="An advanced filter; repeat the flag for more (all must match). Ranges are `lo,hi`; "
            "`StringIn ('a', 'b')` is accepted too.",
        ),
        enable_advanced_filtering_on_arrays: bool | None = typer.Option(
            None, "--enable-advanced-filtering-on-arrays/--no-enable-advanced-filtering-on-arrays",
            help="Let advanced filters look inside array values.",
        ),
        event_delivery_schema: DeliverySchema | None = typer.Option(
            None, "--event-delivery-schema", case_sensitive=False,
            help="Schema of delivered events [default: the topic's].",
        ),
        max_delivery_attempts: int | None = typer.Option(
            None, "--max-delivery-attempts", help="Attempts before dead-lettering, 1-30 [default: 30]."
        ),
        event_ttl: int | None = typer.Option(
            None, "--event-ttl", help="Minutes an event may wait for delivery, 1-1440 [default: 1440]."
        ),
        deadletter_endpoint: str | None = typer.Option(
            None, "--deadletter-endpoint", metavar="CONTAINER",
            help="Blob container for dead letters: a name, or an id ending in "
            "`/blobServices/default/containers/<name>`.",
        ),
        delivery_attribute_mapping: list[Tokens] | None = typer.Option(
            None, "--delivery-attribute-mapping", parser=Tokens.decode, metavar=MAPPING_METAVAR,
            help="A header added to each webhook request: TYPE `static` (VALUE is the value; ISSECRET "
            "true hides it) or `dynamic` (VALUE is an event field such as data.ModelName). Repeatable.",
        ),
        labels: list[str] | None = typer.Option(None, "--labels", metavar="LABEL...", help="Labels."),
        expiration_date: str | None = typer.Option(
            None, "--expiration-date", metavar="DATE",
            help="Date or date-time (UTC unless an offset is given) when the subscription is deleted.",
        ),
        max_events_per_batch: int | None = typer.Option(
            None, "--max-events-per-batch", help="Webhook: events per request, 1-5000 [default: 1]."
        ),
        preferred_batch_size_in_kilobytes: int | None = typer.Option(
            None, "--preferred-batch-size-in-kilobytes",
            help="Webhook: preferred batch size, 1-1024 [default: 64].",
        ),
        signing_secret: str | None = typer.Option(
            None, "--signing-secret", metavar="WHSEC",
            help="Webhook: sign deliveries with Standard Webhooks headers (`whsec_...`).",
            rich_help_panel=DESTINATION_PANEL,
        ),
        receive_lock_duration: int | None = typer.Option(
            None, "--receive-lock-duration-in-seconds", help="Queue: lock of a received event, 60-300.",
            rich_help_panel=DESTINATION_PANEL,
        ),
        max_delivery_count: int | None = typer.Option(
            None, "--max-delivery-count", help="Queue: receives before dead-lettering, 1-10.",
            rich_help_panel=DESTINATION_PANEL,
        ),
        stream: str | None = typer.Option(
            None, "--stream", help="Redis stream key (redisstream).", rich_help_panel=DESTINATION_PANEL
        ),
        nats_subject: str | None = typer.Option(
            None, "--nats-subject", help="JetStream subject (natsjetstream).",
            rich_help_panel=DESTINATION_PANEL,
        ),
        exchange: str | None = typer.Option(
            None, "--exchange", help="RabbitMQ exchange (\"\" is the default exchange).",
            rich_help_panel=DESTINATION_PANEL,
        ),
        routing_key: str | None = typer.Option(
            None, "--routing-key", help="RabbitMQ routing key.", rich_help_panel=DESTINATION_PANEL
        ),
    ) -> None:
        extra: dict[str, Any] = {
            key: value
            for key, value in (
                ("signingSecret", signing_secret),
                ("receiveLockDurationInSeconds", receive_lock_duration),
                ("maxDeliveryCount", max_delivery_count),
                ("stream", stream),
                ("subject", nats_subject),
                ("exchange", exchange),
                ("routingKey", routing_key),
            )
            if value is not None
        }
        properties = event_subscription_properties(
            endpoint=endpoint,
            endpoint_type=None if endpoint_type is None else endpoint_type.value,
            included_event_types=included_event_types,
            subject_begins_with=subject_begins_with,
            subject_ends_with=subject_ends_with,
            subject_case_sensitive=subject_case_sensitive,
            advanced_filters=None if advanced_filter is None else advanced_filters_json(advanced_filter),
            enable_advanced_filtering_on_arrays=enable_advanced_filtering_on_arrays,
            event_delivery_schema=None if event_delivery_schema is None else event_delivery_schema.value,
            max_delivery_attempts=max_delivery_attempts,
            event_ttl=event_ttl,
            deadletter_container=None
            if deadletter_endpoint is None
            else deadletter_container(deadletter_endpoint),
            delivery_attribute_mappings=None
            if delivery_attribute_mapping is None
            else delivery_attribute_mappings_json(delivery_attribute_mapping),
            labels=labels,
            expiration=None if expiration_date is None else expiration_time(expiration_date),
            max_events_per_batch=max_events_per_batch,
            preferred_batch_size_in_kilobytes=preferred_batch_size_in_kilobytes,
            destination_properties=extra or None,
        )
        subscriptions = open_client(ctx).subscriptions
        if update:
            if not properties:
                raise typer.BadParameter("nothing to update: give at least one flag to change")
            render(ctx, subscriptions.update(source, name, properties))
        else:
            render(ctx, subscriptions.create(source, name, properties))

    command.__name__ = "update" if update else "create"
    command.__doc__ = UPDATE_DOC if update else CREATE_DOC
    return command


CREATE_DOC: Final = """Create an event subscription (or replace one with the same name).

A webhook endpoint is validated first (Event Grid's handshake), so the command returns once
the endpoint has answered. Advanced filters use az's syntax: `KEY OPERATOR VALUE...`, one
filter per `--advanced-filter`; keys are `data.<path>`, `subject`, `eventType`, `id`...

Examples:

```
mlgrid eventgrid event-subscription create --name models-to-hook \\
    --source-resource-id /workspaces/ws1 --endpoint http://127.0.0.1:9000/hook \\
    --included-event-types Microsoft.MachineLearningServices.ModelRegistered \\
    --subject-begins-with models/ \\
    --advanced-filter data.ModelTags.key1 StringIn value1 value2

mlgrid eventgrid event-subscription create --name big-drift \\
    --source-resource-id /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/default/\\
providers/Microsoft.MachineLearningServices/workspaces/ws1 \\
    --endpoint http://127.0.0.1:9000/drift \\
    --advanced-filter data.DriftCoefficient NumberGreaterThan 0.5 \\
    --advanced-filter data.DataDriftName StringIn "('nightly')" \\
    --deadletter-endpoint deadletters --max-delivery-attempts 5 --event-ttl 60

mlgrid eventgrid event-subscription create --name pull --source-resource-id orders \\
    --endpoint-type queue
```
"""

UPDATE_DOC: Final = """Change some settings of an event subscription; everything not given is kept.

Changing one filter field (say `--subject-begins-with`) keeps the other filter fields;
`--advanced-filter` replaces the whole list of advanced filters.

Examples:

```
mlgrid eventgrid event-subscription update --name models-to-hook --source-resource-id /workspaces/ws1 \\
    --subject-ends-with :3 --labels team-a prod

mlgrid eventgrid event-subscription update --name models-to-hook --source-resource-id /workspaces/ws1 \\
    --endpoint https://example.org/new-hook --max-events-per-batch 10
```
"""

app.command("create", cls=SubscriptionCommand)(_subscription_command(update=False))
app.command("update", cls=SubscriptionCommand)(_subscription_command(update=True))


# ---------------------------------------------------------------------------------------------
# show / list / delete


@app.command(cls=SubscriptionCommand)
def show(
    ctx: typer.Context,
    name: str = NAME,
    source: Source = SOURCE,
    include_full_endpoint_url: bool = typer.Option(
        False, "--include-full-endpoint-url", help="Also show the webhook URL with its query string."
    ),
) -> None:
    """Show an event subscription (the webhook URL without its query string unless asked).

    Example:
    `mlgrid eventgrid event-subscription show --name models-to-hook --source-resource-id /workspaces/ws1`
    """
    client = open_client(ctx)
    result = client.subscriptions.get(source, name).raw
    if include_full_endpoint_url:
        result.setdefault("properties", {})["endpointUrl"] = client.subscriptions.full_url(source, name)
    render(ctx, result)


@app.command("list", cls=SubscriptionCommand)
def list_subscriptions(ctx: typer.Context, source: Source = SOURCE) -> None:
    """List the event subscriptions of a topic or workspace.

    Example: `mlgrid eventgrid event-subscription list --source-resource-id /workspaces/ws1 -o table`
    """
    render(ctx, open_client(ctx).subscriptions.list(source), COLUMNS)


VERDICT_COLUMNS: Final = [
    Column("condition", "condition"),
    Column("matched", "matched"),
    Column("reason", "reason"),
]


@app.command("test", cls=SubscriptionCommand)
def test_filter(
    ctx: typer.Context,
    name: str = NAME,
    source: Source = SOURCE,
    event: str = typer.Option(..., "--event", metavar="JSON|@FILE",
                              help="The event (JSON, or @file with it) in the schema the topic stores."),
    event_filter: str | None = typer.Option(
        None, "--filter", metavar="JSON|@FILE",
        help="Try this filter (the JSON of properties.filter) instead of the subscription's.",
    ),
) -> None:
    """Test the subscription's filter on an event: would it be delivered, and why, condition by
    condition. Nothing is published. Exits 1 when the event does not match.

    Example:

    ```
    mlgrid eventgrid event-subscription test --name big-orders --source-resource-id orders \
        --event '{"eventType": "Shop.OrderPlaced", "subject": "orders/1", "data": {"total": 12.5}}' -o table
    ```
    """
    body = _json_option(event, "--event")
    tried = _json_option(event_filter, "--filter") if event_filter is not None else None
    verdict = open_client(ctx).subscriptions.test(source, name, body, tried)
    if output_format(ctx) == "json":
        render(ctx, verdict)
    else:
        render(ctx, verdict.get("conditions", []), VERDICT_COLUMNS)
        typer.echo("matches" if verdict.get("matches") else "does not match")
    if not verdict.get("matches"):
        raise typer.Exit(1)


def _json_option(text: str, option: str) -> Any:
    """A JSON object given inline or as ``@path``."""
    origin = text
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            message = f"cannot read {origin[1:]}: {exc.strerror}"
            raise typer.BadParameter(message, param_hint=f"'{option}'") from exc
    try:
        value = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint=f"'{option}'") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint=f"'{option}'")
    return value


@app.command(cls=SubscriptionCommand)
def delete(ctx: typer.Context, name: str = NAME, source: Source = SOURCE) -> None:
    """Delete an event subscription.

    Example: `mlgrid eventgrid event-subscription delete --name models-to-hook --source-resource-id orders`
    """
    open_client(ctx).subscriptions.delete(source, name)
