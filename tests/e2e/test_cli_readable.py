"""The CLI as a person reads it, at 80 and 200 columns: tables that fit, local readable
times, help without type noise that names every command group, a tail that says when nothing
arrived, and waiting commands that report their progress."""

from __future__ import annotations

import re
import uuid

import pytest
import typer.main
from tests.e2e.test_cli_deliveries import deliver_two_of_three
from tests.support.cli_runner import Cli
from tests.support.receiver import Receiver

from mlgrid.cli.clicklib import click
from mlgrid.cli.main import app

ALL_DELIVERY_COLUMNS = ("id", "eventId", "eventType", "state", "attempts", "lastOutcome", "lastStatus",
                        "lastError", "lastAttempt", "nextAttempt", "reason")
LOCAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def headers(table: str) -> list[str]:
    """The header words of a Rich table (the line between ┃ borders)."""
    line = next(line for line in table.splitlines() if line.startswith("┃"))
    return [word.strip() for word in line.strip("┃").split("┃")]


@pytest.fixture(scope="module")
def delivered(cli: Cli, receiver: Receiver) -> tuple[str, str, str]:
    return deliver_two_of_three(cli, receiver)


@pytest.mark.parametrize("columns", [80, 200])
def test_a_wide_table_fits_the_terminal(cli: Cli, delivered: tuple[str, str, str], columns: int) -> None:
    topic, name, _ = delivered
    listing = ("deliveries", "list", "-n", name, "--source-resource-id", topic, "-o", "table")
    text = cli.run(*listing, env={"COLUMNS": str(columns)}).stdout
    assert max(len(line) for line in text.splitlines()) <= columns
    shown = headers(text)
    # What matters stays, whole: which delivery, its state, of which event type.
    assert {"id", "state", "eventType"} <= set(shown)
    assert "delivered" in text and "Shop.OrderPlaced" in text
    hidden = [c for c in ALL_DELIVERY_COLUMNS if c not in shown]
    if hidden:
        assert "not shown (too narrow): " + ", ".join(hidden) in " ".join(text.split())
        assert "--wide" in text
    if columns == 80:
        assert hidden and "lastError" in hidden  # the least useful column goes first
        assert len(shown) >= 4  # and only as many as needed
    wide = cli.run(*listing, "--wide", env={"COLUMNS": str(columns)}).stdout
    assert "not shown" not in wide and len(headers(wide)) == len(ALL_DELIVERY_COLUMNS)


@pytest.mark.parametrize("columns", [80, 200])
def test_times_in_tables_are_local_and_readable(
    cli: Cli, delivered: tuple[str, str, str], columns: int
) -> None:
    topic, _, _ = delivered
    text = cli.run("events", "list", "--topic", topic, "-o", "table", env={"COLUMNS": str(columns)}).stdout
    assert max(len(line) for line in text.splitlines()) <= columns
    assert LOCAL_TIME.search(text), text
    assert not re.search(r"\d{2}:\d{2}:\d{2}\.\d+Z", text)  # no raw ISO 8601 with fractions
    as_json = cli.run("events", "list", "--topic", topic, "-o", "json").stdout
    assert re.search(r'"eventTime": "\d{4}-\d{2}-\d{2}T[^"]*Z"', as_json)  # JSON is left as it came


@pytest.mark.parametrize("columns", [80, 200])
def test_help_has_no_type_noise_and_names_every_group(cli: Cli, columns: int) -> None:
    env = {"COLUMNS": str(columns)}
    root = cli.run("--help", env=env, connect=False).stdout
    for group in ("topic", "eventgrid", "events", "deadletters", "deliveries", "ml", "demo", "serve"):
        assert re.search(rf"│ {group}\s", root), group
    flat = " ".join(cli.run("ml", "--help", env=env, connect=False).stdout.replace("│", " ").split())
    assert "endpoints" in flat and "datadrift" in flat  # the ml summary names them
    for group in ("endpoint", "datadrift", "job", "model"):
        assert f" {group} " in flat
    assert "endpoints" in " ".join(root.replace("│", " ").split())
    checked = 0
    for path in command_paths(typer.main.get_command(app), ()):
        result = cli.run(*path, "--help", env=env, connect=False)
        assert "<bool>" not in result.stdout, " ".join(path)
        checked += 1
    assert checked > 40


def command_paths(
    command: click.Command, path: tuple[str, ...], parent: click.Context | None = None
) -> list[tuple[str, ...]]:
    """Every command and group of the CLI, as the words that name it (groups too: their help
    is printed by another class, which a new group must also use). Groups are asked for their
    commands, so the root's lazily imported ones are found too."""
    found = [path]
    if hasattr(command, "list_commands"):
        ctx = click.Context(command, info_name=path[-1] if path else "mlgrid", parent=parent)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
                found += command_paths(sub, (*path, name), ctx)
    return found


def test_tail_says_when_nothing_arrived(cli: Cli) -> None:
    topic = "t" + uuid.uuid4().hex[:10]
    cli.run("topic", "create", "--name", topic)
    quiet = cli.run("events", "tail", "--topic", topic, "--timeout", "0.3", "--poll-interval", "0.1",
                    "--event-type", "Shop.Nothing")
    assert quiet.stdout == ""
    assert f"no event arrived on /topics/{topic} within 0.3 s matching type Shop.Nothing" in quiet.stderr


def test_waiting_for_a_job_reports_its_states(cli: Cli) -> None:
    workspace = "ws" + uuid.uuid4().hex[:8]
    cli.run("ml", "workspace", "create", "--name", workspace)
    result = cli.run("ml", "job", "submit", "-w", workspace, "-e", "progress", "--command", "sleep 0.5",
                     "--wait", "--poll-interval", "0.1", "-o", "json")
    lines = result.stderr.splitlines()
    # Not a terminal: one line per state, the last one the end state.
    assert lines and all(re.fullmatch(r"job progress_\S+: \w+ \(\d+ s\)", line) for line in lines), lines
    assert lines[-1].split(": ")[1].startswith("Completed")
    assert len(lines) == len({line.split(" (")[0] for line in lines})  # no repeated state
