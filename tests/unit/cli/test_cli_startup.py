"""``mlgrid --help`` imports only what it shows; the lazy listing says what the commands say."""

from __future__ import annotations

import json
import subprocess
import sys

import typer.main

from mlgrid.cli.clicklib import click
from mlgrid.cli.lazy import first_paragraph
from mlgrid.cli.main import _Root, app

NOT_FOR_HELP = ("httpx", "mlgrid.client", "mlgrid.filters", "mlgrid.server", "sqlalchemy", "rich.progress")


def test_help_imports_no_command_module() -> None:
    script = (
        "import json, sys\n"
        "from mlgrid.cli.main import main\n"
        "sys.argv = ['mlgrid', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert "Commands" in done.stdout and "eventgrid" in done.stdout
    loaded = json.loads(done.stderr.strip().splitlines()[-1])
    for name in NOT_FOR_HELP:
        assert not [m for m in loaded if m == name or m.startswith(name + ".")], f"--help imported {name}"
    for name in _Root.lazy.values():
        assert name.module not in loaded, f"--help imported {name.module}"


def test_lazy_summaries_are_the_commands_own_help() -> None:
    root = typer.main.get_command(app)
    ctx = click.Context(root, info_name="mlgrid")
    assert isinstance(root, _Root)
    for name, spec in _Root.lazy.items():
        real = spec.load(name)
        assert spec.summary == first_paragraph(real.short_help or real.help or ""), name
        loaded = root.get_command(ctx, name)
        assert loaded is not None and loaded.name == name and type(loaded) is type(real)
    assert root.list_commands(ctx) == list(_Root.order)


def test_a_lazy_command_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlgrid.cli.main", "topic", "--help"], capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "create" in result.stdout and "Custom topics" in result.stdout
