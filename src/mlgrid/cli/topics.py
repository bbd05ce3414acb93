"""``mlgrid topic ...``: custom topics (``az eventgrid topic`` flags)."""

from __future__ import annotations

from enum import StrEnum

import typer

from mlgrid.cli.command import MlgridCommand, MlgridGroup, key_value_pairs, open_client
from mlgrid.cli.output import Column, render
from mlgrid.client.broker import input_schema_mapping

app = typer.Typer(
    cls=MlgridGroup,
    help="Custom topics: create, show, list, delete, and their access keys.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

COLUMNS = [
    Column("name", "name"),
    Column("inputSchema", "properties.inputSchema"),
    Column("resourceGroup", "properties.resourceGroup"),
    Column("retentionInDays", "properties.retentionInDays"),
    Column("endpoint", "properties.endpoint"),
]


class InputSchema(StrEnum):
    eventgridschema = "eventgridschema"
    cloudeventschemav1_0 = "cloudeventschemav1_0"
    customeventschema = "customeventschema"


class KeyName(StrEnum):
    key1 = "key1"
    key2 = "key2"


NAME = typer.Option(..., "--name", "-n", help="Name of the topic.")


@app.command(cls=MlgridCommand)
def create(
    ctx: typer.Context,
    name: str = NAME,
    input_schema: InputSchema | None = typer.Option(
        None, "--input-schema", case_sensitive=False,
        help="Schema publishers use [default: eventgridschema].",
    ),
    resource_group: str | None = typer.Option(
        None, "--resource-group", "-g", help="Resource group in the topic's id [default: default]."
    ),
    retention_in_days: int | None = typer.Option(
        None, "--retention-in-days", help="Days (1-30) events are kept for listing and replay [default: 1]."
    ),
    input_mapping_fields: list[str] | None = typer.Option(
        None, "--input-mapping-fields", metavar="FIELD=SOURCE...",
        help="customeventschema: where id, topic, eventtime, eventtype, subject, dataversion come from.",
    ),
    input_mapping_default_values: list[str] | None = typer.Option(
        None, "--input-mapping-default-values", metavar="FIELD=VALUE...",
        help="customeventschema: values for subject, eventtype, dataversion when an event has none.",
    ),
) -> None:
    """Create a custom topic (or replace the settings of an existing one).

    The topic's `properties.endpoint` is where publishers send events; its keys are shown by
    `mlgrid topic keys`.

    Examples:

    ```
    mlgrid topic create --name orders
    mlgrid topic create --name ce-orders --input-schema cloudeventschemav1_0 --retention-in-days 7
    mlgrid topic create --name legacy --input-schema customeventschema \\
        --input-mapping-fields eventtype=kind subject=path --input-mapping-default-values dataversion=1
    ```
    """
    mapping = None
    if input_mapping_fields or input_mapping_default_values:
        try:
            mapping = input_schema_mapping(
                key_value_pairs(input_mapping_fields or [], "--input-mapping-fields"),
                key_value_pairs(input_mapping_default_values or [], "--input-mapping-default-values"),
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--input-mapping-fields'") from exc
    result = open_client(ctx).topics.create(
        name,
        input_schema=None if input_schema is None else input_schema.value,
        resource_group=resource_group,
        retention_in_days=retention_in_days,
        input_schema_mapping=mapping,
    )
    render(ctx, result)


@app.command(cls=MlgridCommand)
def show(ctx: typer.Context, name: str = NAME) -> None:
    """Show a custom topic.

    Example: `mlgrid topic show --name orders -o table`
    """
    render(ctx, open_client(ctx).topics.get(name))


@app.command("list", cls=MlgridCommand)
def list_topics(ctx: typer.Context) -> None:
    """List the custom topics you may read.

    Example: `mlgrid topic list -o table`
    """
    render(ctx, open_client(ctx).topics.list(), COLUMNS)


@app.command(cls=MlgridCommand)
def delete(ctx: typer.Context, name: str = NAME) -> None:
    """Delete a custom topic with its event subscriptions and retained events.

    Example: `mlgrid topic delete --name orders`
    """
    open_client(ctx).topics.delete(name)


@app.command(cls=MlgridCommand)
def keys(
    ctx: typer.Context,
    name: str = NAME,
    regenerate: KeyName | None = typer.Option(
        None, "--regenerate", case_sensitive=False, help="Replace this key with a new one first."
    ),
) -> None:
    """Show the topic's access keys (`key1`, `key2`), optionally regenerating one.

    Publishers send a key in the `aeg-sas-key` header or sign SAS tokens with it.

    Examples:

    ```
    mlgrid topic keys --name orders
    mlgrid topic keys --name orders --regenerate key2
    ```
    """
    client = open_client(ctx)
    if regenerate is None:
        render(ctx, client.topics.keys(name))
    else:
        render(ctx, client.topics.regenerate_key(name, regenerate.value))
