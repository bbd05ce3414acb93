"""Nodes woken by LISTEN/NOTIFY (PostgreSQL), measured on three real nodes.

* A subscription created on one node filters the events published on another one at once:
  the router of the publishing node learns of it by NOTIFY, not by its (slower) fallback poll.
  Each probe publishes on node B every few milliseconds after the PUT on node A returned; the
  first probe delivered to the new subscription bounds the propagation time. The figures
  (p50, p99 and max over the subscriptions) are printed; the test asserts only that every
  subscription got there well before the fallback poll could have done it.
* Idle cost: transactions per second per node on the cluster's database, from
  ``pg_stat_database`` (pg_stat_statements is not loaded on this server), printed.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest
from tests.support.cluster import ClusterDb, admin_token, running_nodes
from tests.support.delivery import event, make_topic, subscribe, webhook
from tests.support.receiver import Receiver
from tests.support.services import fresh_pg_database

SUBSCRIPTIONS = 20
#: Far below the fallback poll of the subscription list (30 s): only NOTIFY gets there so soon.
NOTIFIED_WITHIN = 5.0


def _transactions(db: ClusterDb, database: str) -> int:
    rows = db.rows("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", database)
    return int(rows[0][0])


@pytest.mark.timeout(600)
def test_subscriptions_reach_other_nodes_by_notify_and_idle_nodes_stay_quiet(tmp_path: Path) -> None:
    defaults = {"MLGRID_NODE_TIMEOUT": "8", "MLGRID_HEARTBEAT_INTERVAL": "2"}  # as shipped
    with fresh_pg_database("mlgrid_notify") as url, running_nodes(tmp_path, url, 3, extra=defaults) as nodes:
        db = ClusterDb(url)
        token = admin_token(nodes)
        a, b, _c = nodes
        delays: list[float] = []
        with Receiver() as receiver, a.client(token) as via_a, b.client(token) as via_b:
            topic, _ = make_topic(via_a)
            time.sleep(1.0)  # the topic itself is read by B on first use
            for index in range(SUBSCRIPTIONS):
                path = f"/probe{index}"
                subscribe(via_a, topic, webhook(receiver.endpoint(path)), name=f"probe{index}")
                created = time.monotonic()
                sent: dict[str, float] = {}
                deadline = created + NOTIFIED_WITHIN
                while time.monotonic() < deadline:
                    probe = f"p{index}-{len(sent)}"
                    sent[probe] = time.monotonic() - created
                    answer = via_b.post(f"/topics/{topic}/api/events", json=[event(probe)])
                    assert answer.status_code == 200, answer.text
                    if len(sent) % 10 == 0 and receiver.events(path):
                        break
                    time.sleep(0.002)
                got = wait_events(receiver, path)
                first = min(sent[e["id"]] for e in got if e["id"] in sent)
                delays.append(first)
            delays.sort()
            p99 = delays[min(len(delays) - 1, int(0.99 * len(delays)))]
            print(f"\nsubscription created on node A → filtering on node B: "
                  f"p50 {statistics.median(delays) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
                  f"max {delays[-1] * 1000:.0f} ms over {len(delays)} subscriptions")
            assert delays[-1] < NOTIFIED_WITHIN

        # Idle: nothing published, nothing due; the nodes only heartbeat.
        database = url.rsplit("/", 1)[1]
        time.sleep(3.0)
        before, started = _transactions(db, database), time.monotonic()
        time.sleep(15.0)
        after, elapsed = _transactions(db, database), time.monotonic() - started
        per_node = (after - before - 1) / elapsed / len(nodes)  # minus our own first read
        print(f"idle: {per_node:.2f} transactions/s per node over {elapsed:.0f} s ({len(nodes)} nodes)")
        assert per_node < 5  # a loose guard against a busy loop; the figure is the result


def wait_events(receiver: Receiver, path: str, timeout: float = 15.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = receiver.events(path)
        if found:
            time.sleep(0.5)  # the later probes arrive too
            return list(receiver.events(path))
        time.sleep(0.05)
    raise AssertionError(f"no probe reached {path}")

