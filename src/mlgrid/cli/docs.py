"""The CLI reference (``docs/cli.md``), generated from the same command tree ``--help`` shows.

Every command's help text, usage line and options come from the Typer/Click objects, so the
reference cannot drift from ``--help``: ``tests/unit/cli/test_cli_docs.py`` fails when the file
differs from what :func:`render_reference` produces. Regenerate with::

    .venv/bin/python -m mlgrid.cli.docs --write docs/cli.md
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import typer
import typer.main

from mlgrid.cli.clicklib import click
from mlgrid.cli.command import global_options

REGENERATE: Final = ".venv/bin/python -m mlgrid.cli.docs --write docs/cli.md"
INTRO: Final = """# CLI reference

Generated from `mlgrid --help` by `python -m mlgrid.cli.docs`; do not edit by hand
(regenerate with `{regenerate}`).

The client commands talk to a running server: `--url` (env `MLGRID_URL`, default
`http://127.0.0.1:8780`) and `--token` (env `MLGRID_TOKEN`, default the `admin.token` of the
local data dir, `MLGRID_DATA_DIR` or `./.mlgrid`). Results are printed as JSON (`-o json`, the
default, or env `MLGRID_OUTPUT`) or as a table (`-o table`). Server errors print the server's
error code and message on stderr and exit with 1; usage errors (a bad flag, a malformed
`--advanced-filter`) exit with 2.

Flags written with `...` take several values after one flag, as in `az`:
`--included-event-types A B`, `--advanced-filter data.x NumberIn 1 2`. The values run up to the
next `--flag`; a value that starts with `--` is written `--flag=VALUE`. Negative numbers are
values (`NumberInRange -10,-1`). Boolean flags also accept az's `true`/`false` after them.

## A session

The examples under each command below are the syntax, with names and ids of your own. This
session runs as written, from the clone, with the server of the README running and a webhook
receiver on port 9000 (`python examples/echo_receiver.py`):

```bash
source .venv/bin/activate                          # mlgrid on PATH
export MLGRID_TOKEN=$(cat .mlgrid/admin.token)     # found there anyway, but not from other folders
mlgrid topic create --name orders
mlgrid eventgrid event-subscription create --name big-orders --source-resource-id orders \
    --endpoint http://127.0.0.1:9000/hook --included-event-types Shop.OrderPlaced \
    --advanced-filter data.total NumberGreaterThan 10
mlgrid eventgrid event-subscription test --name big-orders --source-resource-id orders \
    --event '{"eventType": "Shop.OrderPlaced", "subject": "orders/1", "data": {"total": 12.5}}' -o table
mlgrid events publish --topic orders \
    --data '{"eventType": "Shop.OrderPlaced", "subject": "orders/1", "data": {"total": 12.5}}'
mlgrid events list --topic orders -o table
mlgrid deliveries list --name big-orders --source-resource-id orders -o table

mlgrid ml workspace create --name ws1
mkdir -p project && cd project && echo 'print("trained")' > train.py
mlgrid ml job submit -w ws1 --experiment train --command "python train.py" --wait -o table
RUN_ID=$(mlgrid ml run list -w ws1 --experiment train \\
         | python -c 'import json, sys; print(json.load(sys.stdin)[0]["runId"])')
mlgrid ml job show -w ws1 --run-id "$RUN_ID" --log        # trained
mlgrid ml run artifacts -w ws1 --run-id "$RUN_ID" -o table  # logs/job.log, snapshot/train.py
cd ..
```
"""


def _walk(command: click.Command, ctx: click.Context) -> Iterator[tuple[click.Command, click.Context]]:
    yield command, ctx
    list_commands = getattr(command, "list_commands", None)
    if list_commands is None:
        return
    for name in list_commands(ctx):
        sub = command.get_command(ctx, name)  # type: ignore[attr-defined]
        if sub is None or getattr(sub, "hidden", False):
            continue
        yield from _walk(sub, click.Context(sub, info_name=name, parent=ctx))


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _value_label(param: click.Parameter, ctx: click.Context) -> str:
    if getattr(param, "is_flag", False):
        return ""
    if param.metavar:
        return param.metavar
    display = getattr(param, "display_type", None)  # Typer's "<int>", "<a|b>"
    if callable(display):
        return str(display(ctx)).strip("<>")
    return (param.name or "").upper()


def _option_row(param: click.Parameter, ctx: click.Context) -> str:
    names = ", ".join(f"`{n}`" for n in [*param.opts, *param.secondary_opts])
    notes: list[str] = []
    if param.required:
        notes.append("required")
    default = param.default
    if not param.required and default not in (None, False, (), []) and not callable(default):
        if getattr(param, "is_flag", False) and param.secondary_opts:
            notes.append(f"default: `{param.opts[0] if default else param.secondary_opts[0]}`")
        else:
            notes.append(f"default: `{getattr(default, 'value', default)}`")
    help_text = _cell(getattr(param, "help", None) or "")
    if notes:
        help_text = f"{help_text} ({', '.join(notes)})" if help_text else f"({', '.join(notes)})"
    value = _value_label(param, ctx)
    return f"| {names} | {_cell(f'`{value}`') if value else ''} | {help_text} |"


def _options_table(params: list[click.Parameter], ctx: click.Context) -> list[str]:
    visible = [p for p in params if p.param_type_name == "option" and not getattr(p, "hidden", False)]
    rows = [_option_row(p, ctx) for p in visible]
    if not rows:
        return []
    return ["| option | value | description |", "|---|---|---|", *rows, ""]


def _own_params(command: click.Command, ctx: click.Context) -> list[click.Parameter]:
    """The command's options without the global ones (documented once) and ``--help``."""
    global_names = {p.name for p in global_options()}
    shared = {"help", "install_completion", "show_completion"}
    return [p for p in command.get_params(ctx) if p.name not in global_names | shared]


def render_reference(app: typer.Typer, prog_name: str = "mlgrid") -> str:
    """The Markdown reference of every command of ``app``."""
    root = typer.main.get_command(app)
    root_ctx = click.Context(root, info_name=prog_name)
    lines = [INTRO.replace("{regenerate}", REGENERATE)]  # the session holds JSON braces
    lines += ["## Global options", "", "Accepted before the command group and after every client command."]
    lines.append("")
    lines += _options_table(list(global_options()), root_ctx)
    entries = list(_walk(root, root_ctx))
    lines += ["## Commands", ""]
    for _command, ctx in entries[1:]:
        depth = ctx.command_path.count(" ") - 1
        lines.append(f"{'  ' * depth}* [`{ctx.command_path}`](#{_anchor(ctx.command_path)})")
    lines.append("")
    for command, ctx in entries[1:]:
        level = min(2 + ctx.command_path.count(" ") - 1, 6)
        lines += [f"{'#' * level} {ctx.command_path}", ""]
        help_text = (command.help or "").strip()
        if help_text:
            lines += [help_text, ""]
        pieces = " ".join(command.collect_usage_pieces(ctx))
        lines += ["```text", f"{ctx.command_path} {pieces}".rstrip(), "```", ""]
        if getattr(command, "list_commands", None) is not None:
            subcommands = command.list_commands(ctx)  # type: ignore[attr-defined]
            lines += [f"Commands: {', '.join(f'`{name}`' for name in subcommands)}.", ""]
        lines += _options_table(_own_params(command, ctx), ctx)
    return "\n".join(lines).rstrip() + "\n"


def _anchor(title: str) -> str:
    return "".join(ch for ch in title.lower().replace(" ", "-") if ch.isalnum() or ch in "-_")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the CLI reference (docs/cli.md).")
    parser.add_argument("--write", metavar="PATH", help="write the reference to PATH instead of stdout")
    parser.add_argument("--check", metavar="PATH", help="exit 1 when PATH is not the generated reference")
    args = parser.parse_args(argv)
    from mlgrid.cli.main import app

    text = render_reference(app)
    if args.check:
        current = Path(args.check).read_text(encoding="utf-8") if Path(args.check).exists() else ""
        if current != text:
            print(f"{args.check} is out of date; regenerate with: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    if args.write:
        Path(args.write).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
