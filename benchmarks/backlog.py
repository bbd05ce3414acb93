"""Memory and start-up time with a backlog of pending deliveries (SQLite).

A server is started once to create a topic and a webhook subscription whose endpoint is dead
(a closed loopback port, validation off), and publishes one event. It is stopped, and
``N`` pending deliveries of that event to that subscription are written straight into the
database (publishing a million events would take longer than the measurement). Then the
server is started again and the script prints the time until ``/readyz`` answers 200 and the
server's resident memory (RSS) then and 10 s later, for each backlog size.

    .venv/bin/python benchmarks/backlog.py                      # 0, 100k, 1M
    .venv/bin/python benchmarks/backlog.py --sizes 0,100000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import free_port


def _start(data_dir: Path, port: int) -> tuple[subprocess.Popen[bytes], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLGRID_")}
    args = [sys.executable, "-m", "mlgrid.cli.main", "serve", "--port", str(port),
            "--data-dir", str(data_dir), "--log-level", "warning", "--no-ui", "--no-webhook-validation"]
    log = (data_dir / "server.log").open("ab")
    started = time.monotonic()
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = started + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {(data_dir / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process, time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError("server did not become ready")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _prepare(data_dir: Path) -> tuple[int, str]:
    port = free_port()
    process, _ = _start(data_dir, port)
    try:
        token = (data_dir / "admin.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as c:
            assert c.put("/topics/backlog", json={"properties": {}}).status_code == 201
            dead = f"http://127.0.0.1:{free_port()}/hook"
            destination = {"endpointType": "WebHook", "properties": {"endpointUrl": dead}}
            body = {"properties": {"destination": destination}}
            response = c.put("/topics/backlog/eventSubscriptions/dead", json=body)
            assert response.status_code == 201, response.text
            event = [{"id": "seed", "eventType": "T", "subject": "s", "eventTime": "2026-01-02T03:04:05Z",
                      "data": {}, "dataVersion": "1"}]
            assert c.post("/topics/backlog/api/events", json=event).status_code == 200
    finally:
        _stop(process)
    db = sqlite3.connect(data_dir / "mlgrid.db")
    seq, = db.execute("SELECT seq FROM events WHERE event_id = 'seed'").fetchone()
    sub, = db.execute("SELECT id FROM subscriptions WHERE name = 'dead'").fetchone()
    db.close()
    return seq, sub


def _fill(data_dir: Path, seq: int, sub: str, count: int) -> None:
    db = sqlite3.connect(data_dir / "mlgrid.db")
    now = time.time()
    due = now + 86_000  # waiting for a retry: the backlog of a dead endpoint
    rows = ((seq, sub, "pending", 3, due, now) for _ in range(count))
    with db:
        db.execute("DELETE FROM deliveries")
        db.executemany(
            "INSERT INTO deliveries (event_seq, subscription_id, state, attempts, next_attempt_at, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?)", rows)
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="0,100000,1000000")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    data_dir = Path(tempfile.mkdtemp(prefix="mlgrid-backlog-"))
    try:
        seq, sub = _prepare(data_dir)
        print(f"{'pending':>10} {'to /readyz':>11} {'RSS at ready':>13} {'RSS +10 s':>10}", flush=True)
        for size in sizes:
            _fill(data_dir, seq, sub, size)
            process, ready = _start(data_dir, free_port())
            try:
                at_ready = _rss_mb(process.pid)
                time.sleep(10)
                later = _rss_mb(process.pid)
            finally:
                _stop(process)
            print(f"{size:>10,} {ready:>9.2f} s {at_ready:>10.0f} MB {later:>7.0f} MB", flush=True)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
