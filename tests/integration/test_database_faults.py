"""Faults of the database are answered as faults: 503 with ``Retry-After`` in the error
envelope, ``/readyz`` 503 until the database takes writes again, one log line per outage, and
nothing acknowledged lost.

SQLite: the data directory lives on a small tmpfs that the test fills up (it needs root to
mount one; without it the test is skipped). PostgreSQL: a cluster of its own (``initdb`` and
``pg_ctl`` in a temporary directory, on a free port) is stopped under load and started again.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.delivery import make_topic, wait_until
from tests.support.server import ServerProcess, free_port


def _event(event_id: str, pad: int = 0) -> dict[str, object]:
    return {"id": event_id, "eventType": "Test.Fault", "subject": "s", "eventTime": "2026-01-02T03:04:05Z",
            "data": {"pad": "x" * pad}, "dataVersion": "1"}


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers.get("Retry-After", "").isdigit()
    error = response.json()["error"]
    assert error["code"] == "DatabaseUnavailable" and error["message"]


#: Loggers of the request path and of the broker's and delivery's background duties: none of
#: them may log a traceback for a database fault (the workspace's duties are not covered yet).
_COVERED = ("mlgrid.api", "mlgrid.ingest", "mlgrid.delivery", "mlgrid.subscriptions", "mlgrid.retention",
            "mlgrid.store")


def _tracebacks(log: str) -> list[str]:
    """Log records of the covered loggers followed by a traceback, and uncaught ASGI errors."""
    lines = log.splitlines()
    found = [line for line in lines if "Exception in ASGI application" in line]
    for line, following in itertools.pairwise(lines):
        if following.startswith("Traceback") and any(f" {name} " in line for name in _COVERED):
            found.append(line)
    return found


def _retained_ids(client: httpx.Client, topic: str) -> set[str]:
    found: set[str] = set()
    url: str | None = f"/topics/{topic}/events"
    params: dict[str, object] | None = {"top": 1000}
    while url:
        response = client.get(url, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        found.update(e["id"] for e in body["value"])
        url, params = body.get("nextLink"), None
    return found


# -- SQLite: a full file system ----------------------------------------------------------------


@pytest.fixture
def small_filesystem() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = Path(tempfile.mkdtemp(prefix="mlgrid-full-"))
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        mount.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


def _fill(directory: Path) -> Path:
    """Take every free byte of the file system, in one file that can be deleted again."""
    filler = directory / "filler"
    with filler.open("wb") as out, contextlib.suppress(OSError):
        chunk = b"\0" * (1 << 20)
        while True:
            out.write(chunk)
            out.flush()
    with contextlib.suppress(OSError), filler.open("ab") as out:
        while True:
            out.write(b"\0" * 4096)
            out.flush()
    return filler


def test_sqlite_on_a_full_disk_answers_503_and_recovers(small_filesystem: Path) -> None:
    server = ServerProcess(data_dir=small_filesystem / "data")
    server.start()
    try:
        with server.client() as client:
            topic, _ = make_topic(client)
            acknowledged: set[str] = set()
            for i in range(20):
                published = client.post(f"/topics/{topic}/api/events", json=[_event(f"before-{i}")])
                assert published.status_code == 200
                acknowledged.add(f"before-{i}")
            filler = _fill(small_filesystem)

            answers: list[int] = []
            for i in range(200):  # the WAL may still have room for a few: they are fine
                event_id = f"full-{i}"
                response = client.post(f"/topics/{topic}/api/events", json=[_event(event_id, pad=20_000)])
                answers.append(response.status_code)
                if response.status_code == 200:
                    acknowledged.add(event_id)
                else:
                    _assert_unavailable(response)
                if answers.count(503) >= 5:
                    break
            assert answers.count(503) >= 5 and set(answers) <= {200, 503}, answers
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["database"] == "out of space"

            filler.unlink()
            wait_until(lambda: client.get("/readyz").status_code == 200, timeout=15, what="readiness")
            assert client.post(f"/topics/{topic}/api/events", json=[_event("after")]).status_code == 200
            acknowledged.add("after")
            assert acknowledged <= _retained_ids(client, topic)
        log = server.log()
        assert log.count("database out of space") == 1, log[-3000:]
        assert _tracebacks(log) == [], log[-3000:]
    finally:
        server.stop()


# -- PostgreSQL: the server stopped under load ----------------------------------------------------


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.skip(f"no {name} under /usr/lib/postgresql")
    return found[-1]


class Cluster:
    """A throwaway PostgreSQL cluster (run as the ``postgres`` user when the test is root)."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="mlgrid-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    def run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self.run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                 str(self.directory / "log"), "-w", "start")

    def stop(self) -> None:
        self.run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def test_postgresql_stopped_under_load_answers_503_and_recovers(tmp_path: Path) -> None:
    cluster = Cluster()
    try:
        cluster.init()
        cluster.start()
        server = ServerProcess(data_dir=tmp_path / "data", database_url=cluster.url)
        server.start()
        try:
            with server.client() as client:
                topic, _ = make_topic(client)
            acknowledged: set[str] = set()
            statuses: list[int] = []
            dropped: list[str] = []
            stop = threading.Event()

            def load() -> None:
                with server.client() as publisher:
                    i = 0
                    while not stop.is_set():
                        event_id = f"load-{i}"
                        i += 1
                        try:
                            response = publisher.post(f"/topics/{topic}/api/events", json=[_event(event_id)])
                        except httpx.HTTPError as exc:
                            statuses.append(-1)  # a dropped connection: what must not happen
                            dropped.append(repr(exc))
                            continue
                        statuses.append(response.status_code)
                        if response.status_code == 200:
                            acknowledged.add(event_id)
                        else:
                            _assert_unavailable(response)
                            time.sleep(0.05)

            worker = threading.Thread(target=load)
            worker.start()
            try:
                wait_until(lambda: len(acknowledged) >= 50, timeout=20, what="publishing under load")
                cluster.stop()
                wait_until(lambda: statuses.count(503) >= 20, timeout=20, what="503s while stopped")
                with server.client() as client:
                    ready = client.get("/readyz")
                    assert ready.status_code == 503
                cluster.start()
                with server.client() as client:
                    wait_until(lambda: client.get("/readyz").status_code == 200, timeout=30, what="readiness")
                before = len(acknowledged)
                wait_until(lambda: len(acknowledged) >= before + 50, timeout=30, what="publishing again")
            finally:
                stop.set()
                worker.join(30)
            assert set(statuses) <= {200, 503}, (sorted(set(statuses)), dropped, server.log()[-5000:])
            with server.client() as client:
                assert acknowledged <= _retained_ids(client, topic)
            log = server.log()
            assert log.count("database unreachable") == 1, log[-3000:]
            assert _tracebacks(log) == [], log[-3000:]
        finally:
            server.stop()
    finally:
        cluster.remove()


#: Loggers of the workspace's and the connectors' background loops.
_LOOPS = ("mlgrid.workspace", "mlgrid.connectors", "mlgrid.drift", "mlgrid.jobs", "mlgrid.endpoints")


def test_background_loops_log_one_line_per_outage_and_recovered(tmp_path: Path) -> None:
    """A database stopped for about 15 s fails several passes of the node's background loops
    (the heartbeat every 2 s, the LISTEN connection's reconnects every second): each logs one
    warning with the reason, nothing more, then one ``recovered``/``restored`` line once the
    database is back; no loop logs a traceback. (On PostgreSQL the connector supervisor re-reads
    its list only every 30 s, woken by NOTIFY meanwhile, so it is not what this outage shows.)"""
    cluster = Cluster()
    try:
        cluster.init()
        cluster.start()
        server = ServerProcess(data_dir=tmp_path / "data", database_url=cluster.url)
        server.start()
        try:
            cluster.stop()
            stopped = time.monotonic()
            wait_until(lambda: "heartbeat failed" in server.log(), timeout=20,
                       what="the heartbeat noticing the outage")
            time.sleep(max(0.0, 16 - (time.monotonic() - stopped)))  # several more passes fail
            cluster.start()
            wait_until(lambda: "heartbeat recovered" in server.log(), timeout=30,
                       what="the heartbeat recovering")
            wait_until(lambda: "LISTEN connection restored" in server.log(), timeout=30,
                       what="the LISTEN connection coming back")
            log = server.log()
            lines = log.splitlines()
            for start, end in (("heartbeat failed", "heartbeat recovered"),
                               ("LISTEN connection failed", "LISTEN connection restored")):
                failed_lines = [line for line in lines if start in line]
                assert len(failed_lines) == 1, log[-3000:]
                back = [line for line in lines if end in line]
                assert len(back) == 1, log[-3000:]
                count = int(back[0].split(" after ")[-1].split()[0])
                assert count >= 2, back  # several passes failed, one line said so
            tracebacks = [line for line, following in itertools.pairwise(lines)
                          if following.startswith("Traceback") and any(f" {n}" in line for n in _LOOPS)]
            assert tracebacks == [], log[-3000:]
        finally:
            server.stop()
    finally:
        cluster.remove()
