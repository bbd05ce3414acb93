"""The Python SDK example of ``docs/publishing.md`` is ``examples/publish_sdk.py``, and it runs.

The example is run as a user would run it (a separate Python process with ``MLGRID_URL`` and
``MLGRID_TOKEN`` set) against a live server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "publish_sdk.py"
DOC = ROOT / "docs" / "publishing.md"


def test_the_documented_example_is_the_example_file() -> None:
    match = re.search(
        r"<!-- example: examples/publish_sdk.py -->\n```python\n(.*?)```", DOC.read_text(), re.S
    )
    assert match is not None, "docs/publishing.md lost its example block"
    assert match.group(1) == EXAMPLE.read_text(), "docs/publishing.md and examples/publish_sdk.py differ"


def test_publish_sdk_example_runs(sqlite_server: ServerProcess) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLGRID_")}
    env.update(MLGRID_URL=sqlite_server.url, MLGRID_TOKEN=sqlite_server.admin_token)
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    orders = [line[1:] for line in lines if line[0].startswith("orders-")]
    audit = [line[1:] for line in lines if line[0].startswith("audit-")]
    assert orders == [
        ["Shop.OrderPlaced", "orders/1"],
        ["Shop.OrderPlaced", "orders/2"],
        ["Shop.OrderShipped", "orders/1"],
    ]
    assert audit == [["Shop.PaymentCaptured", "/shop/checkout"]]
