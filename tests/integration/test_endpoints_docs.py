"""The example of ``docs/deployments.md`` runs against a live server and prints what the
document says it prints (the port aside)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.server import ServerProcess

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployments.md"
MARKER = "<!-- example: deploy-and-score -->"
PORT = re.compile(r"127\.0\.0\.1:\d+")


def _blocks_after_marker(text: str) -> tuple[str, str]:
    """The python block right after the marker, and the next text block (its output)."""
    after = text.split(MARKER, 1)[1]
    code = re.search(r"```python\n(.*?)```", after, re.DOTALL)
    assert code is not None, "no python block after the example marker"
    output = re.search(r"```text\n(.*?)```", after[code.end() :], re.DOTALL)
    assert output is not None, "no output block after the example"
    return code.group(1), output.group(1)


def test_the_deployment_example_runs(sqlite_server: ServerProcess, tmp_path: Path) -> None:
    code, expected = _blocks_after_marker(DOC.read_text(encoding="utf-8"))
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLGRID_")}
    env.update(MLGRID_URL=sqlite_server.url, MLGRID_TOKEN=sqlite_server.admin_token)
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert PORT.sub("127.0.0.1:PORT", result.stdout) == PORT.sub("127.0.0.1:PORT", expected)
