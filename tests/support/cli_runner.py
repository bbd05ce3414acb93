"""Running the ``mlgrid`` CLI in-process against a real server, for the e2e CLI tests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from typer.testing import CliRunner, Result

from mlgrid.cli.main import app
from tests.support.server import ServerProcess


def plain(output: str) -> str:
    """Output on one line without Rich's error box (which wraps long messages)."""
    return " ".join(output.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())


@dataclass
class Cli:
    """``cli("topic", "list")`` runs ``mlgrid topic list --url <server> --token <admin>``."""

    server: ServerProcess
    token: str | None = None

    def run(
        self,
        *args: str,
        expect: int | None = 0,
        input: str | bytes | None = None,
        token: str | None = None,
        env: Mapping[str, str] | None = None,
        connect: bool = True,
    ) -> Result:
        argv = list(args)
        if connect:
            argv += ["--url", self.server.url]
            chosen = token if token is not None else (self.token or self.server.admin_token)
            if chosen:
                argv += ["--token", chosen]
        # Wide enough that Rich tables never fold a cell in the middle of a value.
        result = CliRunner().invoke(app, argv, input=input, env={"COLUMNS": "400", **(env or {})})
        if expect is not None:
            assert result.exit_code == expect, (
                f"mlgrid {' '.join(args)} exited {result.exit_code}, expected {expect}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}\nexception: {result.exception!r}"
            )
        return result

    def json(self, *args: str, **kwargs: Any) -> Any:
        result = self.run(*args, "-o", "json", **kwargs)
        return json.loads(result.stdout) if result.stdout.strip() else None
