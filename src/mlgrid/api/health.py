"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mlgrid.api.deps import runtime
from mlgrid.api.responses import ExactJSONResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database is reachable")
async def readyz(request: Request) -> Response:
    ok = await runtime(request).db.ping()
    body = {"status": "ok" if ok else "unavailable", "database": "reachable" if ok else "unreachable"}
    return ExactJSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(runtime(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
