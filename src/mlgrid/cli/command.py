"""The Click command class behind every ``mlgrid`` client command.

It adds two things to Typer's command:

1. **az-style multi-value flags.** Click options take one value per flag; ``az`` flags take
   every word up to the next flag (``--included-event-types A B``, ``--advanced-filter KEY OP V1
   V2``, repeatable). Before Click parses, :func:`expand_multi_values` rewrites such runs into
   what Click understands: a *flat* option (its values accumulate into one list) becomes one
   ``--flag=VALUE`` per value; a *grouped* option (each occurrence is one item: a filter, a
   header mapping) becomes one ``--flag=<group>`` per occurrence, decoded again into
   :class:`Tokens` by the option's parser. Boolean flags accept az's optional value
   (``--subject-case-sensitive true``/``false``).

   A run of values ends at the next token starting with ``--``, at a short option of the
   command (``-o``, ``-n``), or at ``--``. Anything else is a value, including negative numbers
   (``-1``) and words such as ``-x``. A value that itself starts with ``--`` is written with
   ``=``: ``--labels=--odd`` (the first value after ``=`` is taken literally).

2. **Connection and output options on every command** (``--url``, ``--token``, ``-o/--output``,
   ``--wide``),
   also accepted before the command group (``mlgrid -o table topic list``); they are kept in the
   context, not passed to the command function. Server errors (:class:`ApiError`) become the
   server's code and message on stderr and exit code 1; usage errors exit with 2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Final

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

from mlgrid.cli.clicklib import click

if TYPE_CHECKING:
    # The SDK (and httpx under it) is imported when a command talks to a server, not when the
    # command line is merely built: ``mlgrid --help`` and ``mlgrid serve`` never need it.
    from mlgrid.client.broker import Source
    from mlgrid.client.client import Client
    from mlgrid.client.http import ApiError

_META_KEY: Final = "mlgrid.connection"
_GROUP_PREFIX: Final = "\x00group:"  # marks an encoded group (never typed on a command line)


# ---------------------------------------------------------------------------------------------
# Multi-value flags (pure: unit-tested without Click)


@dataclass(frozen=True)
class Tokens:
    """The words that followed one occurrence of a grouped flag (``KEY OP V1 V2``)."""

    values: tuple[str, ...]

    @classmethod
    def decode(cls, text: str | Tokens) -> Tokens:
        """Click parser for grouped options: the inverse of :func:`expand_multi_values`."""
        if isinstance(text, Tokens):
            return text
        if text.startswith(_GROUP_PREFIX):
            return cls(tuple(json.loads(text[len(_GROUP_PREFIX):])))
        return cls((text,))

    def encode(self) -> str:
        return _GROUP_PREFIX + json.dumps(list(self.values))

    def __iter__(self) -> Any:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class Arity:
    """How many values one occurrence of a multi-value flag takes (``maximum=None``: no limit)."""

    minimum: int = 1
    maximum: int | None = None
    metavar: str = "VALUE..."


@dataclass(frozen=True)
class MultiValueSpec:
    """Which options of a command take several values, and what ends a run of values.

    ``flat`` and ``grouped`` map every spelling of an option (``--labels``) to its canonical
    long name and arity; ``booleans`` maps a flag to its negative form (``None`` if it has
    none); ``short_options`` are the command's one-letter options, which end a run of values.
    """

    flat: Mapping[str, tuple[str, Arity]] = field(default_factory=dict)
    grouped: Mapping[str, tuple[str, Arity]] = field(default_factory=dict)
    booleans: Mapping[str, str | None] = field(default_factory=dict)
    short_options: frozenset[str] = frozenset()


class MultiValueError(ValueError):
    """A multi-value flag with too few or too many values."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"{option}: {reason}")
        self.option = option
        self.reason = reason


_BOOLEAN_WORDS: Final = frozenset({"true", "false"})


def _ends_values(token: str, spec: MultiValueSpec) -> bool:
    if token.startswith("--"):
        return True
    return len(token) >= 2 and token[:2] in spec.short_options


def expand_multi_values(args: Sequence[str], spec: MultiValueSpec) -> list[str]:
    """Rewrite az-style multi-value runs into one Click option per value (see module docstring).

    Raises :class:`MultiValueError` when an occurrence has fewer or more values than its arity.
    """
    result: list[str] = []
    index, size = 0, len(args)
    while index < size:
        token = args[index]
        index += 1
        if token == "--":
            result.extend(args[index - 1:])
            break
        name, has_inline, inline = token.partition("=")
        inline_value: str | None = inline if has_inline and name.startswith("--") else None
        option = name if inline_value is not None else token
        if option in spec.booleans:
            word = inline_value
            if word is None and index < size and args[index].lower() in _BOOLEAN_WORDS:
                word = args[index]
                index += 1
            if word is None or word.lower() == "true":
                result.append(option)
            elif word.lower() == "false":
                negative = spec.booleans[option]
                if negative is not None:
                    result.append(negative)
            else:
                raise MultiValueError(option, f"expected true or false, got {word!r}")
            continue
        entry = spec.flat.get(option) or spec.grouped.get(option)
        if entry is None:
            result.append(token)
            continue
        canonical, arity = entry
        values: list[str] = [] if inline_value is None else [inline_value]
        while index < size and not _ends_values(args[index], spec):
            values.append(args[index])
            index += 1
        if len(values) < arity.minimum:
            wanted = "a value" if arity.minimum == 1 else f"at least {arity.minimum} values"
            raise MultiValueError(option, f"expected {wanted} ({option} {arity.metavar}), got {len(values)}")
        if arity.maximum is not None and len(values) > arity.maximum:
            usage = f"{option} {arity.metavar}"
            count = len(values)
            raise MultiValueError(option, f"expected at most {arity.maximum} values ({usage}), got {count}")
        if option in spec.grouped:
            result.append(f"{canonical}={Tokens(tuple(values)).encode()}")
        else:
            result.extend(f"{canonical}={value}" for value in values)
    return result


# ---------------------------------------------------------------------------------------------
# Connection and output settings


@dataclass
class Connection:
    """What the global options said; ``None`` means "not given" (environment, then defaults)."""

    url: str | None = None
    token: str | None = None
    output: str | None = None
    wide: bool = False


def connection(ctx: click.Context) -> Connection:
    meta: Connection | None = ctx.meta.get(_META_KEY)
    if meta is None:
        meta = Connection()
        ctx.meta[_META_KEY] = meta
    return meta


class OutputFormat(StrEnum):
    json = "json"
    table = "table"


def _remember_url(ctx: typer.Context, value: str | None) -> None:
    if value is not None:
        connection(ctx).url = value


def _remember_token(ctx: typer.Context, value: str | None) -> None:
    if value is not None:
        connection(ctx).token = value


def _remember_output(ctx: typer.Context, value: OutputFormat | None) -> None:
    if value is not None:
        connection(ctx).output = value.value


def _remember_wide(ctx: typer.Context, value: bool) -> None:
    if value:
        connection(ctx).wide = True


URL_HELP: Final = "Server URL [env MLGRID_URL; default http://127.0.0.1:8780]."
TOKEN_HELP: Final = "Bearer token [env MLGRID_TOKEN; default: the admin.token of the local data dir]."
OUTPUT_HELP: Final = "Output format: json or table [env MLGRID_OUTPUT; default json]."
WIDE_HELP: Final = "With -o table: every column, even when the terminal is too narrow for them."
GLOBAL_PANEL: Final = "Global options"


def _global_options_declaration(
    url: str | None = typer.Option(
        None, "--url", metavar="URL", expose_value=False, callback=_remember_url, help=URL_HELP,
        rich_help_panel=GLOBAL_PANEL,
    ),
    token: str | None = typer.Option(
        None, "--token", metavar="TOKEN", expose_value=False, callback=_remember_token, help=TOKEN_HELP,
        rich_help_panel=GLOBAL_PANEL,
    ),
    output: OutputFormat | None = typer.Option(
        None, "--output", "-o", expose_value=False, callback=_remember_output, help=OUTPUT_HELP,
        case_sensitive=False, rich_help_panel=GLOBAL_PANEL,
    ),
    wide: bool = typer.Option(
        False, "--wide", expose_value=False, callback=_remember_wide, help=WIDE_HELP,
        rich_help_panel=GLOBAL_PANEL,
    ),
) -> None:
    """Only declares the global options; Typer turns the signature into Click parameters."""


@cache
def global_options() -> tuple[click.Parameter, ...]:
    """``--url``, ``--token`` and ``-o/--output``, built by Typer so they fit its commands."""
    declaration = typer.Typer(add_completion=False)
    declaration.command()(_global_options_declaration)
    return tuple(typer.main.get_command(declaration).params)


def wide_output(ctx: click.Context) -> bool:
    """Whether ``--wide`` was given (here or before the command group)."""
    return connection(ctx).wide


def output_format(ctx: click.Context, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    chosen = (connection(ctx).output or env.get("MLGRID_OUTPUT") or "json").lower()
    return chosen if chosen in OutputFormat.__members__ else "json"


# ---------------------------------------------------------------------------------------------
# Errors


def report_api_error(error: ApiError, token_given: bool = True) -> None:
    """The server's error code, message and details on stderr (what a user needs to fix it)."""
    code = error.code or f"HTTP{error.status}"
    lines = [f"error: {code}: {error.message}"]
    for detail in error.details:
        message = str(detail.get("message", ""))
        if message and message != error.message:
            target = detail.get("target")
            named = bool(target) and str(target) not in message
            lines.append(f"  - {target}: {message}" if named else f"  - {message}")
    if error.status == 401 and not token_given:
        lines.append("hint: no token was found; pass --token, set MLGRID_TOKEN, or run on the server's "
                     "machine (its data dir holds admin.token)")
    click.echo("\n".join(lines), err=True)


# ---------------------------------------------------------------------------------------------
# The command class


def hide_flag_types(params: Sequence[click.Parameter]) -> None:
    """Give flags (``--wait``, ``--help``) an empty metavar, so help shows no ``<bool>`` after
    options that take no value (Typer prints every option's type)."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class MlgridGroup(TyperGroup):
    """A Typer command group whose help shows no ``<bool>`` after flags; every ``typer.Typer``
    of the CLI is created with ``cls=MlgridGroup`` (a test walks the tree)."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        hide_flag_types(self.get_params(ctx))
        super().format_help(ctx, formatter)


class QuietCommand(TyperCommand):
    """A Typer command whose help shows no ``<bool>`` after flags (``mlgrid serve``'s class;
    the client commands' :class:`MlgridCommand` is one too)."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        hide_flag_types(self.get_params(ctx))
        super().format_help(ctx, formatter)


class MlgridCommand(QuietCommand):
    """A Typer command with az-style multi-value flags, global options and error reporting.

    Every option declared as a list (``list[str]``) takes several values after one flag; options
    whose values are groups (``list[Tokens]``) are named in ``grouped`` (see
    :func:`multi_value_command`).
    """

    grouped: ClassVar[Mapping[str, Arity]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(global_options())

    def multi_value_spec(self) -> MultiValueSpec:
        flat: dict[str, tuple[str, Arity]] = {}
        grouped: dict[str, tuple[str, Arity]] = {}
        booleans: dict[str, str | None] = {}
        shorts: set[str] = set()
        for param in self.params:
            if param.param_type_name != "option":
                continue
            names = [*param.opts, *param.secondary_opts]
            shorts.update(n for n in names if len(n) == 2 and n.startswith("-") and n != "--")
            long_names = [n for n in param.opts if n.startswith("--")]
            if not long_names:
                continue
            canonical = long_names[0]
            if getattr(param, "is_bool_flag", False):
                negative = param.secondary_opts[0] if param.secondary_opts else None
                for name in long_names:
                    booleans[name] = negative
            elif canonical in self.grouped:
                for name in param.opts:
                    grouped[name] = (canonical, self.grouped[canonical])
            elif param.multiple:
                metavar = param.metavar or "VALUE..."
                for name in param.opts:
                    flat[name] = (canonical, Arity(1, None, metavar))
        return MultiValueSpec(flat, grouped, booleans, frozenset(shorts))

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            args = expand_multi_values(args, self.multi_value_spec())
        except MultiValueError as exc:
            if "--help" not in args:
                raise typer.BadParameter(exc.reason, ctx=ctx, param_hint=f"'{exc.option}'") from exc
            args = ["--help"]  # help wins over an incomplete flag, as in az
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        from mlgrid.client.http import ApiError

        try:
            return super().invoke(ctx)
        except ApiError as exc:
            report_api_error(exc, token_given=bool(ctx.meta.get("mlgrid.token_resolved", True)))
            raise typer.Exit(1) from exc


def multi_value_command(**grouped: Arity) -> type[MlgridCommand]:
    """An :class:`MlgridCommand` class whose named options take groups of values.

    Keys are option names with ``_`` for ``-`` and no leading dashes:
    ``multi_value_command(advanced_filter=Arity(1, None, "KEY OPERATOR [VALUE...]"))``.
    """
    names = {"--" + key.replace("_", "-"): arity for key, arity in grouped.items()}
    return type("GroupedMlgridCommand", (MlgridCommand,), {"grouped": names})


# ---------------------------------------------------------------------------------------------
# Helpers for command functions


def open_client(ctx: typer.Context) -> Client:
    """The SDK client for this invocation (closed with the context)."""
    from mlgrid.client.client import Client

    settings = connection(ctx)
    client = Client(settings.url, settings.token)
    ctx.meta["mlgrid.token_resolved"] = bool(client.http.token)
    ctx.call_on_close(client.close)
    return client


def source_option(value: str | Source) -> Source:
    """Typer parser for ``--source-resource-id``: a topic/workspace name, path or Azure id."""
    from mlgrid.client.broker import parse_source

    try:
        return parse_source(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def key_value_pairs(values: Sequence[str], option: str) -> dict[str, str]:
    """``KEY=VALUE`` words (az's ``--input-mapping-fields id=myId``) as a dict."""
    pairs: dict[str, str] = {}
    for item in values:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=f"'{option}'")
        pairs[key] = value
    return pairs
