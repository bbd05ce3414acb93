"""The model registry and registered datasets of a workspace (SPEC §9, §12)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask
from starlette.datastructures import FormData, UploadFile

from mlgrid.api.deps import json_body
from mlgrid.api.docs import file_response
from mlgrid.api.workspace_common import blob_response, dataset_service, guard, iso, model_service, respond
from mlgrid.auth.roles import Action
from mlgrid.body import openapi_schema
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import BadRequest, NotFound, invalid
from mlgrid.events.jsoncodec import loads_exact
from mlgrid.workspace.datasets import DatasetView
from mlgrid.workspace.models import MAX_MODEL_FILES, ModelView, UploadPart
from mlgrid.workspace.validation import ModelFromRunBody, ModelUploadMetadata, parse_model_metadata

router = APIRouter(tags=["models and datasets"])

MODEL_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string", "format": "binary"},
                            "description": "one file (a file model) or several whose file names are "
                            "relative paths (a directory model)",
                        },
                        "metadata": {
                            "type": "string",
                            "description": "JSON: tags, properties, description, directory (bool)",
                            "contentMediaType": "application/json",
                            "contentSchema": openapi_schema(ModelUploadMetadata),
                        },
                    },
                }
            },
            "application/json": {"schema": openapi_schema(ModelFromRunBody)},
        },
    }
}
DATASET_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "CSV or Parquet"},
                        "timestampColumn": {"type": "string", "description": "must hold ISO 8601 date-times"},
                        "description": {"type": "string"},
                    },
                }
            }
        },
    }
}


def model_json(view: ModelView) -> dict[str, Any]:
    row = view.row
    return {
        "id": view.model_id,
        "name": row.name,
        "version": str(row.version),
        "tags": view.tags,
        "properties": view.properties,
        "description": row.description,
        "etag": row.etag,
        "createdTime": iso(row.created_at),
        "runId": row.run_id,
        "artifactPath": row.artifact_path,
        "isDirectory": row.is_directory,
        "files": view.files,
    }


def dataset_json(view: DatasetView) -> dict[str, Any]:
    row = view.row
    return {
        "id": row.id,
        "name": row.name,
        "version": row.version,
        "columns": view.columns,
        "rowCount": row.row_count,
        "timestampColumn": row.timestamp_column,
        "description": row.description,
        "format": row.file_format,
        "fileName": row.file_name,
        "size": row.size,
        "sha256": row.sha256,
        "etag": row.etag,
        "createdTime": iso(row.created_at),
    }


def _is_multipart(request: Request) -> bool:
    return (request.headers.get("content-type") or "").lower().startswith("multipart/form-data")


def _text_field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(name, "must be a text field, not a file")
    return value


def _files(form: FormData) -> list[UploadFile]:
    unexpected = sorted(
        {key for key, value in form.multi_items() if not isinstance(value, str) and key != "file"}
    )
    if unexpected:
        raise invalid(unexpected[0], "unexpected file part; send files as 'file'")
    files = [value for value in form.getlist("file") if not isinstance(value, str)]
    if len(files) != len(form.getlist("file")):
        raise invalid("file", "must be a file part, not a text field")
    return files  # type: ignore[return-value]


@router.post(
    "/workspaces/{workspace}/models/{name}/versions",
    summary="Register a model version from an upload (multipart) or a run artifact (JSON)",
    openapi_extra=MODEL_BODY,
    status_code=201,
)
async def register_model(workspace: str, name: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.WRITE)
    service = model_service(request)
    if _is_multipart(request):
        async with request.form(max_files=MAX_MODEL_FILES, max_fields=20) as form:
            raw_metadata = _text_field(form, "metadata")
            metadata_body = loads_exact(raw_metadata) if raw_metadata and raw_metadata.strip() else None
            metadata, _, _ = parse_model_metadata(metadata_body, allow_source=False)
            parts = [UploadPart(f.filename or "model", f.file) for f in _files(form)]
            view = await service.register_upload(ws.name, name, parts, metadata)
    else:
        body = await json_body(request)
        metadata, run_id, artifact_path = parse_model_metadata(body, allow_source=True)
        if run_id is None or artifact_path is None:  # pragma: no cover - parse requires both
            raise BadRequest("runId and artifactPath are required")
        view = await service.register_from_run(ws.name, name, run_id, artifact_path, metadata)
    return respond(model_json(view), 201, view.row.etag)


@router.get("/workspaces/{workspace}/models", summary="List model versions (all names, or one)")
async def list_models(
    workspace: str, request: Request, name: str | None = Query(None, description="only this model name")
) -> Response:
    ws, _ = await guard(request, workspace, Action.READ)
    views = await model_service(request).list_models(ws.name, name)
    return respond({"value": [model_json(v) for v in views]})


@router.get("/workspaces/{workspace}/models/{name}/versions", summary="List the versions of one model")
async def list_model_versions(workspace: str, name: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.READ)
    views = await model_service(request).list_models(ws.name, name)
    return respond({"value": [model_json(v) for v in views]})


@router.get("/workspaces/{workspace}/models/{name}/versions/{version}", summary="Read a model version")
async def get_model(workspace: str, name: str, version: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.READ)
    view = await model_service(request).get(ws.name, name, version)
    return respond(model_json(view), etag=view.row.etag)


@router.get(
    "/workspaces/{workspace}/models/{name}/versions/{version}/download",
    summary="Download a model version: the file as registered, or a directory model as a zip",
    response_class=Response,
    responses=file_response("application/octet-stream", "application/zip"),
)
async def download_model(workspace: str, name: str, version: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.READ)
    service = model_service(request)
    view = await service.get(ws.name, name, version)
    if not view.row.is_directory:
        blob = service.blob_name(view)
        return await blob_response(
            service.core.files.blobs,
            blob,
            media_type="application/octet-stream",
            filename=blob.rsplit("/", 1)[-1],
            missing=NotFound(
                f"the file of model {view.model_id} is missing from the blob store",
                code=ErrorCode.ARTIFACT_FILE_MISSING,
            ),
        )
    archive = await service.archive(view)
    return FileResponse(
        archive,
        media_type="application/zip",
        filename=f"{view.name}-{view.version}.zip",
        background=BackgroundTask(archive.unlink, missing_ok=True),
    )


@router.post(
    "/workspaces/{workspace}/datasets/{name}/versions",
    summary="Register a dataset version from a CSV or Parquet upload",
    openapi_extra=DATASET_BODY,
    status_code=201,
)
async def register_dataset(workspace: str, name: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.WRITE)
    if not _is_multipart(request):
        raise invalid("file", "send multipart/form-data with a 'file' part")
    async with request.form(max_files=1, max_fields=20) as form:
        files = _files(form)
        if len(files) != 1:
            raise invalid("file", "exactly one file part is required")
        timestamp_column = _text_field(form, "timestampColumn")
        description = _text_field(form, "description") or ""
        view = await dataset_service(request).register(
            ws.name,
            name,
            files[0].filename,
            files[0].file,
            timestamp_column=timestamp_column,
            description=description,
        )
    return respond(dataset_json(view), 201, view.row.etag)


@router.get("/workspaces/{workspace}/datasets", summary="List dataset versions (all names, or one)")
async def list_datasets(
    workspace: str, request: Request, name: str | None = Query(None, description="only this dataset name")
) -> Response:
    ws, _ = await guard(request, workspace, Action.READ)
    views = await dataset_service(request).list_datasets(ws.name, name)
    return respond({"value": [dataset_json(v) for v in views]})


@router.get("/workspaces/{workspace}/datasets/{name}/versions", summary="List the versions of one dataset")
async def list_dataset_versions(workspace: str, name: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.READ)
    views = await dataset_service(request).list_datasets(ws.name, name)
    return respond({"value": [dataset_json(v) for v in views]})


@router.get("/workspaces/{workspace}/datasets/{name}/versions/{version}", summary="Read a dataset version")
async def get_dataset(workspace: str, name: str, version: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.READ)
    view = await dataset_service(request).get(ws.name, name, version)
    return respond(dataset_json(view), etag=view.row.etag)


@router.get("/workspaces/{workspace}/datasetsById/{dataset_id}", summary="Read a dataset version by its id")
async def get_dataset_by_id(workspace: str, dataset_id: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.READ)
    view = await dataset_service(request).get_by_id(ws.name, dataset_id)
    return respond(dataset_json(view), etag=view.row.etag)


@router.get(
    "/workspaces/{workspace}/datasets/{name}/versions/{version}/download",
    summary="Download a dataset version's file as registered",
    response_class=Response,
    responses=file_response("application/octet-stream"),
)
async def download_dataset(workspace: str, name: str, version: str, request: Request) -> Response:
    ws, _ = await guard(request, workspace, Action.READ)
    service = dataset_service(request)
    view = await service.get(ws.name, name, version)
    return await blob_response(
        service.core.files.blobs,
        service.blob_name(view.row),
        media_type="application/octet-stream",
        filename=view.row.file_name,
        missing=NotFound(
            f"the file of dataset {view.row.id!r} is missing from the blob store",
            code=ErrorCode.DATASET_FILE_MISSING,
        ),
    )
