"""``docs/configuration.md`` documents every setting, and is what the generator writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlgrid.config import SETTINGS, SettingSpec
from mlgrid.config_docs import REGENERATE, render_configuration

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


@pytest.mark.parametrize("spec", SETTINGS, ids=[s.name for s in SETTINGS])
def test_every_setting_is_documented(doc: str, spec: SettingSpec) -> None:
    rows = [line for line in doc.splitlines() if line.startswith(f"| `{spec.name}` |")]
    assert len(rows) == 1, f"setting {spec.name!r} is missing from {DOC.name}; regenerate with {REGENERATE}"
    row = rows[0]
    assert f"`{spec.env_var}`" in row
    assert f"`{spec.flag}`" in row
    assert " ".join(spec.help.split()) in row


def test_file_is_what_the_generator_writes(doc: str) -> None:
    assert doc == render_configuration(), f"{DOC.name} is stale; regenerate with {REGENERATE}"


def test_documented_flags_are_accepted_by_serve() -> None:
    """The flag column comes from the command, so a setting without a flag shows up here."""
    from typer.testing import CliRunner

    from mlgrid.cli.main import app

    help_text = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    for spec in SETTINGS:
        assert spec.flag in help_text, f"mlgrid serve has no {spec.flag}"
