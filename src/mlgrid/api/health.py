"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from mlgrid.api.deps import runtime

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database is reachable (and, after a fault, writable)")
async def readyz(request: Request) -> Response:
    db = runtime(request).db
    ok = await db.ready()
    if ok:
        return JSONResponse({"status": "ok", "database": "reachable"})
    fault = db.health.fault
    body = {"status": "unavailable", "database": fault.value if fault is not None else "unreachable"}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(runtime(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
