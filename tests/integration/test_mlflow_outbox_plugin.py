"""The MLflow outbox plugin on a real ``mlflow server``: MLflow unchanged, every change recorded.

Three real servers: plain MLflow on SQLite (the reference), the plugin by scheme
(``mlgrid+sqlite://``) and the plugin by the environment switch on PostgreSQL
(``MLGRID_OUTBOX=1`` with a plain ``postgresql://`` URI). The same lifecycle runs against each
with the real MLflow client; what the client reads back must be the same everywhere, and the
plugin's outbox must hold exactly the changes, in order per object — including the ones MLflow's
REST API hides (a run failed without an end time, an alias moved twice within 100 ms).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.support.mlflow_server import MlflowServer, need_mlflow
from tests.support.services import create_pg_database, drop_pg_database, need_postgres, pg_url

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plain_sqlite(mlflow_sqlite: MlflowServer) -> MlflowServer:
    """Plain MLflow (the session's shared server): the reference the plugin must match."""
    return mlflow_sqlite


@pytest.fixture(scope="module")
def plugin_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MlflowServer, str]]:
    need_mlflow()
    work = tmp_path_factory.mktemp("mlflow-plugin")
    server = MlflowServer(f"mlgrid+sqlite:///{work / 'mlflow.db'}", work).start()
    yield server, f"sqlite:///{work / 'mlflow.db'}"
    server.stop()


@pytest.fixture(scope="module")
def plugin_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MlflowServer, str]]:
    need_mlflow()
    need_postgres()
    name = create_pg_database()
    url = pg_url(name)
    work = tmp_path_factory.mktemp("mlflow-plugin-pg")
    server = MlflowServer(url, work, env={"MLGRID_OUTBOX": "1"})
    try:
        server.start()
        yield server, url
    finally:
        server.stop()
        drop_pg_database(name)


def lifecycle(tracking_uri: str) -> dict[str, Any]:
    """Drive runs and the registry with the real client; return what the client reads back."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment_id = client.create_experiment(f"outbox-{uuid.uuid4().hex[:8]}")
    failed = client.create_run(experiment_id).info.run_id
    client.update_run(failed, status="FAILED")  # no end time: polling cannot see when it ended
    finished = client.create_run(experiment_id).info.run_id
    client.set_terminated(finished)
    client.set_terminated(finished, end_time=1_000)  # second terminate, backdated end time
    killed = client.create_run(experiment_id).info.run_id
    client.set_terminated(killed, status="KILLED")
    model = f"outbox-model-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(model)
    for _ in range(3):
        client.create_model_version(model, f"runs:/{finished}/model", run_id=finished)
    started = time.monotonic()
    for version in ("1", "2", "3"):
        client.set_registered_model_alias(model, "champion", version)
    alias_moves_seconds = time.monotonic() - started
    client.set_registered_model_alias(model, "staging", "2")
    client.delete_registered_model_alias(model, "staging")

    def run_view(run_id: str) -> dict[str, Any]:
        info = client.get_run(run_id).info
        return {"status": info.status, "has_end_time": info.end_time is not None}

    registered = client.get_registered_model(model)
    return {
        "runs": {"failed": run_view(failed), "finished": run_view(finished), "killed": run_view(killed)},
        "finished_end_time_backdated": client.get_run(finished).info.end_time == 1_000,
        "versions": sorted(v.version for v in client.search_model_versions(f"name='{model}'")),
        "aliases": dict(registered.aliases),
        "ids": {"failed": failed, "finished": finished, "killed": killed, "model": model},
        "alias_moves_seconds": alias_moves_seconds,
    }


def outbox_rows(database_url: str) -> list[dict[str, Any]]:
    url = database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = "SELECT id, kind, object_key, payload FROM mlgrid_outbox ORDER BY id"
            rows = conn.execute(sa.text(query))
            return [{"kind": r.kind, "object_key": r.object_key, **json.loads(r.payload)} for r in rows]
    finally:
        engine.dispose()


def expected_changes(ids: dict[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    """Per object, in order: what the outbox must say (and nothing else)."""
    model = ids["model"]
    return {
        f"run:{ids['failed']}": [
            ("run_created", "RUNNING"), ("run_status", "RUNNING", "FAILED", False)
        ],
        f"run:{ids['finished']}": [
            ("run_created", "RUNNING"), ("run_status", "RUNNING", "FINISHED", True)
        ],
        f"run:{ids['killed']}": [("run_created", "RUNNING"), ("run_status", "RUNNING", "KILLED", True)],
        **{
            f"model_version:{model}/{v}": [("model_version_created", v, ids["finished"])]
            for v in ("1", "2", "3")
        },
        f"alias:{model}@champion": [
            ("alias_set", None, "1"), ("alias_set", "1", "2"), ("alias_set", "2", "3")
        ],
        f"alias:{model}@staging": [("alias_set", None, "2"), ("alias_deleted", "2")],
    }


def summarize(row: dict[str, Any]) -> tuple[Any, ...]:
    kind = row["kind"]
    if kind == "run_created":
        return (kind, row["status"])
    if kind == "run_status":
        return (kind, row["old_status"], row["status"], row["end_time"] is not None)
    if kind == "model_version_created":
        return (kind, row["version"], row["run_id"])
    if kind == "alias_set":
        return (kind, row["previous_version"], row["version"])
    return (kind, row["version"])


def check_outbox(database_url: str, result: dict[str, Any]) -> None:
    expected = expected_changes(result["ids"])
    seen: dict[str, list[tuple[Any, ...]]] = {}
    for row in outbox_rows(database_url):
        if row["object_key"] in expected:
            seen.setdefault(row["object_key"], []).append(summarize(row))
    assert seen == expected


def normalized(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in {"ids", "alias_moves_seconds"}}


def test_mlflow_reads_back_the_same_with_the_plugin_by_scheme(
    plain_sqlite: MlflowServer, plugin_sqlite: tuple[MlflowServer, str]
) -> None:
    server, database_url = plugin_sqlite
    reference = lifecycle(plain_sqlite.url)
    captured = lifecycle(server.url)
    assert normalized(captured) == normalized(reference)
    assert captured["aliases"] == {"champion": "3"}
    print(f"alias moved v1→v2→v3 in {captured['alias_moves_seconds'] * 1000:.0f} ms")
    check_outbox(database_url, captured)


def test_postgresql_backend_with_the_environment_switch(
    plain_sqlite: MlflowServer, plugin_postgres: tuple[MlflowServer, str]
) -> None:
    server, database_url = plugin_postgres
    reference = lifecycle(plain_sqlite.url)
    captured = lifecycle(server.url)
    assert normalized(captured) == normalized(reference)
    check_outbox(database_url, captured)
    # The switch keeps the built-in scheme, so MLflow's job runner stays on (a custom
    # scheme turns it off: MLflow's own check wants a plain database URI).
    assert "requirements not met" not in server.log_path.read_text(errors="replace")


def test_scheme_without_the_switch_turns_the_job_runner_off_as_documented(
    plugin_sqlite: tuple[MlflowServer, str],
) -> None:
    server, _ = plugin_sqlite
    assert "job execution requirements not met" in server.log_path.read_text(errors="replace")


def test_a_plain_server_in_the_same_environment_records_nothing(plain_sqlite: MlflowServer) -> None:
    lifecycle(plain_sqlite.url)
    database = plain_sqlite.backend_uri
    engine = sa.create_engine(database)
    try:
        assert not sa.inspect(engine).has_table("mlgrid_outbox")
    finally:
        engine.dispose()


def test_a_fault_in_the_listener_never_fails_mlflow_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection in the plugin's own code: MLflow's write commits, the row is skipped."""
    need_mlflow()
    from mlgrid_mlflow_outbox import capture, entry

    url = f"mlgrid+sqlite:///{tmp_path / 'mlflow.db'}"
    store = entry.tracking_store(url, str(tmp_path / "artifacts"))
    experiment_id = store.create_experiment("fault")

    def broken(target: Any) -> str | None:
        raise RuntimeError("injected fault in the outbox listener")

    monkeypatch.setattr(capture, "_workspace", broken)
    run = store.create_run(experiment_id, user_id="u", start_time=1, tags=[], run_name="r")
    assert store.get_run(run.info.run_id).info.status == "RUNNING"
    monkeypatch.undo()
    store.update_run_info(run.info.run_id, 3, 2, None)  # FINISHED
    rows = outbox_rows(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert [(r["kind"], r["object_key"]) for r in rows] == [("run_status", f"run:{run.info.run_id}")]
    store.engine.dispose()
