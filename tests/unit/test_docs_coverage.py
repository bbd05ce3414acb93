"""The docs keep up with the code (STYLE habit 7): every API route appears in some page of
``docs/``, the five ML event types are named where users look for them, and the README's
documentation table points at pages that exist (and lists every page).

Settings are covered by ``test_docs_settings.py``; the CLI reference by ``cli/test_cli_docs.py``.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from mlgrid.config import Settings
from mlgrid.server import create_app

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"

ML_EVENT_TYPES = (
    "Microsoft.MachineLearningServices.RunCompleted",
    "Microsoft.MachineLearningServices.RunStatusChanged",
    "Microsoft.MachineLearningServices.ModelRegistered",
    "Microsoft.MachineLearningServices.ModelDeployed",
    "Microsoft.MachineLearningServices.DatasetDriftDetected",
)
# A character that may continue a path: a route is only "mentioned" when the text does not go
# on into a longer path (``/topics/{t}`` is not a mention of ``/topics``).
_PATH_CHAR = re.compile(r"[A-Za-z0-9_{}/:\-]")


def _normalise(text: str) -> str:
    """Parameter names do not matter: ``{t}``, ``{topic}`` and ``{topic:path}`` are all ``{}``."""
    return re.sub(r"\{[^}/]*\}", "{}", text)


@cache
def _openapi() -> dict[str, Any]:
    spec: dict[str, Any] = create_app(Settings()).openapi()
    return spec


@cache
def _docs_text() -> dict[str, str]:
    return {page.name: _normalise(page.read_text(encoding="utf-8")) for page in sorted(DOCS.glob("*.md"))}


def _mentions(text: str, path: str) -> bool:
    start = text.find(path)
    while start != -1:
        end = start + len(path)
        if end == len(text) or not _PATH_CHAR.match(text[end]):
            return True
        start = text.find(path, start + 1)
    return False


def _api_paths() -> list[str]:
    return sorted(_openapi()["paths"])


@pytest.mark.parametrize("path", _api_paths())
def test_every_route_is_documented(path: str) -> None:
    wanted = _normalise(path)
    pages = [name for name, text in _docs_text().items() if _mentions(text, wanted)]
    assert pages, f"route {path} is not mentioned in any docs/*.md page (add it to the page of its area)"


def test_mentions_respect_path_boundaries() -> None:
    assert _mentions("see `GET /topics/{}` here", "/topics/{}")
    assert _mentions("GET /topics", "/topics")
    assert not _mentions("GET /topics/{}/events", "/topics/{}")
    assert not _mentions("POST /topics/{}:publish", "/topics/{}")
    assert _normalise("/runs/{runId}/artifacts/{path:path}") == "/runs/{}/artifacts/{}"


@pytest.mark.parametrize("event_type", ML_EVENT_TYPES)
def test_every_ml_event_type_is_in_the_workspace_page_and_the_readme(event_type: str) -> None:
    """docs/workspace.md has the exact eventType (consumers compare it); the README's summary
    may name the event by its short name."""
    assert event_type in (DOCS / "workspace.md").read_text(encoding="utf-8"), (
        f"{event_type} is missing from docs/workspace.md"
    )
    short = event_type.rsplit(".", 1)[1]
    readme = README.read_text(encoding="utf-8")
    assert event_type in readme or f"`{short}`" in readme, f"{short} is missing from README.md"


def _readme_table_links() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Documentation", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\|\s*\[[^\]]+\]\(([^)]+)\)", section, flags=re.MULTILINE)


def test_readme_documentation_table_points_at_pages_that_exist() -> None:
    links = _readme_table_links()
    assert links, "README.md has no documentation table"
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert not missing, f"README.md links to pages that do not exist: {missing}"


def test_every_docs_page_is_in_the_readme_table() -> None:
    listed = {Path(link).name for link in _readme_table_links()}
    unlisted = [page.name for page in sorted(DOCS.glob("*.md")) if page.name not in listed]
    assert not unlisted, f"docs pages missing from README.md's documentation table: {unlisted}"
