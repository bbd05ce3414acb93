"""What random event ids cost SQLite's idempotency index, and what the options to reduce it buy.

Inserts batches of 100 events, one transaction each (the group commit's shape), through the
real ``store.events.insert_new_sqlite`` into a file created from ``store.tables`` with the
server's pragmas, once with monotonic ids (``<prefix>-<n>``, appended at the right edge of the
unique ``(topic_key, event_id)`` index) and once with random UUID4s, as the Azure SDK sends
(each lands on a different leaf page). The ids are made before the clock starts; the figure is
rows per CPU-second of this process, and random ÷ monotonic is the ratio that counts.

Options measured beside the schema as it is:

* ``cache``: ``PRAGMA cache_size`` of 64 MiB instead of SQLite's 2 MiB default;
* ``checkpoint``: ``PRAGMA wal_autocheckpoint=4000`` (16 MiB of WAL between checkpoints, so a
  page dirtied by several commits is copied back once);
* ``hash``: a compact key: a signed 64-bit BLAKE2b of ``topic_key + event_id`` in its own
  column with a plain index, duplicates found by one ``SELECT ... WHERE id_hash IN (...)`` and
  checked against the full id, instead of the unique index over both strings (a schema change;
  measured here on a table of its own, with the same columns otherwise).

    .venv/bin/python benchmarks/store_ids.py              # 60,000 rows per run
    .venv/bin/python benchmarks/store_ids.py --full       # 300,000 rows per run
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from _common import report
from sqlalchemy import create_engine

from mlgrid.store.events import NewEvent, insert_new_sqlite
from mlgrid.store.sqlite_driver import PRAGMAS
from mlgrid.store.tables import metadata

BATCH = 100
BODY = ('{"id":"x","subject":"bench/items/1","eventType":"Bench.ItemCreated","eventTime":'
        '"2024-05-01T12:00:00Z","dataVersion":"1.0","data":{"n":1,"score":0.25,"tag":"abc"}}')
TOPIC = "bench-1234abcd"
OPTIONS: dict[str, tuple[str, ...]] = {
    "as is": (),
    "cache": ("PRAGMA cache_size=-65536",),
    "checkpoint": ("PRAGMA wal_autocheckpoint=4000",),
    "hash": (),
}
HASHED = """CREATE TABLE hashed_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic_key VARCHAR(64) NOT NULL,
 event_id VARCHAR(256) NOT NULL, event_type VARCHAR(256) NOT NULL, subject TEXT NOT NULL,
 published_at FLOAT NOT NULL, body TEXT NOT NULL, id_hash BIGINT NOT NULL);
CREATE INDEX ix_hashed_events_topic_published ON hashed_events (topic_key, published_at);
CREATE INDEX ix_hashed_events_id_hash ON hashed_events (id_hash);"""


def id_hash(topic_key: str, event_id: str) -> int:
    digest = hashlib.blake2b(f"{topic_key}\0{event_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def database(directory: Path, option: str) -> sqlite3.Connection:
    path = directory / f"{option.replace(' ', '-')}-{uuid.uuid4().hex[:6]}.sqlite"
    engine = create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    engine.dispose()
    raw = sqlite3.connect(path, isolation_level=None)
    for pragma in (*PRAGMAS, *OPTIONS[option]):
        raw.execute(pragma)
    if option == "hash":
        raw.executescript(HASHED)
    return raw


def insert_hashed(raw: sqlite3.Connection, batch: list[NewEvent], stamp: float) -> int:
    """The compact-key variant of ``insert_new_sqlite``: look the hashes up, insert the rest."""
    hashes = [id_hash(e.topic_key, e.event_id) for e in batch]
    marks = ",".join("?" * len(hashes))
    held = {
        (topic_key, event_id)
        for topic_key, event_id in raw.execute(
            f"SELECT topic_key, event_id FROM hashed_events WHERE id_hash IN ({marks})", hashes
        )
    }
    rows: list[object] = []
    for e, h in zip(batch, hashes, strict=True):
        if (e.topic_key, e.event_id) not in held:
            held.add((e.topic_key, e.event_id))
            rows += (e.topic_key, e.event_id, e.event_type, e.subject, stamp, e.body, h)
    count = len(rows) // 7
    values = ",".join(["(?,?,?,?,?,?,?)"] * count)
    raw.execute("INSERT INTO hashed_events (topic_key, event_id, event_type, subject, published_at, body, "
                f"id_hash) VALUES {values}", rows)
    return count


def monotonic_ids() -> Callable[[], str]:
    prefix, counter = uuid.uuid4().hex[:8], itertools.count()
    return lambda: f"{prefix}-{next(counter):012d}"


def run(directory: Path, option: str, ids: Callable[[], str], rows: int) -> float:
    """Rows per CPU-second for ``rows`` events in batches of ``BATCH``, one transaction each."""
    raw = database(directory, option)
    batches = [[NewEvent(TOPIC, ids(), "Bench.ItemCreated", "bench/items/1", BODY) for _ in range(BATCH)]
               for _ in range(rows // BATCH)]
    stamp = time.time()
    started = time.process_time()
    for batch in batches:
        raw.execute("BEGIN IMMEDIATE")
        if option == "hash":
            stored = insert_hashed(raw, batch, stamp)
        else:
            stored = len(insert_new_sqlite(raw, batch, stamp))
        raw.execute("COMMIT")
        if stored != len(batch):
            raise RuntimeError(f"{option}: {stored} of {len(batch)} rows stored")
    seconds = time.process_time() - started
    raw.close()
    return rows / seconds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="300,000 rows per run instead of 60,000")
    parser.add_argument("--report", default=None, help="append figures as JSON lines to this file")
    args = parser.parse_args()
    rows = 300_000 if args.full else 60_000
    print(f"SQLite inserts, batches of {BATCH} per transaction, {rows:,} rows per run; rows per CPU-second")
    print(f"{'option':<12} {'monotonic':>10} {'random':>10} {'random/monotonic':>17}")
    with tempfile.TemporaryDirectory(prefix="mlgrid-bench-ids-") as tmp:
        for option in OPTIONS:
            monotonic = run(Path(tmp), option, monotonic_ids(), rows)
            random_ids = run(Path(tmp), option, lambda: str(uuid.uuid4()), rows)
            print(f"{option:<12} {monotonic:>10,.0f} {random_ids:>10,.0f} {random_ids / monotonic:>17.2f}",
                  flush=True)
            if option == "as is":
                report(args.report, f"SQLite insert of {rows:,} rows, random vs monotonic ids: rows/CPU-s",
                       random_ids, monotonic, "monotonic ids")
            for path in Path(tmp).iterdir():
                os.remove(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
