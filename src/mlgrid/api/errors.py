"""The one place where exceptions become HTTP responses, all in SPEC §3's error envelope."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlgrid.api.responses import ExactJSONResponse
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import ErrorDetail, MlgridError

log = logging.getLogger("mlgrid.api")

_HTTP_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    412: "PreconditionFailed",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "BadRequest",
}


def error_response(error: MlgridError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return ExactJSONResponse(error.as_json(), status_code=error.status, headers=headers)


def _location(loc: tuple[object, ...] | list[object]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    if parts and parts[0] in {"query", "path", "header"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(MlgridError)
    async def _mlgrid(_request: Request, exc: MlgridError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        details = [
            ErrorDetail(ErrorCode.INVALID_REQUEST, f"{_location(e['loc'])}: {e['msg']}", _location(e["loc"]))
            for e in exc.errors()
        ]
        message = details[0].message if details else "invalid request"
        return error_response(MlgridError(message, details, code=ErrorCode.INVALID_REQUEST, status=400))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "Error")
        message = exc.detail if isinstance(exc.detail, str) else code
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route"
        if exc.status_code == 405:
            message = "method not allowed on this route"
        response = error_response(MlgridError(message, [], code=code, status=exc.status_code))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return error_response(
            MlgridError("internal server error", [], code=ErrorCode.INTERNAL_ERROR, status=500)
        )
