"""Workspace pages: the list of workspaces, one workspace (runs, models, endpoints, drift
monitors, datasets, connectors), a run with its metric charts, an endpoint with a scoring form,
a drift monitor with the chart of its coefficient per window, and a connector with its health.

Everything comes from the workspace REST API as the signed-in principal. A section whose API
this server does not serve (a "no such route" answer) is shown as not available rather than
failing the page, so the UI works with whatever parts of the workspace are deployed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from mlgrid.events.timestamps import parse_timestamp
from mlgrid.ui.api import ApiFailure, ApiSession, seg
from mlgrid.ui.charts import DriftPoint, drift_chart, line_chart
from mlgrid.ui.common import page, session_of, ui_state
from mlgrid.ui.session import check_same_origin

router = APIRouter(include_in_schema=False)

RUNS_SHOWN = 50
MAX_SCORE_BODY = 1024 * 1024
DEFAULT_THRESHOLD = 0.2


def _ws(name: str) -> str:
    return f"/workspaces/{seg(name)}"


async def _optional_items(
    api: ApiSession, path: str, params: dict[str, Any] | None = None
) -> list[Any] | None:
    """The list at ``path``, or ``None`` when the server has no such route."""
    try:
        items: list[Any] = await api.items(path, params, limit=RUNS_SHOWN)
    except ApiFailure as exc:
        if exc.missing_route:
            return None
        raise
    return items


@router.get("/ui/workspaces")
@page
async def workspaces_page(request: Request) -> Response:
    session = await session_of(request)
    workspaces = await session.api.items("/workspaces")
    return ui_state(request).render(
        "workspaces.html", request=request, principal=session.principal, nav="workspaces",
        workspaces=workspaces,
    )


@router.get("/ui/workspaces/{workspace}")
@page
async def workspace_page(request: Request, workspace: str) -> Response:
    session = await session_of(request)
    api = session.api
    resource = await api.get(_ws(workspace))
    base = _ws(resource["name"])
    runs = await api.items(base + "/runs", {"top": RUNS_SHOWN}, limit=RUNS_SHOWN)
    models = await api.items(base + "/models", limit=200)
    datasets = await _optional_items(api, base + "/datasets")
    endpoints = await _optional_items(api, base + "/endpoints")
    drifts = await _optional_items(api, base + "/datadrifts")
    connectors = await _optional_items(api, base + "/connectors")
    return ui_state(request).render(
        "workspace.html", request=request, principal=session.principal, nav="workspaces", ws=resource,
        runs=runs, models=list(reversed(models)), datasets=datasets, endpoints=endpoints, drifts=drifts,
        connectors=connectors,
    )


@router.get("/ui/workspaces/{workspace}/runs/{run_id}")
@page
async def run_page(request: Request, workspace: str, run_id: str) -> Response:
    session = await session_of(request)
    base = _ws(workspace) + f"/runs/{seg(run_id)}"
    run = await session.api.get(base)
    metrics = await session.api.items(base + "/metrics", limit=10_000)
    artifacts = await session.api.items(base + "/artifacts", limit=1_000)
    by_name: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for metric in metrics:
        try:
            by_name[metric["name"]].append((float(metric.get("step") or 0), float(metric["value"])))
        except (TypeError, ValueError, KeyError):
            continue
    charts = {
        name: line_chart(points, f"{name} by step") for name, points in by_name.items() if len(points) > 1
    }
    latest = {name: points[-1][1] for name, points in by_name.items()}
    return ui_state(request).render(
        "run.html", request=request, principal=session.principal, nav="workspaces", workspace=workspace,
        run=run, metrics=metrics, latest=latest, charts=charts, artifacts=artifacts,
    )


async def _endpoint_page(
    request: Request, workspace: str, name: str, body: str, result: dict[str, Any] | None
) -> Response:
    session = await session_of(request)
    endpoint = await session.api.get(_ws(workspace) + f"/endpoints/{seg(name)}")
    return ui_state(request).render(
        "endpoint.html", request=request, principal=session.principal, nav="workspaces", workspace=workspace,
        endpoint=endpoint, body=body, result=result,
    )


@router.get("/ui/workspaces/{workspace}/endpoints/{name}")
@page
async def endpoint_page(request: Request, workspace: str, name: str) -> Response:
    return await _endpoint_page(request, workspace, name, "", None)


@router.post("/ui/workspaces/{workspace}/endpoints/{name}/score")
@page
async def score(request: Request, workspace: str, name: str, body: str = Form("")) -> Response:
    """Send the form's JSON to ``POST .../endpoints/{name}/score`` and show the answer."""
    session = await session_of(request)
    check_same_origin(request)
    raw = body.encode()
    result: dict[str, Any]
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        result = {"ok": False, "status": None, "text": f"The request body is not JSON: {exc}"}
        return await _endpoint_page(request, workspace, name, body, result)
    if len(raw) > MAX_SCORE_BODY:
        result = {"ok": False, "status": None, "text": "The request body is larger than 1 MB."}
        return await _endpoint_page(request, workspace, name, body, result)
    path = _ws(workspace) + f"/endpoints/{seg(name)}/score"
    try:
        response = await session.api.call("POST", path, content=raw, content_type="application/json")
        result = {"ok": True, "status": response.status_code, "text": response.text}
    except ApiFailure as exc:
        result = {"ok": False, "status": exc.status, "text": f"{exc.code}: {exc.message}"}
    return await _endpoint_page(request, workspace, name, body, result)


def drift_points(runs: list[dict[str, Any]]) -> list[DriftPoint]:
    """Chart points from drift runs as the API returns them (runs without a window skipped)."""
    points = []
    for run in runs:
        start = parse_timestamp(str(run.get("startTime") or ""))
        end = parse_timestamp(str(run.get("endTime") or ""))
        if start is None or end is None:
            continue
        value = run.get("driftCoefficient")
        note = str(run.get("reason") or run.get("message") or run.get("error") or "")
        published = run.get("eventPublished")
        drifted = published if isinstance(published, bool) else None
        points.append(DriftPoint(start, end, None if value is None else float(value), note, drifted))
    return points


@router.get("/ui/workspaces/{workspace}/datadrifts/{name}")
@page
async def drift_page(request: Request, workspace: str, name: str) -> Response:
    session = await session_of(request)
    base = _ws(workspace) + f"/datadrifts/{seg(name)}"
    monitor = await session.api.get(base)
    runs = await session.api.items(base + "/runs", limit=1_000)
    properties = monitor.get("properties", monitor)
    threshold = float(properties.get("threshold", DEFAULT_THRESHOLD) or DEFAULT_THRESHOLD)
    points = drift_points(runs)
    runs_sorted = sorted(runs, key=lambda r: str(r.get("startTime") or ""), reverse=True)
    return ui_state(request).render(
        "drift.html", request=request, principal=session.principal, nav="workspaces", workspace=workspace,
        monitor=monitor, properties=properties, threshold=threshold, runs=runs_sorted,
        chart=drift_chart(points, threshold),
        drifted=sum(1 for r in runs if r.get("eventPublished")),
    )


@router.get("/ui/workspaces/{workspace}/connectors/{name}")
@page
async def connector_page(request: Request, workspace: str, name: str) -> Response:
    session = await session_of(request)
    connector = await session.api.get(_ws(workspace) + f"/connectors/{seg(name)}")
    properties = connector.get("properties", {})
    return ui_state(request).render(
        "connector.html", request=request, principal=session.principal, nav="workspaces", workspace=workspace,
        connector=connector, properties=properties, health=properties.get("health") or {},
    )
