"""``mlgrid ml ...``: the ML workspace (workspaces, runs, jobs, models, datasets)."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="The ML workspace: workspaces, runs, jobs, models, datasets.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
