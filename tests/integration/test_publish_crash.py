"""SPEC §11.1: a 200 from publish means the events are durable, whatever happens next.

Several clients publish concurrently; as soon as enough publishes have been acknowledged the
server is killed with SIGKILL while more requests are still in flight. After a restart on the
same data directory and database, every acknowledged event must be there, exactly once and
unchanged. Requests that were in flight at the kill may or may not have landed; they are not
acknowledged, so either is correct.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.publishing import create_topic, eg_event, list_events, topic_keys
from tests.support.server import ServerProcess
from tests.support.services import fresh_pg_database

CLIENTS = 8
BATCHES_PER_CLIENT = 40  # bound: the kill normally comes long before
BATCH_SIZE = 25
KILL_AFTER_ACKS = 24


@pytest.fixture(params=["sqlite", "postgresql"])
def crash_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own: it gets killed, so it cannot be the shared module server."""
    if request.param == "sqlite":
        server = ServerProcess(data_dir=tmp_path / "data")
        try:
            yield server.start()
        finally:
            server.stop()
        return
    with fresh_pg_database("mlgrid_crash") as url:
        server = ServerProcess(data_dir=tmp_path / "data", database_url=url)
        try:
            yield server.start()
        finally:
            server.stop()


class Publisher:
    """Concurrent publishing that records which events were acknowledged with a 200."""

    def __init__(self, endpoint: str, key: str) -> None:
        self.endpoint = endpoint
        self.key = key
        self.acknowledged: dict[str, dict[str, Any]] = {}
        self.acks = 0
        self.enough = threading.Event()
        self._lock = threading.Lock()

    def client_loop(self, client_index: int) -> None:
        with httpx.Client(headers={"aeg-sas-key": self.key}, timeout=30) as client:
            for batch_index in range(BATCHES_PER_CLIENT):
                events = [
                    eg_event(
                        f"c{client_index}-b{batch_index}-e{i}-{uuid.uuid4().hex[:6]}",
                        data={"client": client_index, "batch": batch_index, "i": i, "pad": "x" * 200},
                    )
                    for i in range(BATCH_SIZE)
                ]
                try:
                    response = client.post(self.endpoint, json=events)
                except httpx.HTTPError:
                    return  # the server is gone: this batch was never acknowledged
                if response.status_code != 200:
                    return
                with self._lock:
                    self.acknowledged.update((e["id"], e) for e in events)
                    self.acks += 1
                    if self.acks >= KILL_AFTER_ACKS:
                        self.enough.set()


def test_acknowledged_events_survive_sigkill(crash_server: ServerProcess) -> None:
    with crash_server.client() as admin:
        topic = create_topic(admin)
        key1, _ = topic_keys(admin, topic["name"])

    publisher = Publisher(topic["properties"]["endpoint"], key1)
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(publisher.client_loop, i) for i in range(CLIENTS)]
        assert publisher.enough.wait(120), "publishing never reached the kill point"
        crash_server.kill()  # SIGKILL, with publishes still in flight
        for future in futures:
            future.result(60)

    with publisher._lock:
        acknowledged = dict(publisher.acknowledged)
    assert len(acknowledged) >= KILL_AFTER_ACKS * BATCH_SIZE

    crash_server.start()
    with crash_server.client() as admin:
        stored = list_events(admin, topic["name"], top=1000)
    by_id = {e["id"]: e for e in stored}
    assert len(by_id) == len(stored), "an event was stored twice"
    missing = set(acknowledged) - set(by_id)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
    for event_id, sent in acknowledged.items():
        assert by_id[event_id] == {**sent, "topic": topic["id"], "metadataVersion": "1"}

    # The restarted server works normally: publishing continues on the same topic.
    extra = eg_event()
    response = httpx.post(topic["properties"]["endpoint"], json=[extra], headers={"aeg-sas-key": key1})
    assert response.status_code == 200, response.text
