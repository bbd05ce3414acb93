"""Bounded memory under any backlog (SQLite): pending deliveries live in the store and the
dispatcher holds a window of them (setting ``delivery_window``, 10,000 by default).

The backlog is generated directly in the store (bulk SQL: publishing a million events would
take far longer than the property it tests) for one subscription whose endpoint is dead (a
loopback port nothing listens on). A real server then starts on it; the test prints the time
to ``/readyz`` and the server's RSS, just ready and after its dispatcher has worked the
backlog for a while, and asserts the RSS stays within the documented bound: the server's RSS
with no backlog plus ``_BOUND_MB`` (docs/performance.md). Start-up does not read the backlog,
so the time to ``/readyz`` does not grow with it (printed, not asserted).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.delivery import make_topic, subscribe, webhook
from tests.support.server import ServerProcess, free_port

#: What a backlog of any size may add to the server's RSS over an idle server's (MB): the
#: window (10,000 deliveries, about 1 KB each with their cached events), the dispatcher's
#: ready queues and the circuit breaker's held ids. docs/performance.md gives the figures.
_BOUND_MB = 120
#: Distinct events the deliveries point at (a million events would only make the set-up slow).
_EVENTS = 10_000
#: How long the dispatcher works the backlog before the second RSS reading.
_WORK_SECONDS = 10.0


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _fill(db_path: Path, topic: str, pending: int) -> None:
    """``pending`` pending deliveries of the one subscription, due over the last hour."""
    now = time.time()
    with sqlite3.connect(db_path) as conn:
        [(subscription_id,)] = conn.execute("SELECT id FROM subscriptions").fetchall()
        conn.execute(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?) "
            "INSERT INTO events (topic_key, event_id, event_type, subject, published_at, body) "
            "SELECT ?, 'backlog-' || x, 'Test.Backlog', 'items/' || x, ?, "
            "json_object('id', 'backlog-' || x, 'eventType', 'Test.Backlog', 'subject', 'items/' || x, "
            "'eventTime', '2026-01-02T03:04:05Z', 'data', json_object('n', x), 'dataVersion', '1.0') FROM n",
            (_EVENTS, topic.lower(), now - 3600),
        )
        [(first_seq,)] = conn.execute("SELECT min(seq) FROM events WHERE event_type = 'Test.Backlog'")
        conn.execute(
            "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < ? - 1) "
            "INSERT INTO deliveries (event_seq, subscription_id, state, attempts, attempts_started, "
            "next_attempt_at, created_at) "
            "SELECT ? + x % ?, ?, 'pending', 0, 0, ? + x * (3600.0 / ?), ? FROM n",
            (pending, first_seq, _EVENTS, subscription_id, now - 3600, pending, now - 3600),
        )


@pytest.fixture
def dead_endpoint() -> Iterator[str]:
    yield f"http://127.0.0.1:{free_port()}/dead"  # nothing listens there


@pytest.mark.parametrize("pending", [0, 1_000_000])  # 100k and the rest: benchmarks/backlog.py
def test_rss_stays_bounded_and_start_up_does_not_read_the_backlog(
    pending: int, tmp_path: Path, dead_endpoint: str
) -> None:
    data = tmp_path / "data"
    args = ["--no-webhook-validation", "--retry-schedule", "30"]
    server = ServerProcess(data_dir=data, extra_args=args)
    server.start()
    try:
        with server.client() as client:
            topic, _ = make_topic(client)
            subscribe(client, topic, webhook(dead_endpoint))
        idle = _rss_mb(server.process.pid)  # type: ignore[union-attr]
    finally:
        server.stop()
    if pending:
        _fill(data / "mlgrid.db", topic, pending)

    started = time.monotonic()
    server.start(timeout=600)
    ready_seconds = time.monotonic() - started
    try:
        pid = server.process.pid  # type: ignore[union-attr]
        at_ready = _rss_mb(pid)
        time.sleep(_WORK_SECONDS)
        working = _rss_mb(pid)
        assert httpx.get(server.url + "/readyz", timeout=10).status_code == 200
        print(f"\npending={pending}: /readyz after {ready_seconds:.1f} s; RSS idle {idle:.0f} MB, "
              f"at ready {at_ready:.0f} MB, after {_WORK_SECONDS:.0f} s {working:.0f} MB")
        assert max(at_ready, working) < idle + _BOUND_MB, (idle, at_ready, working)
        with sqlite3.connect(data / "mlgrid.db") as conn:
            [(still,)] = conn.execute("SELECT count(*) FROM deliveries WHERE state = 'pending'").fetchall()
        assert still == pending  # a dead endpoint: nothing delivered, nothing lost
    finally:
        server.stop()
