"""Shared pieces of the workspace routers: service look-up, the RBAC guard, JSON responses.

Every workspace route starts with ``guard``: the workspace must exist (404) and the caller
must hold a role on it that allows the action (401/403). Bodies are written with the exact
JSON codec (tags and metric values keep every digit) and carry the object's ``ETag`` header.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from mlgrid.api.deps import caller, runtime
from mlgrid.api.responses import ExactJSONResponse
from mlgrid.auth.roles import Action, Principal
from mlgrid.blobs import BlobContainer, BlobNotFound
from mlgrid.errors import MlgridError
from mlgrid.events.timestamps import format_timestamp
from mlgrid.workspace.datasets import DatasetService
from mlgrid.workspace.jobs import JobRunner
from mlgrid.workspace.models import ModelService
from mlgrid.workspace.runs import RunService
from mlgrid.workspace.service import Workspace, WorkspaceService


def workspace_service(request: Request) -> WorkspaceService:
    service: WorkspaceService = runtime(request).workspace.core
    return service


def run_service(request: Request) -> RunService:
    service: RunService = runtime(request).workspace.runs
    return service


def job_runner(request: Request) -> JobRunner:
    service: JobRunner = runtime(request).workspace.jobs
    return service


def model_service(request: Request) -> ModelService:
    service: ModelService = runtime(request).workspace.models
    return service


def dataset_service(request: Request) -> DatasetService:
    service: DatasetService = runtime(request).workspace.datasets
    return service


async def guard(
    request: Request, workspace: str, action: Action, *, run_id: str | None = None
) -> tuple[Workspace, Principal]:
    """Authenticate, look the workspace up (404), check the caller's role on it (403).

    Routes on one run pass its ``run_id``: a job's run token is accepted for its own run only."""
    principal = await caller(request)
    found = await workspace_service(request).get(workspace)
    scope = WorkspaceService.scope(found.name)
    await runtime(request).access.require(principal, scope, action, run_id=run_id)
    return found, principal


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else format_timestamp(moment)


def respond(body: Any, status_code: int = 200, etag: str | None = None) -> Response:
    headers = {"ETag": f'"{etag}"'} if etag else None
    return ExactJSONResponse(body, status_code=status_code, headers=headers)


async def blob_response(
    blobs: BlobContainer,
    name: str,
    *,
    media_type: str,
    filename: str | None = None,
    headers: dict[str, str] | None = None,
    missing: MlgridError | None = None,
) -> Response:
    """Stream blob ``name`` as the response body, one chunk at a time (a 1 GB artifact never
    sits in memory), with its ``Content-Length``; ``filename`` makes it an attachment.
    ``missing`` is raised when the blob is gone (default: the store's ``BlobNotFound``)."""
    info = await blobs.stat(name)
    if info is None:
        raise missing if missing is not None else BlobNotFound(name)
    sent = {"Content-Length": str(info.size), **(headers or {})}
    if filename is not None:
        quoted = quote(filename)
        encoded = f"attachment; filename*=utf-8''{quoted}"
        sent["Content-Disposition"] = f'attachment; filename="{filename}"' if quoted == filename else encoded
    return StreamingResponse(blobs.open(name), media_type=media_type, headers=sent)
