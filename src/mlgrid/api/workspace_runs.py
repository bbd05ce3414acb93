"""Experiments, runs, submitted jobs, metrics and artifacts of a workspace (SPEC §9, §12)."""

from __future__ import annotations

import mimetypes
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from mlgrid.api import paging
from mlgrid.api.deps import if_match, json_body
from mlgrid.api.docs import body_schema, file_response
from mlgrid.api.workspace_common import blob_response, guard, iso, job_runner, respond, run_service
from mlgrid.auth.roles import Action
from mlgrid.domain.records import ArtifactRow, MetricRow
from mlgrid.errors import PayloadTooLarge, invalid
from mlgrid.events.jsoncodec import loads_exact
from mlgrid.workspace import lifecycle
from mlgrid.workspace.runs import RunView
from mlgrid.workspace.validation import (
    JobBody,
    MetricsBody,
    RunChangeBody,
    RunCreateBody,
    parse_job,
    parse_metrics,
    parse_run_change,
    parse_run_create,
)

router = APIRouter(tags=["runs"])
CODE_UPLOAD_OVERHEAD = 4 * 1000 * 1000
"""Room for the job's JSON, multipart framing and zip headers above the code's own size."""

RUN_CREATE_BODY = body_schema(RunCreateBody, required=False)
RUN_PATCH_BODY = body_schema(RunChangeBody)
JOB_BODY = body_schema(JobBody)
METRICS_BODY = body_schema(MetricsBody)
# An empty upload is an empty artifact, so the body is optional.
ARTIFACT_BODY = body_schema(
    {"type": "string", "format": "binary"}, ("application/octet-stream",), required=False
)
JOB_BODY["requestBody"]["content"]["multipart/form-data"] = {
    "schema": {
        "type": "object",
        "required": ["job", "code"],
        "properties": {
            "job": {"type": "string", "description": "the JSON body above (without workingDirectory)"},
            "code": {
                "type": "string",
                "format": "binary",
                "description": "a zip of the code directory: kept as the run's artifacts under snapshot/, "
                "the job runs in a copy of it",
            },
        },
    }
}


def run_json(view: RunView) -> dict[str, Any]:
    row = view.row
    body: dict[str, Any] = {
        "runId": row.id,
        "experimentId": view.experiment.id,
        "experimentName": view.experiment.name,
        "status": row.status,
        "runType": row.run_type,
        "tags": view.tags,
        "properties": view.properties,
        "etag": row.etag,
        "startTime": iso(row.start_time),
        "endTime": iso(row.end_time),
        "createdTime": iso(row.created_at),
        "updatedTime": iso(row.updated_at),
        "error": row.error,
        # ARM-style identity (SPEC §12: responses carry id and name); a run's name is its id,
        # as an Azure ML job's name is.
        "id": row.id,
        "name": row.id,
    }
    if row.is_job:
        body["job"] = {
            "command": row.job_command,
            "workingDirectory": row.job_working_directory,
            "exitCode": row.job_exit_code,
            "log": "logs/job.log",
        }
    return body


def metric_json(metric: MetricRow) -> dict[str, Any]:
    return {
        "name": metric.name,
        "step": metric.step,
        "value": loads_exact(metric.value),
        "time": iso(metric.time),
    }


def artifact_json(artifact: ArtifactRow) -> dict[str, Any]:
    return {
        "path": artifact.path,
        "size": artifact.size,
        "sha256": artifact.sha256,
        "createdTime": iso(artifact.created_at),
    }


@router.post(
    "/workspaces/{workspace}/experiments/{experiment}/runs",
    summary="Start a run (the experiment is created on first use)",
    openapi_extra=RUN_CREATE_BODY,
    status_code=201,
)
async def start_run(workspace: str, experiment: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.WRITE)
    spec = parse_run_create(await json_body(request, required=False))
    view = await run_service(request).start(ws.name, experiment, spec)
    return respond(run_json(view), 201, view.row.etag)


@router.post(
    "/workspaces/{workspace}/experiments/{experiment}/jobs",
    summary="Submit a job: the server runs the command as a run, its output as the artifact logs/job.log",
    openapi_extra=JOB_BODY,
    status_code=201,
)
async def submit_job(workspace: str, experiment: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.RUN_CODE)
    runner = job_runner(request)
    content_type = (request.headers.get("content-type") or "").lower()
    if not content_type.startswith("multipart/form-data"):
        spec = parse_job(await json_body(request))
        view = await runner.submit(ws.name, experiment, spec)
        return respond(run_json(view), 201, view.row.etag)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > runner.code_limits.max_bytes + CODE_UPLOAD_OVERHEAD:
        raise PayloadTooLarge(  # before reading a byte of it
            f"the job's upload is {int(declared) / 1e6:.1f} MB, more than the server's limit for code "
            f"snapshots of {runner.code_limits.max_bytes / 1e6:.1f} MB (setting job_code_max_mb)"
        )
    async with request.form(max_files=1, max_fields=1) as form:
        unexpected = sorted(set(form.keys()) - {"job", "code"})
        if unexpected:
            raise invalid(unexpected[0], "unexpected part; send 'job' (JSON) and 'code' (a zip)")
        raw_job = form.get("job")
        if not isinstance(raw_job, str) or not raw_job.strip():
            raise invalid("job", "send the job's JSON body as the text part 'job'")
        code = form.get("code")
        if code is None or isinstance(code, str):
            raise invalid("code", "send the zipped code directory as the file part 'code'")
        spec = parse_job(loads_exact(raw_job))
        view = await runner.submit(ws.name, experiment, spec, code=code.file)
    return respond(run_json(view), 201, view.row.etag)


@router.get("/workspaces/{workspace}/experiments", summary="List the experiments of a workspace")
async def list_experiments(workspace: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.READ)
    rows = await run_service(request).experiments(ws.name)
    return respond(
        {"value": [{"experimentId": r.id, "name": r.name, "createdTime": iso(r.created_at)} for r in rows]}
    )


@router.get(
    "/workspaces/{workspace}/runs", summary="List runs, newest first, filtered by experiment, status, runType"
)
async def list_runs(
    workspace: str,
    request: Request,
    experiment: str | None = Query(None, description="experiment name"),
    status: str | None = Query(None, description="one status or several, comma separated"),
    runType: str | None = Query(None),
    top: int = Query(100, ge=1, le=1000, description="page size"),
    skipToken: str | None = Query(None, description="paging token from nextLink"),
    skip: int = Query(0, ge=0, description="runs to skip (older links; nextLink now carries skipToken)"),
) -> Response:
    ws, _ = await guard(request, workspace, Action.READ)
    statuses = [lifecycle.parse_status(s.strip(), "status") for s in status.split(",")] if status else []
    before = paging.time_and_text(skipToken)
    views = await run_service(request).list_runs(
        ws.name, experiment=experiment, statuses=statuses, run_type=runType,
        offset=0 if before is not None else skip, before=before, limit=top + 1,
    )
    body: dict[str, Any] = {"value": [run_json(v) for v in views[:top]]}
    if len(views) > top:
        last = views[top - 1].row
        body["nextLink"] = paging.next_link(request, paging.encode(last.created_at.timestamp(), last.id))
    return respond(body)


@router.get("/workspaces/{workspace}/runs/{run_id}", summary="Read a run")
async def get_run(workspace: str, run_id: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.READ, run_id=run_id)
    view = await run_service(request).get(ws.name, run_id)
    return respond(run_json(view), etag=view.row.etag)


@router.patch(
    "/workspaces/{workspace}/runs/{run_id}",
    summary="Change a run's status (terminal states are final: 409), merge tags and properties",
    openapi_extra=RUN_PATCH_BODY,
)
async def patch_run(workspace: str, run_id: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.WRITE, run_id=run_id)
    change = parse_run_change(await json_body(request))
    view = await run_service(request).update(ws.name, run_id, change, if_match=if_match(request))
    return respond(run_json(view), etag=view.row.etag)


@router.post(
    "/workspaces/{workspace}/runs/{run_id}/metrics", summary="Log metrics", openapi_extra=METRICS_BODY
)
async def log_metrics(workspace: str, run_id: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.WRITE, run_id=run_id)
    metrics = parse_metrics(await json_body(request))
    rows = await run_service(request).log_metrics(ws.name, run_id, metrics)
    return respond({"value": [metric_json(m) for m in rows]})


@router.get("/workspaces/{workspace}/runs/{run_id}/metrics", summary="Read a run's metrics")
async def get_metrics(
    workspace: str,
    run_id: str,
    request: Request,
    name: str | None = Query(None, description="only this metric"),
) -> Response:
    ws, _ = await guard(request, workspace, Action.READ, run_id=run_id)
    rows = await run_service(request).metrics(ws.name, run_id, name)
    return respond({"value": [metric_json(m) for m in rows]})


@router.get("/workspaces/{workspace}/runs/{run_id}/artifacts", summary="List a run's artifacts")
async def list_artifacts(
    workspace: str, run_id: str, request: Request, prefix: str | None = Query(None, description="path prefix")
) -> Response:
    ws, _ = await guard(request, workspace, Action.READ, run_id=run_id)
    rows = await run_service(request).artifacts(ws.name, run_id, prefix)
    return respond({"value": [artifact_json(a) for a in rows]})


@router.put(
    "/workspaces/{workspace}/runs/{run_id}/artifacts/{path:path}",
    summary="Upload an artifact (raw bytes; replaces one with the same path)",
    openapi_extra=ARTIFACT_BODY,
    status_code=201,
)
async def put_artifact(workspace: str, run_id: str, path: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.WRITE, run_id=run_id)
    row = await run_service(request).put_artifact(ws.name, run_id, path, request.stream())
    return respond(artifact_json(row), 201)


@router.get("/workspaces/{workspace}/runs/{run_id}/artifacts/{path:path}", summary="Download an artifact",
            response_class=Response, responses=file_response("*/*"))
async def get_artifact(workspace: str, run_id: str, path: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.READ, run_id=run_id)
    service = run_service(request)
    row, blob = await service.artifact(ws.name, run_id, path)
    media_type = mimetypes.guess_type(row.path)[0] or "application/octet-stream"
    return await blob_response(
        service.core.files.blobs, blob, media_type=media_type, headers={"ETag": f'"{row.sha256}"'}
    )
