"""Data-drift monitors and their runs (SPEC §9, §12 "drift monitor", "drift runs").

Thin: the rules live in ``workspace/drift_monitors.py``. Reading needs ``Reader`` on the
workspace; creating, changing, deleting a monitor and running a backfill (which records runs
and may publish events) need ``Contributor`` or ``Owner``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from mlgrid.api.deps import if_match, json_body, runtime
from mlgrid.api.docs import body_schema
from mlgrid.api.workspace_common import guard, iso, respond
from mlgrid.auth.roles import Action
from mlgrid.domain.records import DriftRunRow, MonitorRow
from mlgrid.errors import invalid
from mlgrid.events.timestamps import parse_timestamp
from mlgrid.workspace.drift_monitor_bodies import MonitorBody, RangeBody
from mlgrid.workspace.drift_monitors import DriftMonitorService

router = APIRouter(tags=["data drift"])

RESOURCE_TYPE = "Microsoft.MachineLearningServices/workspaces/datadrifts"
RUNS_PAGE_SIZE = 1000

MONITOR_BODY = body_schema(MonitorBody)
RUNS_BODY = body_schema(RangeBody)


def _service(request: Request) -> DriftMonitorService:
    service: DriftMonitorService = runtime(request).drift.monitors
    return service


def _hours(value: float) -> float | int:
    return int(value) if value.is_integer() else value


def window_time(moment: datetime) -> str:
    """ISO 8601 with an explicit offset, as DatasetDriftDetected writes StartTime/EndTime."""
    return moment.isoformat()


def monitor_json(row: MonitorRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "type": RESOURCE_TYPE,
        "etag": row.etag,
        "properties": {
            "baselineDatasetId": row.baseline_dataset_id,
            "targetDatasetId": row.target_dataset_id,
            "features": row.features,
            "frequency": row.frequency,
            "latency": _hours(row.latency_hours),
            "threshold": row.threshold,
            "falseAlarmRate": row.false_alarm_rate,
            "scheduleEnabled": row.schedule_enabled,
            "scheduledUntil": None if row.schedule_since is None else window_time(row.schedule_since),
            "createdTime": iso(row.created_at),
            "updatedTime": iso(row.updated_at),
        },
    }


def run_json(run: DriftRunRow) -> dict[str, Any]:
    return {
        "runId": run.id,
        "dataDriftId": run.monitor_id,
        "startTime": window_time(run.window_start),
        "endTime": window_time(run.window_end),
        "driftCoefficient": run.coefficient,
        "threshold": run.threshold,
        "falseAlarmRate": run.false_alarm_rate,
        "decisionRule": "threshold" if run.false_alarm_rate is None else "falseAlarmRate",
        "pValue": run.p_value,
        "auroc": run.auroc,
        "classifierPValue": run.classifier_p_value,
        "explanation": run.explanation,
        "reason": run.reason,
        "features": run.feature_tests,
        "nullWindows": {"rows": run.null_rows, "draws": run.null_draws},
        "featureContributions": run.feature_contributions,
        "featureMetrics": run.feature_metrics,
        "skippedFeatures": run.skipped_features,
        "rowCounts": run.row_counts,
        "rowsCompared": run.rows_compared,
        "eventPublished": run.event_published,
        "eventId": run.event_id,
        "baselineDatasetId": run.baseline_dataset_id,
        "targetDatasetId": run.target_dataset_id,
        "trigger": run.trigger,
        "createdTime": iso(run.created_at),
    }


def _query_time(value: str | None, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    parsed = parse_timestamp(value)
    if parsed is None:
        raise invalid(field, "must be an ISO 8601 date-time")
    return parsed


@router.get("/workspaces/{workspace}/datadrifts", summary="List the data-drift monitors of a workspace")
async def list_monitors(workspace: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.READ)
    rows = await _service(request).list_monitors(ws.name)
    return respond({"value": [monitor_json(r) for r in rows]})


@router.put(
    "/workspaces/{workspace}/datadrifts/{name}",
    summary="Create or replace a data-drift monitor",
    openapi_extra=MONITOR_BODY,
    status_code=201,
    responses={200: {"description": "replaced"}, 201: {"description": "created"}},
)
async def put_monitor(workspace: str, name: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.WRITE)
    body = await json_body(request)
    row, created = await _service(request).put(ws.name, name, body, if_match=if_match(request))
    return respond(monitor_json(row), 201 if created else 200, row.etag)


@router.get("/workspaces/{workspace}/datadrifts/{name}", summary="Read a data-drift monitor")
async def get_monitor(workspace: str, name: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.READ)
    row = await _service(request).get(ws.name, name)
    return respond(monitor_json(row), etag=row.etag)


@router.delete(
    "/workspaces/{workspace}/datadrifts/{name}",
    summary="Delete a data-drift monitor and its runs (published events stay published)",
    status_code=204,
    response_class=Response,
)
async def delete_monitor(workspace: str, name: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.WRITE)
    await _service(request).delete(ws.name, name, if_match=if_match(request))
    return Response(status_code=204)


@router.post(
    "/workspaces/{workspace}/datadrifts/{name}/runs",
    summary="Analyse every complete window of a time range (backfill); returns one run per window",
    openapi_extra=RUNS_BODY,
)
async def backfill(workspace: str, name: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.WRITE)
    body = await json_body(request)
    runs = await _service(request).backfill(ws.name, name, body)
    return respond({"value": [run_json(r) for r in runs]})


@router.get(
    "/workspaces/{workspace}/datadrifts/{name}/runs",
    summary="List a monitor's runs in window order",
)
async def list_runs(
    workspace: str,
    name: str,
    request: Request,
    start: str | None = Query(None, description="only windows starting at or after this time"),
    end: str | None = Query(None, description="only windows ending at or before this time"),
    skip: int = Query(0, ge=0, description="runs to skip (paging; follow nextLink)"),
) -> Response:
    ws, _ = await guard(request, workspace, Action.READ)
    since = _query_time(start, "start")
    until = _query_time(end, "end")
    runs = await _service(request).list_runs(
        ws.name, name, start=since, end=until, offset=skip, limit=RUNS_PAGE_SIZE + 1
    )
    body: dict[str, Any] = {"value": [run_json(r) for r in runs[:RUNS_PAGE_SIZE]]}
    if len(runs) > RUNS_PAGE_SIZE:
        params = {k: v for k, v in (("start", start), ("end", end)) if v}
        params["skip"] = str(skip + RUNS_PAGE_SIZE)
        path = f"/workspaces/{quote(ws.name, safe='')}/datadrifts/{quote(name, safe='')}/runs"
        body["nextLink"] = f"{path}?{urlencode(params)}"
    return respond(body)
