"""docs/cli.md is generated from the command tree and must match it; every command explains itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from mlgrid.cli.clicklib import click
from mlgrid.cli.docs import REGENERATE, render_reference
from mlgrid.cli.main import app

DOCS = Path(__file__).resolve().parents[3] / "docs" / "cli.md"


def _leaf_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(command: click.Command, ctx: click.Context, path: list[str]) -> None:
        list_commands = getattr(command, "list_commands", None)
        if list_commands is None:
            paths.append(path)
            return
        for name in list_commands(ctx):
            sub = command.get_command(ctx, name)  # type: ignore[attr-defined]
            walk(sub, click.Context(sub, info_name=name, parent=ctx), [*path, name])

    walk(root, click.Context(root, info_name="mlgrid"), [])
    return paths


def test_cli_reference_is_up_to_date() -> None:
    expected = render_reference(app)
    current = DOCS.read_text(encoding="utf-8") if DOCS.exists() else ""
    assert current == expected, f"docs/cli.md is out of date with --help; regenerate with: {REGENERATE}"


def test_reference_documents_every_command() -> None:
    text = render_reference(app)
    for path in _leaf_paths():
        heading = re.compile(rf"^#+ mlgrid {re.escape(' '.join(path))}$", re.MULTILINE)
        assert heading.search(text), f"mlgrid {' '.join(path)} is missing from the reference"


@pytest.mark.parametrize("path", _leaf_paths(), ids=lambda p: " ".join(p))
def test_every_command_has_help_with_an_example(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    if path != ["serve"]:
        assert "Example" in result.output, f"mlgrid {' '.join(path)} --help shows no example"
