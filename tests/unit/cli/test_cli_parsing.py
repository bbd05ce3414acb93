"""CLI argument parsing (az-style multi-value flags), az filter syntax to JSON, and output rendering.

No server: commands that would reach one point at a closed port, so a test that expects a
usage error (exit 2) would see exit 1 if a request had been attempted.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from mlgrid.cli.command import (
    Arity,
    MlgridCommand,
    MultiValueError,
    MultiValueSpec,
    Tokens,
    connection,
    expand_multi_values,
    multi_value_command,
    output_format,
)
from mlgrid.cli.deliveries import date_time, delivery_state
from mlgrid.cli.main import app
from mlgrid.cli.output import Column, build_table, cell, flatten, lookup, table_rows, to_json
from mlgrid.cli.subscriptions import (
    advanced_filters_json,
    advanced_filters_text,
    deadletter_container,
    delivery_attribute_mappings_json,
    expiration_time,
)

CLOSED = "http://127.0.0.1:9"  # discard port: nothing listens, a request would fail with exit 1

SPEC = MultiValueSpec(
    flat={"--labels": ("--labels", Arity(1, None, "LABEL...")),
          "--included-event-types": ("--included-event-types", Arity(1, None, "TYPE..."))},
    grouped={"--advanced-filter": ("--advanced-filter", Arity(1, None, "KEY OP [VALUE...]")),
             "--af": ("--advanced-filter", Arity(1, None, "KEY OP [VALUE...]")),
             "--mapping": ("--mapping", Arity(3, 4, "NAME TYPE VALUE [ISSECRET]"))},
    booleans={"--case": "--no-case", "--plain": None},
    short_options=frozenset({"-o", "-n"}),
)


def group(*values: str) -> str:
    return Tokens(values).encode()


def plain(output: str) -> str:
    """CLI output without Rich's error box, on one line (the box wraps long messages)."""
    return " ".join(output.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())


# --- expand_multi_values -----------------------------------------------------------------------


def test_flat_values_become_one_option_each() -> None:
    assert expand_multi_values(["--labels", "a", "b", "c", "--name", "x"], SPEC) == [
        "--labels=a", "--labels=b", "--labels=c", "--name", "x",
    ]


def test_grouped_values_keep_their_boundaries_when_repeated() -> None:
    args = ["--advanced-filter", "data.x", "NumberIn", "1", "2", "--advanced-filter", "data.y", "IsNotNull"]
    result = expand_multi_values(args, SPEC)
    assert result == [
        f"--advanced-filter={group('data.x', 'NumberIn', '1', '2')}",
        f"--advanced-filter={group('data.y', 'IsNotNull')}",
    ]
    assert [Tokens.decode(r.partition("=")[2]).values for r in result] == [
        ("data.x", "NumberIn", "1", "2"), ("data.y", "IsNotNull"),
    ]


def test_an_alias_is_rewritten_to_the_canonical_name() -> None:
    expected = [f"--advanced-filter={group('k', 'IsNotNull')}"]
    assert expand_multi_values(["--af", "k", "IsNotNull"], SPEC) == expected


@pytest.mark.parametrize("value", ["-1", "-0.5", "-1,5", "-10,-1", "1e3", "007", "-x", "-", "-abc"])
def test_values_that_look_like_numbers_or_start_with_a_dash_are_values(value: str) -> None:
    assert expand_multi_values(["--af", "data.x", "NumberIn", value, "--labels", value], SPEC) == [
        f"--advanced-filter={group('data.x', 'NumberIn', value)}", f"--labels={value}",
    ]


def test_a_run_ends_at_a_short_option_of_the_command() -> None:
    assert expand_multi_values(["--labels", "a", "-o", "table"], SPEC) == ["--labels=a", "-o", "table"]
    assert expand_multi_values(["--labels", "a", "-otable"], SPEC) == ["--labels=a", "-otable"]
    assert expand_multi_values(["--labels", "a", "-nname"], SPEC) == ["--labels=a", "-nname"]


def test_a_run_ends_at_any_long_option_even_an_unknown_one() -> None:
    # An unknown --flag is left for Click to reject, rather than swallowed as a value.
    assert expand_multi_values(["--labels", "a", "--typo", "b"], SPEC) == ["--labels=a", "--typo", "b"]


def test_equals_form_takes_a_value_starting_with_two_dashes_and_continues() -> None:
    assert expand_multi_values(["--labels=--odd", "b"], SPEC) == ["--labels=--odd", "--labels=b"]
    assert expand_multi_values(["--af=data.x", "StringIn", "a"], SPEC) == [
        f"--advanced-filter={group('data.x', 'StringIn', 'a')}"
    ]


def test_double_dash_ends_option_processing() -> None:
    assert expand_multi_values(["--labels", "a", "--", "--labels", "b"], SPEC) == [
        "--labels=a", "--", "--labels", "b",
    ]


def test_values_keep_spaces_quotes_and_unicode() -> None:
    values = ("data.k", "StringIn", "a b", "it's", '"q"', "naïve", "")
    (token,) = expand_multi_values(["--af", *values], SPEC)
    assert Tokens.decode(token.partition("=")[2]).values == values


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--labels"], "--labels"),
        (["--labels", "--name", "x"], "--labels"),
        (["--included-event-types", "-o", "json"], "--included-event-types"),
        (["--advanced-filter"], "--advanced-filter"),
        (["--af", "--labels", "a"], "--af"),
        (["--mapping", "X-A", "static"], "--mapping"),
    ],
)
def test_missing_values_are_an_error_naming_the_flag(args: list[str], option: str) -> None:
    with pytest.raises(MultiValueError) as info:
        expand_multi_values(args, SPEC)
    assert info.value.option == option
    assert "expected" in info.value.reason


def test_too_many_values_for_a_bounded_group() -> None:
    with pytest.raises(MultiValueError, match="at most 4 values"):
        expand_multi_values(["--mapping", "X-A", "static", "v", "true", "extra"], SPEC)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--case"], ["--case"]),
        (["--case", "true"], ["--case"]),
        (["--case", "TRUE"], ["--case"]),
        (["--case", "false"], ["--no-case"]),
        (["--case=false"], ["--no-case"]),
        (["--case=true", "--labels", "a"], ["--case", "--labels=a"]),
        (["--plain", "false"], []),
        (["--case", "--labels", "a"], ["--case", "--labels=a"]),
        (["--case", "other"], ["--case", "other"]),
    ],
)
def test_boolean_flags_take_an_optional_true_or_false(args: list[str], expected: list[str]) -> None:
    assert expand_multi_values(args, SPEC) == expected


def test_boolean_flag_with_a_bad_inline_value() -> None:
    with pytest.raises(MultiValueError, match="true or false"):
        expand_multi_values(["--case=maybe"], SPEC)


def test_tokens_decode_a_plain_string_as_one_value() -> None:
    assert Tokens.decode("data.x StringIn a").values == ("data.x StringIn a",)
    assert list(Tokens(("a", "b"))) == ["a", "b"]
    assert len(Tokens(("a",))) == 1


# --- the command class, through Typer ----------------------------------------------------------

probe = typer.Typer()
seen: dict[str, Any] = {}


@probe.command(cls=multi_value_command(advanced_filter=Arity(1, None, "KEY OP [VALUE...]")))
def probe_command(
    ctx: typer.Context,
    name: str = typer.Option(..., "--name", "-n"),
    types: list[str] | None = typer.Option(None, "--included-event-types", metavar="TYPE..."),
    advanced_filter: list[Tokens] | None = typer.Option(None, "--advanced-filter", parser=Tokens.decode),
    case: bool | None = typer.Option(None, "--subject-case-sensitive/--no-subject-case-sensitive"),
    attempts: int | None = typer.Option(None, "--max-delivery-attempts"),
) -> None:
    seen.clear()
    seen.update(name=name, types=types, advanced_filter=advanced_filter, case=case, attempts=attempts,
                connection=connection(ctx), output=output_format(ctx, {}))


@probe.command(cls=MlgridCommand)
def other() -> None:
    """A second command so that the probe is a group."""


def run_probe(*args: str) -> Any:
    return CliRunner().invoke(probe, ["probe-command", *args])


def test_command_receives_grouped_and_flat_values() -> None:
    result = run_probe(
        "-n", "s1", "--included-event-types", "A", "B",
        "--advanced-filter", "data.x", "NumberInRange", "-10,-1", "5,10",
        "--advanced-filter", "data.y", "IsNullOrUndefined",
        "--subject-case-sensitive", "false", "--max-delivery-attempts", "-3",
    )
    assert result.exit_code == 0, result.output
    assert seen["name"] == "s1"
    assert seen["types"] == ["A", "B"]
    assert [t.values for t in seen["advanced_filter"]] == [
        ("data.x", "NumberInRange", "-10,-1", "5,10"), ("data.y", "IsNullOrUndefined"),
    ]
    assert seen["case"] is False
    assert seen["attempts"] == -3


def test_flags_absent_stay_none() -> None:
    result = run_probe("-n", "s1")
    assert result.exit_code == 0, result.output
    assert seen["types"] is None and seen["advanced_filter"] is None and seen["case"] is None


def test_repeated_flat_flag_accumulates() -> None:
    result = run_probe("-n", "s1", "--included-event-types", "A", "--included-event-types", "B", "C")
    assert result.exit_code == 0, result.output
    assert seen["types"] == ["A", "B", "C"]


def test_global_options_are_accepted_after_the_command_and_not_passed_to_it() -> None:
    result = run_probe("-n", "s1", "--url", "http://example.test", "--token", "t0k", "-o", "TABLE")
    assert result.exit_code == 0, result.output
    assert seen["connection"].url == "http://example.test"
    assert seen["connection"].token == "t0k"
    assert seen["output"] == "table"


def test_output_defaults_to_json_and_honours_the_environment() -> None:
    result = run_probe("-n", "s1")
    assert result.exit_code == 0
    assert seen["output"] == "json"


@pytest.mark.parametrize(
    "args",
    [
        ["-n", "s1", "--included-event-types"],
        ["-n", "s1", "--advanced-filter", "--included-event-types", "A"],
        ["-n", "s1", "--subject-case-sensitive=perhaps"],
    ],
)
def test_usage_errors_exit_2_and_name_the_flag(args: list[str]) -> None:
    result = run_probe(*args)
    assert result.exit_code == 2
    assert "--" in result.output


def test_help_still_works_with_an_incomplete_multi_value_flag() -> None:
    result = run_probe("--advanced-filter", "--help")
    assert result.exit_code == 0
    assert "Usage" in result.output


# --- the real commands: usage errors before any request ----------------------------------------


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(app, [*args, "--url", CLOSED, "--token", "x"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--advanced-filter", "data.x", "NumberIn", "abc"], "'abc' is not a number"),
        (["--advanced-filter", "data.x", "Bogus", "1"], "unknown operator"),
        (["--advanced-filter", "data.x"], "expected KEY OPERATOR"),
        (["--advanced-filter", "data.x", "NumberInRange", "5"], "lo,hi"),
        (["--advanced-filter", "data.x", "NumberInRange", "10,5"], "lower bound above"),
        (["--advanced-filter", "data.x", "IsNotNull", "1"], "takes no values"),
        (["--advanced-filter", "data.x", "BoolEquals", "yes"], "true or false"),
        (["--advanced-filter", "data.x", "StringIn", "('a'"], "must end with ')'"),
        (["--advanced-filter"], "expected a value"),
        (["--delivery-attribute-mapping", "X-A", "static"], "at least 3 values"),
        (["--delivery-attribute-mapping", "X-A", "bogus", "v"], "Static, Dynamic"),
        (["--delivery-attribute-mapping", "X-A", "static", "v", "maybe"], "ISSECRET"),
        (["--delivery-attribute-mapping", "X-A", "dynamic", "data.x", "true"], "cannot be secret"),
        (["--deadletter-endpoint", "/subscriptions/x/containers"], "container"),
        (["--expiration-date", "tomorrow"], "is not a date"),
        (["--endpoint-type", "carrier-pigeon"], "carrier-pigeon"),
        (["--included-event-types"], "expected a value"),
    ],
)
def test_subscription_create_usage_errors(args: list[str], message: str) -> None:
    result = run_cli("eventgrid", "event-subscription", "create", "-n", "s1", "--source-resource-id", "t1",
                     "--endpoint", "http://127.0.0.1:9/hook", *args)
    assert result.exit_code == 2, result.output
    assert message in plain(result.output), result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--state", "done"], "'--state': 'done' is not one of pending, delivered, deadLettered"),
        (["list", "--state", ""], "'--state'"),
        (["replay"], "Missing option '--from'"),
        (["replay", "--from", "yesterday"], "'--from': 'yesterday' is not an ISO 8601 date-time"),
        (["replay", "--from", "2026-01-01", "--to", "2026-02-30"], "'--to': '2026-02-30' is not an ISO"),
    ],
)
def test_deliveries_usage_errors(args: list[str], message: str) -> None:
    result = run_cli("deliveries", args[0], "-n", "s1", "--source-resource-id", "t1", *args[1:])
    assert result.exit_code == 2, result.output
    assert message in plain(result.output), result.output


def test_bad_source_resource_id_is_a_usage_error() -> None:
    result = run_cli("eventgrid", "event-subscription", "show", "-n", "s1", "--source-resource-id", "/a/b/c")
    assert result.exit_code == 2
    assert "--source-resource-id" in plain(result.output)


def test_update_without_changes_is_a_usage_error() -> None:
    result = run_cli("eventgrid", "event-subscription", "update", "-n", "s1", "--source-resource-id", "t1")
    assert result.exit_code == 2
    assert "nothing to update" in plain(result.output)


def test_unreachable_server_is_exit_1_with_a_message() -> None:
    result = CliRunner().invoke(app, ["topic", "list", "--url", CLOSED, "--token", "x"])
    assert result.exit_code == 1
    assert "ConnectionError" in plain(result.output)


def test_publish_needs_valid_json() -> None:
    result = run_cli("events", "publish", "--topic", "t1", "--data", "{not json")
    assert result.exit_code == 2
    assert "not valid JSON" in plain(result.output)
    result = run_cli("events", "publish", "--topic", "t1", "--data", "[1, 2]")
    assert result.exit_code == 2
    assert "array of objects" in plain(result.output)


# --- az filter syntax -> JSON ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["data.ModelTags.key1", "StringIn", "value1", "value2"],
         {"operatorType": "StringIn", "key": "data.ModelTags.key1", "values": ["value1", "value2"]}),
        (["data.ModelTags.key1", "StringIn", "('value1')"],
         {"operatorType": "StringIn", "key": "data.ModelTags.key1", "values": ["value1"]}),
        (["data.x", "NumberInRange", "5,10", "20,30"],
         {"operatorType": "NumberInRange", "key": "data.x", "values": [[5, 10], [20, 30]]}),
        (["data.x", "NumberNotInRange", "-10,-1"],
         {"operatorType": "NumberNotInRange", "key": "data.x", "values": [[-10, -1]]}),
        (["data.y", "IsNullOrUndefined"], {"operatorType": "IsNullOrUndefined", "key": "data.y"}),
        (["data.z", "NumberGreaterThan", "0.30000000000000001"],
         {"operatorType": "NumberGreaterThan", "key": "data.z", "value": Decimal("0.30000000000000001")}),
        (["data.n", "NumberIn", "-1", "9007199254740993"],
         {"operatorType": "NumberIn", "key": "data.n", "values": [-1, 9007199254740993]}),
        (["data.b", "boolequals", "TRUE"], {"operatorType": "BoolEquals", "key": "data.b", "value": True}),
        (["subject StringBeginsWith models/"],
         {"operatorType": "StringBeginsWith", "key": "subject", "values": ["models/"]}),
    ],
)
def test_advanced_filter_words_to_json(words: list[str], expected: dict[str, Any]) -> None:
    assert advanced_filters_json([Tokens(tuple(words))]) == [expected]


def test_advanced_filter_json_keeps_exact_numbers_on_the_wire() -> None:
    (body,) = advanced_filters_json([Tokens(("data.z", "NumberLessThan", "0.30000000000000001"))])
    assert to_json(body, indent=False) == (
        '{"operatorType":"NumberLessThan","key":"data.z","value":0.30000000000000001}'
    )


def test_advanced_filters_text_writes_the_cli_syntax_back() -> None:
    filters = advanced_filters_json([
        Tokens(("data.x", "NumberInRange", "5,10", "20,30")),
        Tokens(("data.k", "StringIn", "a", "b")),
        Tokens(("data.y", "IsNotNull")),
        Tokens(("data.z", "NumberGreaterThan", "0.5")),
    ])
    assert advanced_filters_text(filters) == (
        "data.x NumberInRange 5,10 20,30; data.k StringIn a b; data.y IsNotNull; data.z NumberGreaterThan 0.5"
    )
    assert advanced_filters_text(None) == ""


def test_delivery_attribute_mappings_in_az_order() -> None:
    assert delivery_attribute_mappings_json([
        Tokens(("X-Team", "static", "ml")),
        Tokens(("X-Secret", "Static", "s3cret", "true")),
        Tokens(("X-Model", "dynamic", "data.ModelName")),
    ]) == [
        {"name": "X-Team", "type": "Static", "properties": {"value": "ml", "isSecret": False}},
        {"name": "X-Secret", "type": "Static", "properties": {"value": "s3cret", "isSecret": True}},
        {"name": "X-Model", "type": "Dynamic", "properties": {"sourceField": "data.ModelName"}},
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("deadletters", "deadletters"),
        ("/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a"
         "/blobServices/default/containers/dl-1", "dl-1"),
        ("/x/BLOBSERVICES/default/CONTAINERS/dl2/", "dl2"),
    ],
)
def test_deadletter_endpoint(value: str, expected: str) -> None:
    assert deadletter_container(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2030-12-31", "2030-12-31T00:00:00Z"),
        ("2030-12-31T23:59:59", "2030-12-31T23:59:59Z"),
        ("2030-12-31T23:59:59+02:00", "2030-12-31T21:59:59Z"),
        ("2030-12-31T23:59:59Z", "2030-12-31T23:59:59Z"),
    ],
)
def test_expiration_date(value: str, expected: str) -> None:
    assert expiration_time(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-31", "2026-01-31T00:00:00Z"),
        ("2026-01-31T12:00:00", "2026-01-31T12:00:00Z"),
        ("2026-01-31 12:00:00.5+01:00", "2026-01-31T11:00:00.500000Z"),
        ("2026-01-31T12:00:00Z", "2026-01-31T12:00:00Z"),
    ],
)
def test_replay_times_are_sent_in_utc(value: str, expected: str) -> None:
    assert date_time(value) == expected


@pytest.mark.parametrize(("value", "expected"), [("pending", "pending"), ("DEADLETTERED", "deadLettered")])
def test_delivery_states_are_sent_as_the_api_spells_them(value: str, expected: str) -> None:
    assert delivery_state(value) == expected


# --- output rendering --------------------------------------------------------------------------


def test_json_output_is_indented_and_exact() -> None:
    data = {"v": Decimal("0.30000000000000001"), "n": 9007199254740993, "t": ("a",)}
    text = to_json(data)
    assert json.loads(text, parse_float=Decimal) == {"v": Decimal("0.30000000000000001"),
                                                     "n": 9007199254740993, "t": ["a"]}
    assert "\n  " in text
    assert to_json({"a": 1}, indent=False) == '{"a":1}'


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, ""), (True, "true"), (False, "false"), (3, "3"), (Decimal("0.10"), "0.10"), ("x", "x"),
     (["a", "b"], "a, b"), ([{"k": 1}], '[{"k":1}]'), ({"k": [1]}, '{"k":[1]}')],
)
def test_cells(value: Any, expected: str) -> None:
    assert cell(value) == expected


def test_lookup_and_flatten() -> None:
    properties = {"filter": {"subjectBeginsWith": "m/"}, "labels": ["a"], "empty": {}}
    record = {"name": "s", "properties": properties}
    assert lookup(record, "properties.filter.subjectBeginsWith") == "m/"
    assert lookup(record, "properties.missing.x") is None
    assert lookup(record, "name.x") is None
    assert flatten(record) == {
        "name": "s",
        "properties.filter.subjectBeginsWith": "m/",
        "properties.labels": ["a"],
        "properties.empty": {},
    }


def test_columns_with_alternative_paths_and_formatters() -> None:
    records = [{"record": {"eventType": "A"}}, {"record": {"type": "B"}}, {}]
    column = Column("type", ("record.eventType", "record.type"))
    shout = Column("loud", "record.eventType", lambda v: str(v).upper())
    assert table_rows(records, [column, shout]) == [["A", "A"], ["B", "NONE"], ["", "NONE"]]


def _rendered(table: Any) -> str:
    out = Console(width=200, record=True)
    out.print(table)
    return out.export_text()


def test_table_of_records_uses_chosen_columns_or_scalar_fields() -> None:
    records = [{"name": "t1", "properties": {"inputSchema": "EventGridSchema"}, "etag": "e"}]
    columns = [Column("name", "name"), Column("schema", "properties.inputSchema")]
    chosen = _rendered(build_table(records, columns))
    assert "schema" in chosen and "EventGridSchema" in chosen and "etag" not in chosen
    default = _rendered(build_table(records))
    assert "etag" in default and "name" in default and "properties" not in default


def test_table_of_one_record_lists_flattened_fields() -> None:
    text = _rendered(build_table({"name": "s1", "properties": {"filter": {"subjectBeginsWith": "models/"}}}))
    assert "properties.filter.subjectBeginsWith" in text and "models/" in text


def test_output_option_switches_rendering() -> None:
    out = typer.Typer()

    @out.command(cls=MlgridCommand)
    def show(ctx: typer.Context) -> None:
        from mlgrid.cli.output import render

        render(ctx, [{"name": "t1", "n": 1}], [Column("name", "name")])

    @out.command(cls=MlgridCommand)
    def nothing(ctx: typer.Context) -> None:
        from mlgrid.cli.output import render

        render(ctx, None)

    as_json = CliRunner().invoke(out, ["show"])
    assert json.loads(as_json.output) == [{"name": "t1", "n": 1}]
    as_table = CliRunner().invoke(out, ["show", "-o", "table"])
    assert "t1" in as_table.output and "┃" in as_table.output and "{" not in as_table.output
    assert CliRunner().invoke(out, ["nothing"]).output == ""


def test_narrow_tables_drop_the_columns_of_least_value_first() -> None:
    from mlgrid.cli.output import fit_columns

    headers = ["id", "state", "error", "time"]
    rows = [["1", "delivered", "x" * 40, "2026-01-01 10:00:00"]]
    assert fit_columns(headers, rows, [0, 1, 3, 2], 200) == [0, 1, 2, 3]
    # error (drop order 3) goes first, then time; id and state always stay.
    assert fit_columns(headers, rows, [0, 1, 3, 2], 50) == [0, 1, 3]
    assert fit_columns(headers, rows, [0, 1, 3, 2], 10) == [0, 1]


def test_table_caption_names_the_hidden_columns() -> None:
    records = [{"a": "x" * 30, "b": "y" * 30, "c": "z" * 30}]
    text = _rendered(build_table(records, width=70))
    assert "not shown (too narrow): c; -o table --wide shows all" in text
    assert "not shown" not in _rendered(build_table(records, width=70, wide=True))


def test_timestamps_in_cells_are_local_and_readable() -> None:
    from datetime import timedelta, timezone

    from mlgrid.cli.output import local_time

    paris = timezone(timedelta(hours=1))
    assert local_time("2026-11-22T06:33:55.252707Z", paris) == "2026-11-22 07:33:55"
    assert local_time("2026-11-22T06:33:55+00:00", paris) == "2026-11-22 07:33:55"
    assert local_time("orders/2026-11-22T06:33:55Z", paris) == "orders/2026-11-22T06:33:55Z"
    assert local_time("2026-11-22", paris) == "2026-11-22"
