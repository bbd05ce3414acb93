"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mlgrid.api.deps import caller, runtime
from mlgrid.api.responses import ExactJSONResponse
from mlgrid.errors import Forbidden

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database is reachable (and, after a fault, writable)")
async def readyz(request: Request) -> Response:
    db = runtime(request).db
    ok = await db.ready()
    if ok:
        return ExactJSONResponse({"status": "ok", "database": "reachable"})
    fault = db.health.fault
    body = {"status": "unavailable", "database": fault.value if fault is not None else "unreachable"}
    return ExactJSONResponse(body, status_code=503, headers={"Retry-After": "5"})


@router.get(
    "/metrics",
    summary="Prometheus metrics (a principal's bearer token is required when the metrics_require_token "
    "setting is on: by default when the server listens on a non-loopback address)",
    response_class=Response,
)
async def metrics(request: Request) -> Response:
    rt = runtime(request)
    if rt.settings.metrics_require_token:
        principal = await caller(request)  # any principal: the labels name topics and subscriptions
        if principal.run_scope is not None:
            raise Forbidden("a run token may not read the server's metrics")
    return Response(rt.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
