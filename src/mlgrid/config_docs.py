"""The server configuration reference (``docs/configuration.md``), generated from ``SETTINGS``.

Names, environment variables, defaults and help come from ``mlgrid.config.SETTINGS``; the
flags come from the ``mlgrid serve`` command itself, so the page lists what the command really
accepts. ``tests/unit/test_docs_settings.py`` fails when the file differs from what
:func:`render_configuration` produces or when a setting is missing. Regenerate with::

    .venv/bin/python -m mlgrid.config_docs --write docs/configuration.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

from mlgrid.config import DEFAULT_RETRY_SCHEDULE, SETTINGS, SettingSpec

REGENERATE: Final = ".venv/bin/python -m mlgrid.config_docs --write docs/configuration.md"

INTRO: Final = """# Configuration

Generated from `mlgrid.config.SETTINGS` by `python -m mlgrid.config_docs`; do not edit by hand
(regenerate with `{regenerate}`).

`mlgrid serve` reads every setting from, in this order of precedence:

1. its command-line flag (`mlgrid serve --port 9000`);
2. its environment variable (`MLGRID_PORT=9000 mlgrid serve`);
3. the default below.

Boolean variables accept `1`, `true`, `yes`, `on` and `0`, `false`, `no`, `off` (any case).
The settings are read once at start; changing them needs a restart.

| setting | flag | environment variable | default | description |
|---|---|---|---|---|
"""

OUTRO: Final = """
## Files in the data directory

| file | what it is |
|---|---|
| `mlgrid.db` | the SQLite database (with `-wal` and `-shm` files next to it) when `database_url` is empty |
| `admin.token` | the admin principal's bearer token, written on the first start (mode 0600) |
| `secret.key` | the key sealing topic keys and subscription secrets (mode 0600), unless `secret_key` is set |
| `blobs/` | dead-letter containers (`<container>/<SUBSCRIPTION>/<yyyy>/<m>/<d>/<h>/<uuid>.json`) \
without `blob_url` |
| `workspaces/` | workspace files (`<workspace>/runs/`, `models/`, `datasets/`) without `blob_url`; \
with it, this node's staging, deployments and running job logs |
| `tls/cert.pem`, `tls/key.pem` | certificate and key of `--tls-self-signed`, made once (mode 0600) |

## https

`mlgrid serve` speaks plain http unless given `--tls-certfile` and `--tls-keyfile` (a PEM
certificate chain and its key) or `--tls-self-signed`. Azure's SDKs send bearer tokens only
over https, so a `TokenCredential` needs one of them. Clients trust a self-signed server with
its certificate: `MLGRID_CA_BUNDLE=<data-dir>/tls/cert.pem` for mlgrid's SDK and CLI,
`REQUESTS_CA_BUNDLE` (or `SSL_CERT_FILE`) for Azure's SDKs, `--tls` for `benchmarks/publish.py`.

Several nodes sharing one PostgreSQL database must use the same `secret_key` (or copies of one
`secret.key`); each keeps its own data directory. The subscription id is stored in the database
by the first node that starts, so the others find it there.
"""


def _serve_flags() -> dict[str, str]:
    """``setting name -> "--flag"`` (or ``"--on / --off"``) from the ``serve`` command."""
    import typer.main

    from mlgrid.cli.clicklib import click
    from mlgrid.cli.main import app

    root = typer.main.get_command(app)
    context = click.Context(root)
    serve = root.get_command(context, "serve")  # type: ignore[attr-defined]
    flags: dict[str, str] = {}
    for param in serve.params:
        if param.name is None:
            continue
        names = [*param.opts, *getattr(param, "secondary_opts", [])]
        flags[param.name] = " / ".join(f"`{n}`" for n in names)
    return flags


def _default(spec: SettingSpec) -> str:
    if spec.kind == "bool":
        if spec.default is None:
            return "`auto`"
        return "`true`" if spec.default else "`false`"
    if spec.kind == "schedule" and not spec.default:
        steps = ",".join(f"{s:g}" for s in DEFAULT_RETRY_SCHEDULE)
        return f"`{steps}`"
    if spec.default == "":
        return "(empty)"
    return f"`{spec.default}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_configuration() -> str:
    """The whole of ``docs/configuration.md``."""
    flags = _serve_flags()
    lines = [INTRO.format(regenerate=REGENERATE)]
    for spec in SETTINGS:
        flag = flags.get(spec.name, f"`{spec.flag}`")
        lines.append(
            f"| `{spec.name}` | {flag} | `{spec.env_var}` | {_default(spec)} | {_cell(spec.help)} |\n"
        )
    lines.append(OUTRO)
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print or write docs/configuration.md.")
    parser.add_argument("--write", type=Path, help="write to this file instead of printing")
    args = parser.parse_args(argv)
    text = render_configuration()
    if args.write is None:
        sys.stdout.write(text)
    else:
        args.write.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
