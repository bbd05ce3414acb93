"""The examples of ``docs/delivery.md`` are the files in ``examples/``, and they run.

The signature-checking receiver runs as its own process; a signed subscription delivers to it
and it prints what it verified. A wrongly signed request is refused with 401. The pull example
runs as a user would run it, against a live server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.delivery import event, make_topic, publish, subscribe, wait_final, webhook
from tests.support.server import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "delivery.md"
RECEIVER = ROOT / "examples" / "webhook_receiver.py"
PULL = ROOT / "examples" / "pull_consumer.py"
SECRET = "whsec_c2VjcmV0LWtleS1mb3ItdGhlLWRvY3MtZXhhbXBsZQ=="


@pytest.mark.parametrize("example", [RECEIVER, PULL], ids=lambda p: p.name)
def test_the_documented_examples_are_the_example_files(example: Path) -> None:
    relative = example.relative_to(ROOT).as_posix()
    match = re.search(rf"<!-- example: {re.escape(relative)} -->\n```python\n(.*?)```", DOC.read_text(), re.S)
    assert match is not None, f"docs/delivery.md lost the {relative} block"
    assert match.group(1) == example.read_text(), f"docs/delivery.md and {relative} differ"


@pytest.fixture
def receiver_process() -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    env = {**os.environ, "WEBHOOK_SECRET": SECRET}
    process = subprocess.Popen([sys.executable, str(RECEIVER), str(port)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("listening on")
        yield process, port
    finally:
        process.terminate()
        process.wait(10)


def test_signature_checking_receiver_example_runs(
    sqlite_server: ServerProcess, receiver_process: tuple[subprocess.Popen[str], int]
) -> None:
    process, port = receiver_process
    try:
        with sqlite_server.client() as client:
            topic, _ = make_topic(client)
            sub = subscribe(client, topic, webhook(f"http://127.0.0.1:{port}/", signingSecret=SECRET))
            publish(client, topic, [event("docs-1"), event("docs-2")])
            rows = wait_final(client, topic, sub, 2, timeout=30)
        assert all(r["state"] == "delivered" for r in rows), rows
        forged = httpx.post(f"http://127.0.0.1:{port}/", content=b"[]", headers={
            "webhook-id": "x", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,AAAA"})
        assert forged.status_code == 401
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
        print(output)  # shown when the test fails
    verified = [line.split() for line in output.splitlines() if line.startswith("verified")]
    assert sorted(v[1] for v in verified) == ["docs-1", "docs-2"]
    assert all(v[2] == "Test.Delivery.Happened" and v[3] == "0" for v in verified)


def test_pull_example_runs(sqlite_server: ServerProcess) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLGRID_")}
    env.update(MLGRID_URL=sqlite_server.url, MLGRID_TOKEN=sqlite_server.admin_token)
    result = subprocess.run([sys.executable, str(PULL)], env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["sdk 0 deliveryCount 1", "sdk 1 deliveryCount 1"]
    assert "helper 2" in lines and "handled 2" in lines
    assert lines[-1] == "dead letters [(3, 'UndeliverableDueToClientError')]"
