"""Every documented command runs as written: README.md and docs/*.md, page by page.

Each page gets a fresh server, a real local webhook receiver and a fresh reader's shell (see
``tests/support/docs_runner.py`` for exactly what the reader has). Every fenced ``bash``/``sh``
/``python`` block runs top to bottom; the test fails on an unmarked block that fails, naming
the page and line with the block's output. A block or page that cannot run here carries a
visible mark with its reason in the Markdown. Per page it prints blocks run, passed, and
skipped with reason (also written to ``test-artifacts/docs-run.txt``).

``tests/integration/test_docs_examples.py`` runs ``examples/publish_sdk.py``, which
docs/publishing.md shows in full; that block is marked here rather than run twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.docs_runner import (
    ROOT,
    BlockResult,
    PageReport,
    ReaderShell,
    blocks,
    lay_out_clone,
    page_skip_reason,
    pages,
)
from tests.support.receiver import Receiver
from tests.support.server import ServerProcess

REPORT = ROOT / "test-artifacts" / "docs-run.txt"


@pytest.fixture(scope="module")
def report_file() -> Iterator[list[str]]:
    lines: list[str] = []
    yield lines
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n")


def _run_page(page: Path, tmp_path: Path) -> PageReport:
    markdown = page.read_text(encoding="utf-8")
    report = PageReport(str(page.relative_to(ROOT)))
    skipped = page_skip_reason(markdown)
    runnable = [b for b in blocks(markdown) if b.runnable]
    if skipped or not runnable:
        report.page_skipped = skipped
        report.results = [BlockResult(b, None) for b in runnable]
        return report
    workdir = tmp_path / "clone"
    lay_out_clone(workdir)
    server = ServerProcess(workdir / ".mlgrid").start()
    try:
        with Receiver() as receiver:
            shell = ReaderShell(workdir, server.url, receiver.url)
            for block in runnable:
                if block.skip_reason is not None:
                    report.results.append(BlockResult(block, None))
                    continue
                passed, output = shell.run(block)
                report.results.append(BlockResult(block, passed, output))
    finally:
        server.stop()
    return report


@pytest.mark.slow
@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_page_runs_as_written(page: Path, tmp_path: Path, report_file: list[str],
                              capsys: pytest.CaptureFixture[str]) -> None:
    report = _run_page(page, tmp_path)
    report_file.append(report.summary())
    with capsys.disabled():
        print("\n" + report.summary())
    failures = [r for r in report.results if r.passed is False]
    assert not failures, "\n\n".join(
        f"{report.page} line {r.block.line} ({r.block.language}) failed:\n{r.block.text}\n{r.output}"
        for r in failures
    )
