"""A command group that imports a subcommand's module only when that subcommand runs.

``mlgrid --help`` and ``mlgrid serve`` need none of the client commands, yet importing them
all (the SDK and httpx, the filter parser, rich's progress bars, the demo) cost more than the
rest of start-up together. So the root group knows each lazy subcommand by its module, its
attribute and the one-line help its listing shows; while the root's help is formatted it
lists placeholders carrying that line, and any other lookup (running the command, its own
``--help``, the generated reference walking the tree) imports the module and returns the real
command. A test keeps the listed lines equal to the real commands' help.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

from mlgrid.cli.clicklib import click


@dataclass(frozen=True)
class LazyCommand:
    """Where a subcommand lives and what the root's listing says about it.

    ``attribute`` names a ``typer.Typer`` (a command group) or a command function, which is
    registered with ``command_class``. ``summary`` is the first paragraph of its help.
    """

    module: str
    attribute: str
    summary: str
    command_class: type[TyperCommand] | None = None

    def load(self, name: str) -> click.Command:
        target = getattr(importlib.import_module(self.module), self.attribute)
        if isinstance(target, typer.Typer):
            command = typer.main.get_command(target)
        else:
            single = typer.Typer()
            single.command(name, cls=self.command_class)(target)
            command = typer.main.get_command(single)
        command.name = name
        return command


def first_paragraph(help_text: str) -> str:
    """What a command listing shows of ``help_text`` (its first paragraph)."""
    return inspect.cleandoc(help_text).split("\n\n")[0]


class LazyGroup(TyperGroup):
    """A Typer group whose ``lazy`` subcommands are imported on first real use.

    Subclasses set ``lazy`` (name → :class:`LazyCommand`) and ``order`` (how the listing is
    ordered; names not in it follow, in registration order).
    """

    lazy: ClassVar[Mapping[str, LazyCommand]] = {}
    order: ClassVar[Sequence[str]] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(super().list_commands(ctx))
        names += [name for name in self.lazy if name not in names]
        rank = {name: i for i, name in enumerate(self.order)}
        return sorted(names, key=lambda name: rank.get(name, len(rank)))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        spec = self.lazy.get(cmd_name)
        if command is not None or spec is None:
            return command
        if self._listing:
            return TyperCommand(cmd_name, help=spec.summary)
        command = spec.load(cmd_name)
        self.add_command(command, cmd_name)
        return command

    def format_help(self, ctx: click.Context, formatter: Any) -> None:
        """The root's help lists the lazy subcommands by their summaries, importing nothing."""
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False
