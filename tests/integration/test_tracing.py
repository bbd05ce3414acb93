"""Traces (OpenTelemetry): a publish continues the publisher's trace (the request's
``traceparent``, or the CloudEvent's distributed-tracing attribute), routing is its child, each
delivery attempt continues the event's trace and hands its own context to the endpoint in the
``traceparent`` header, and a workspace change has its span. Checked with the SDK's in-memory
exporter on a server running in this process, and the OTLP export against a real loopback
HTTP receiver standing in for a collector."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
import uvicorn
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.support.delivery import new_name, wait_until
from tests.support.receiver import Receiver
from tests.support.server import ServerProcess, free_port

from mlgrid.config import Settings
from mlgrid.server import create_app
from mlgrid.tracing import Tracing

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PUBLISHER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PUBLISHER_SPAN}-01"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("traced")


@pytest.fixture(scope="module")
def traced(data_dir: Path, exporter: InMemorySpanExporter) -> Iterator[httpx.Client]:
    """A server in this process (uvicorn in a thread) whose spans go to ``exporter``."""
    port = free_port()
    settings = Settings.from_sources({"data_dir": str(data_dir), "port": port, "retry_schedule": "0.2"})
    app = create_app(settings, tracing=Tracing.with_exporter(exporter))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="traced-server", daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=60, what="the in-process server to start")
    token = (data_dir / "admin.token").read_text().strip()
    try:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def _spans(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]


def _stored_traceparent(data_dir: Path, event_id: str) -> str | None:
    """``events.traceparent`` of one event, read from the server's SQLite file."""
    with closing(sqlite3.connect(f"file:{data_dir / 'mlgrid.db'}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT traceparent FROM events WHERE event_id = ?", (event_id,)).fetchall()
    [(traceparent,)] = rows
    return str(traceparent) if traceparent is not None else None


def _hex(value: int, digits: int) -> str:
    return f"{value:0{digits}x}"


def test_publish_route_and_delivery_are_one_trace(
    traced: httpx.Client, exporter: InMemorySpanExporter, data_dir: Path
) -> None:
    topic = new_name("traced")
    created = traced.put(f"/topics/{topic}", json={"properties": {"inputSchema": "CloudEventSchemaV1_0"}})
    assert created.status_code == 201
    with Receiver() as receiver:
        sub = new_name("sub")
        body = {"properties": {"destination": {"endpointType": "WebHook",
                                               "properties": {"endpointUrl": receiver.endpoint("/traced")}},
                               "eventDeliverySchema": "CloudEventSchemaV1_0"}}
        assert traced.put(f"/topics/{topic}/eventSubscriptions/{sub}", json=body).status_code == 201
        event = {"specversion": "1.0", "id": new_name("ev"), "source": "/training/run-7",
                 "type": "Training.Done", "data": {"accuracy": 0.93}, "traceparent": TRACEPARENT}
        batch = {"Content-Type": "application/cloudevents-batch+json; charset=utf-8"}
        published = traced.post(f"/topics/{topic}/api/events", json=[event], headers=batch)
        assert published.status_code == 200, published.text
        [request] = wait_until(lambda: receiver.notifications("/traced") or None, what="the delivery")

    # The endpoint gets the attempt's context: same trace, the attempt's span as parent.
    header = request.header("traceparent")
    assert header is not None and header.split("-")[1] == TRACE_ID
    assert request.json()["traceparent"] == TRACEPARENT  # the event itself is not rewritten
    assert _stored_traceparent(data_dir, event["id"]) is None  # the publish path writes no context

    [publish] = _spans(exporter, f"publish {topic}")
    [route] = _spans(exporter, f"route {topic}")
    delivers = wait_until(lambda: _spans(exporter, f"deliver {sub}") or None, what="the delivery span")
    assert _hex(publish.context.trace_id, 32) == TRACE_ID
    assert publish.parent is not None and _hex(publish.parent.span_id, 16) == PUBLISHER_SPAN
    assert route.parent is not None and route.parent.span_id == publish.context.span_id
    [deliver] = delivers
    assert _hex(deliver.context.trace_id, 32) == TRACE_ID
    assert deliver.parent is not None and _hex(deliver.parent.span_id, 16) == PUBLISHER_SPAN
    assert header.split("-")[2] == _hex(deliver.context.span_id, 16)
    assert deliver.attributes is not None and deliver.attributes["http.response.status_code"] == 200


def test_a_request_traceparent_is_continued(traced: httpx.Client, exporter: InMemorySpanExporter) -> None:
    topic = new_name("plain")
    assert traced.put(f"/topics/{topic}", json={}).status_code == 201
    event = {"id": "1", "subject": "a", "eventType": "T", "eventTime": "2030-01-01T00:00:00Z",
             "data": {}, "dataVersion": "1"}
    other_trace = "0af7651916cd43dd8448eb211c80319c"
    headers = {"traceparent": f"00-{other_trace}-b7ad6b7169203331-01"}
    assert traced.post(f"/topics/{topic}/api/events", json=[event], headers=headers).status_code == 200
    [publish] = _spans(exporter, f"publish {topic}")
    assert _hex(publish.context.trace_id, 32) == other_trace


def test_a_workspace_change_has_its_span(traced: httpx.Client, exporter: InMemorySpanExporter) -> None:
    workspace = new_name("ws")
    assert traced.put(f"/workspaces/{workspace}", json={}).status_code == 201
    run = traced.post(f"/workspaces/{workspace}/experiments/train/runs", json={})
    assert run.status_code == 201
    names = [s.name for s in exporter.get_finished_spans() if s.name.startswith("workspace ")]
    assert any("run" in name for name in names), names
    assert len(names) >= 2


def test_training_run_event_and_receiver_are_one_trace(
    traced: httpx.Client, exporter: InMemorySpanExporter, data_dir: Path
) -> None:
    """An ML event (Event Grid schema: no traceparent of its own) continues the trace of the
    workspace change that emitted it: its context is stored with the event."""
    workspace = new_name("wstrace")
    assert traced.put(f"/workspaces/{workspace}", json={}).status_code == 201
    with Receiver() as receiver:
        sub = new_name("mlsub")
        body = {"properties": {"destination": {"endpointType": "WebHook",
                                               "properties": {"endpointUrl": receiver.endpoint("/ml")}}}}
        created = traced.put(f"/workspaces/{workspace}/eventSubscriptions/{sub}", json=body)
        assert created.status_code == 201, created.text
        run = traced.post(f"/workspaces/{workspace}/experiments/train/runs", json={})
        assert run.status_code == 201, run.text
        run_id = run.json()["runId"]
        done = traced.patch(f"/workspaces/{workspace}/runs/{run_id}", json={"status": "Completed"})
        assert done.status_code == 200, done.text
        [request] = wait_until(lambda: receiver.notifications("/ml") or None, what="RunCompleted")

    [event] = request.json()
    assert event["eventType"] == "Microsoft.MachineLearningServices.RunCompleted"
    assert "traceparent" not in event  # the event itself is not rewritten
    [deliver] = wait_until(lambda: _spans(exporter, f"deliver {sub}") or None, what="the delivery span")
    assert deliver.parent is not None
    # The delivery's parent is the workspace change that completed the run, in the same trace.
    [change] = [s for s in _spans(exporter, "workspace ") if s.context.span_id == deliver.parent.span_id]
    trace_id = _hex(change.context.trace_id, 32)
    assert _hex(deliver.context.trace_id, 32) == trace_id
    header = request.header("traceparent")
    assert header is not None
    assert header.split("-")[1] == trace_id and header.split("-")[2] == _hex(deliver.context.span_id, 16)
    # The run's creation emitted nothing here, so only its completion's change is the parent.
    assert change.attributes is not None and "run" in str(change.attributes["mlgrid.operation"])
    # The context is stored with the event (read back by other nodes, restarts, redeliveries).
    stored = _stored_traceparent(data_dir, event["id"])
    assert stored is not None and stored.split("-")[1:3] == [trace_id, _hex(change.context.span_id, 16)]


def test_a_pull_receive_is_linked_to_each_received_events_trace(
    traced: httpx.Client, exporter: InMemorySpanExporter
) -> None:
    """A receive hands out several events, each of its own trace: its span links them all (a
    CloudEvent's own ``traceparent``; an ML event's stored context) instead of joining one."""
    workspace = new_name("wspull")
    assert traced.put(f"/workspaces/{workspace}", json={}).status_code == 201
    sub = new_name("pullsub")
    body = {"properties": {"destination": {"endpointType": "Queue", "properties": {}},
                           "eventDeliverySchema": "CloudEventSchemaV1_0"}}
    created = traced.put(f"/workspaces/{workspace}/eventSubscriptions/{sub}", json=body)
    assert created.status_code == 201, created.text
    for _ in range(2):
        run = traced.post(f"/workspaces/{workspace}/experiments/train/runs", json={})
        assert run.status_code == 201, run.text
        run_id = run.json()["runId"]
        done = traced.patch(f"/workspaces/{workspace}/runs/{run_id}", json={"status": "Completed"})
        assert done.status_code == 200, done.text
    received = traced.post(f"/workspaces/{workspace}/eventSubscriptions/{sub}:receive",
                           params={"maxEvents": 10, "maxWaitTime": 5})
    assert received.status_code == 200, received.text
    values = received.json()["value"]
    assert len(values) == 2, values
    [receive] = _spans(exporter, f"receive {sub}")
    assert receive.attributes is not None and receive.attributes["messaging.batch.message_count"] == 2
    changes = {s.context.span_id for s in _spans(exporter, "workspace ")}
    linked = [link.context for link in receive.links]
    assert len(linked) == 2 and all(c.span_id in changes for c in linked)
    assert len({c.trace_id for c in linked}) == 2  # two runs completed in two requests: two traces
    assert receive.context.trace_id not in {c.trace_id for c in linked}


def test_a_disabled_tracer_stores_no_context() -> None:
    tracing = Tracing.disabled()
    with tracing.span("workspace run.update"):
        assert tracing.current_traceparent() is None
    assert tracing.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") is None


def test_without_an_endpoint_nothing_is_traced() -> None:
    tracing = Tracing.from_endpoint("")
    assert not tracing.enabled
    with tracing.span("x") as span:
        assert tracing.inject(span) == {}


def test_spans_are_exported_over_otlp_when_configured(tmp_path: Path) -> None:
    with Receiver() as collector:
        server = ServerProcess(tmp_path / "otlp", extra_args=["--otlp-endpoint", collector.url])
        server.start(timeout=120)  # a loaded machine can take a while
        try:
            with server.client() as client:
                assert client.put(f"/topics/{new_name('t')}", json={}).status_code == 201
                assert client.put(f"/workspaces/{new_name('ws')}", json={}).status_code == 201
        finally:
            server.stop()  # a clean stop flushes the batch of spans
        deadline = time.monotonic() + 15
        while not collector.requests("/v1/traces") and time.monotonic() < deadline:
            time.sleep(0.1)
        [export, *_] = collector.requests("/v1/traces")
        assert export.method == "POST" and export.header("content-type") == "application/x-protobuf"
        assert b"mlgrid" in export.body  # the service.name resource attribute
